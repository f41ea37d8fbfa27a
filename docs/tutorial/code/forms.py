# forms.py — run it with `python forms.py`, then open http://127.0.0.1:5009
from typing import Annotated

from fasthtml.common import Button, Input, Label, P, RedirectResponse, Small, Titled
from pydantic import Field, StringConstraints

from faststate import Bindable, Invalid, ReactiveState, bind, error, event, on, redirect, use_state
from faststate.fasthtml import FastStateHTML

Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
]


class Signup(ReactiveState):
    email: Bindable[Email] = ""
    age: Bindable[Annotated[int, Field(ge=18, le=130)]] = 18
    welcomed: bool = False  # not Bindable: only the server changes it

    @event
    def submit(self):
        # The types checked each field before this runs; the rest is said here.
        if self.email.endswith("@example.org"):
            raise Invalid(email="that domain is closed")
        self.welcomed = True
        return redirect("/welcome")


app = FastStateHTML()
app.register_state(Signup, scope="session")


@app.route("/")
def index(req):
    s = use_state(req, Signup)
    return Titled(
        "Sign up",
        s,
        Label("Email", Input(**bind(s, "email"), type="email", id="email")),
        Small(**error(s, "email"), id="email-error"),
        Label("Age", Input(**bind(s, "age"), type="number", id="age")),
        Small(**error(s, "age"), id="age-error"),
        P(**error(s), id="form-error"),  # a message that names no field
        Button("Sign up", **on("click", s.submit), id="submit"),
    )


@app.route("/welcome")
def welcome(req):
    s = use_state(req, Signup)
    if not s.welcomed:
        return RedirectResponse("/", status_code=303)
    return Titled("Welcome", P(f"We will write to {s.email}."))


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=5009)
