"""A counter and a validated form on FastAPI, and a JSON API reading the same state.

Run:  python examples/fastapi_app.py   (serves http://127.0.0.1:5012; API docs at /docs)

Routes get their state through a dependency, ``UseState(Counter)``, resolved
with ``ause_state``.  The event routes that ``register_state`` mounts are plain
Starlette routes: they do not appear in the OpenAPI schema, only the API does.
The page is built with FastHTML's components (any HTML works).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fasthtml.common import (
    H1,
    H2,
    Body,
    Button,
    Div,
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

#: The stylesheet all the examples share.
STYLE = Path(__file__).with_name("style.css").read_text()


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
                    P("Routes get their state with UseState; GET /api/count reads it.", cls="lead"),
                    counter,
                    letter,
                    Section(
                        H2("Counter"),
                        Div(
                            Span(**text(counter, "count"), id="count", cls="big"),
                            Button("+1", **on("click", counter.increment), id="inc"),
                            Button("+10", **on("click", counter.increment, amount=10), id="inc10"),
                            cls="row",
                        ),
                        cls="card",
                    ),
                    Section(
                        H2("Newsletter"),
                        Label("Email", Input(**bind(letter, "email"), id="email", type="email")),
                        Small(**error(letter, "email"), id="email-error", cls="error"),
                        Div(
                            Button("Subscribe", **on("click", letter.subscribe), id="subscribe"),
                            cls="actions",
                        ),
                        P(
                            "Subscribed: ",
                            Span(**text(letter, "subscribed")),
                            id="subscribed",
                            cls="ok",
                            data_show=f"!!{ref(letter, 'subscribed')}",
                        ),
                        cls="card",
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
