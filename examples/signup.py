"""A validated sign-up form: two-way bound fields, a message next to each field
the server refuses, and a redirect once it accepts (DESIGN.md §1b, "Forms").

Run:  python examples/signup.py   (serves http://127.0.0.1:5009)

Nothing here is checked in the browser by hand-written JavaScript: each field is
validated on the server with its type, and ``raise Invalid(...)`` refuses what
a type cannot say.  What the user typed stays in the form until it is accepted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fasthtml.common import (
    Article,
    Button,
    Div,
    FastHTML,
    Fieldset,
    Input,
    Label,
    P,
    RedirectResponse,
    Small,
    Style,
    Titled,
)
from pydantic import Field, StringConstraints

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
    redirect,
    register_state,
    use_state,
)
from faststate.fasthtml import datastar_script

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)]
Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
]
CLOSED_DOMAINS = ("example.org", "example.net")

#: The stylesheet all the examples share.
STYLE = Path(__file__).with_name("style.css").read_text()


class Signup(ReactiveState):
    name: Bindable[Name] = ""
    email: Bindable[Email] = ""
    age: Bindable[Annotated[int, Field(ge=18, le=130)]] = 18
    agree: Bindable[bool] = False
    welcomed: bool = False

    @event
    def submit(self) -> Any:
        # The types above checked each field; what they cannot say is said here.
        if self.email.rsplit("@", 1)[-1] in CLOSED_DOMAINS:
            raise Invalid(email="sign-ups from that domain are closed")
        if not self.agree:
            raise Invalid(agree="please accept the terms to go on")
        self.welcomed = True
        return redirect("/welcome")

    @event
    def start_over(self) -> Any:
        self.name, self.email, self.age, self.agree = "", "", 18, False
        self.welcomed = False
        return redirect("/")


def field(state: Signup, name: str, label: str, **attributes: Any) -> Any:
    """A labelled input bound to ``name``, with the message the server gives for it."""
    return (
        Label(label, Input(**bind(state, name), id=name, name=name, **attributes)),
        Small(**error(state, name), id=f"{name}-error", cls="error"),
    )


def create_app(protocol: str = "v1") -> FastHTML:
    app = FastHTML(
        hdrs=(datastar_script(protocol=protocol), Style(STYLE)),
        htmx=False,
        surreal=False,
        pico=False,
        secret_key="signup-example",
    )
    app.add_middleware(FastStateMiddleware, protocol=protocol)
    register_state(app, Signup, scope=StateScope.SESSION)

    @app.route("/")
    def index(req):  # type: ignore[no-untyped-def]
        signup = use_state(req, Signup)
        return Titled(
            "Sign up",
            signup,
            P("The server checks each field and says why next to it.", cls="lead"),
            Fieldset(
                *field(signup, "name", "Your name", type="text", autocomplete="name"),
                *field(signup, "email", "Email", type="email", autocomplete="email"),
                *field(signup, "age", "Age", type="number", min="18"),
                Label(
                    Input(**bind(signup, "agree"), type="checkbox", id="agree"),
                    "I accept the terms",
                ),
                Small(**error(signup, "agree"), id="agree-error", cls="error"),
                # A message naming no field: the event failed for another reason.
                P(**error(signup), id="form-error", cls="error"),
                Div(Button("Sign up", **on("click", signup.submit), id="submit"), cls="actions"),
            ),
        )

    @app.route("/welcome")
    def welcome(req):  # type: ignore[no-untyped-def]
        signup = use_state(req, Signup)
        if not signup.welcomed:
            return RedirectResponse("/", status_code=303)
        return Titled(
            f"Welcome, {signup.name}",
            signup,
            Article(
                P(f"We will write to {signup.email}.", id="welcome"),
                Div(
                    Button("Sign up someone else", **on("click", signup.start_over), id="again"),
                    cls="actions",
                ),
            ),
        )

    return app


app = create_app()

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=5009)
