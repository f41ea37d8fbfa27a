"""A counter and a validated form on FastAPI, and a JSON API reading the same state.

Run:  python examples/fastapi_app.py   (serves http://127.0.0.1:5012; API docs at /docs)

Routes get their state through a dependency, ``UseState(Counter)``, resolved
with ``ause_state``.  The event routes that ``register_state`` mounts are plain
Starlette routes: they do not appear in the OpenAPI schema, only the API does.
The page is built with FastHTML's components (any HTML works).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fasthtml.common import (
    H1,
    H2,
    Body,
    Button,
    Head,
    Html,
    Input,
    Label,
    Main,
    P,
    Section,
    Small,
    Span,
    Style,
    Title,
    to_xml,
)
from pydantic import AfterValidator, BaseModel, StringConstraints
from pydantic_core import PydanticCustomError

from faststate import (
    Bindable,
    FastStateMiddleware,
    Invalid,
    ReactiveState,
    StateScope,
    bind,
    error,
    event,
    on,
    ref,
    register_state,
    text,
)
from faststate.fastapi import UseState
from faststate.fasthtml import datastar_script


def an_address(value: str) -> str:
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
        # A custom error: its message is what the page shows, word for word.
        raise PydanticCustomError("email", "enter an address like ada@example.com")
    return value


Email = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True), AfterValidator(an_address)
]

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 32rem; margin: 3rem auto; padding: 0 1rem;
       line-height: 1.5; color: #1f2933; }
section { margin-bottom: 2.5rem; }
.count { font-size: 2rem; font-weight: 700; margin-right: 1rem; }
label { display: block; font-weight: 600; }
input { display: block; width: 100%; box-sizing: border-box; padding: .5rem .6rem;
        margin-top: .25rem; border: 1px solid #9aa5b1; border-radius: 6px; font: inherit; }
input[aria-invalid=true] { border-color: #c81e1e; background: #fff5f5; }
button { padding: .5rem 1.2rem; margin-right: .5rem; font: inherit; font-weight: 600; color: white;
         background: #2563eb; border: 0; border-radius: 6px; cursor: pointer; }
button:hover { background: #1d4ed8; }
#subscribe { display: block; margin-top: 1rem; }
.error { display: block; color: #c81e1e; margin-top: .25rem; }
.ok { color: #047857; font-weight: 600; }
"""


class Counter(ReactiveState):
    count: int = 0

    @event
    def increment(self, amount: int = 1) -> None:
        self.count += amount


class Newsletter(ReactiveState):
    email: Bindable[Email] = ""
    subscribed: str = ""

    @event
    def subscribe(self) -> None:
        # The type checked the address; what it cannot say is said here.
        if self.email.endswith("@example.org"):
            raise Invalid(email="that domain does not take newsletters")
        self.subscribed = self.email


class CountOut(BaseModel):
    count: int


def page(counter: Counter, letter: Newsletter, protocol: str) -> str:
    return to_xml(
        Html(
            Head(
                Title("faststate on FastAPI"),
                datastar_script(protocol="beta" if protocol == "beta" else "v1"),
                Style(STYLE),
            ),
            Body(
                Main(
                    H1("faststate on FastAPI"),
                    counter,
                    letter,
                    Section(
                        H2("Counter"),
                        Span(**text(counter, "count"), id="count", cls="count"),
                        Button("+1", **on("click", counter.increment), id="inc"),
                        Button("+10", **on("click", counter.increment, amount=10), id="inc10"),
                    ),
                    Section(
                        H2("Newsletter"),
                        Label("Email", Input(**bind(letter, "email"), id="email", type="email")),
                        Small(**error(letter, "email"), id="email-error", cls="error"),
                        Button("Subscribe", **on("click", letter.subscribe), id="subscribe"),
                        P(
                            "Subscribed: ",
                            Span(**text(letter, "subscribed")),
                            id="subscribed",
                            cls="ok",
                            data_show=f"!!{ref(letter, 'subscribed')}",
                        ),
                    ),
                )
            ),
        )
    )


def create_app(protocol: str = "v1") -> FastAPI:
    app = FastAPI(title="faststate on FastAPI")
    app.add_middleware(FastStateMiddleware, protocol=protocol)
    register_state(app, Counter, scope=StateScope.SESSION)
    register_state(app, Newsletter, scope=StateScope.SESSION)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index(
        counter: Annotated[Counter, UseState(Counter)],
        letter: Annotated[Newsletter, UseState(Newsletter)],
    ) -> Any:
        return page(counter, letter, protocol)

    @app.get("/api/count")
    async def read_count(counter: Annotated[Counter, UseState(Counter)]) -> CountOut:
        """This session's count, as JSON."""
        return CountOut(count=counter.count)

    return app


app = create_app()

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=5012)
