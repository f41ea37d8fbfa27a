"""COMPONENT scope: several instances of one component class on one page.

Each stepper keeps its own value, per visitor session.

Run:  python examples/widgets.py   (serves http://127.0.0.1:5004)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fasthtml.common import H2, Button, Div, FastHTML, P, Span, Style, Titled

from faststate import (
    FastStateMiddleware,
    ReactiveState,
    StateScope,
    event,
    live,
    on,
    register_state,
    text,
    use_state,
)
from faststate.fasthtml import datastar_script

#: The stylesheet all the examples share.
STYLE = Path(__file__).with_name("style.css").read_text()


class Stepper(ReactiveState):
    value: int = 0
    step: int = 1

    @event
    def up(self) -> None:
        self.value += self.step

    @event
    def down(self) -> None:
        self.value -= self.step

    @event
    def set_step(self, step: int) -> None:
        self.step = step


def stepper_view(name: str, stepper: Stepper) -> Any:
    return Div(
        stepper,
        H2(name),
        P(
            Span(**text(stepper, "value"), id=f"{name}-value", cls="big"),
            Span(" (step ", Span(**text(stepper, "step"), id=f"{name}-step"), ")", cls="muted"),
        ),
        Div(
            Button("-", **on("click", stepper.down), id=f"{name}-down"),
            Button("+", **on("click", stepper.up), id=f"{name}-up"),
            Button(
                "step 10",
                **on("click", stepper.set_step, step=10),
                id=f"{name}-step10",
                cls="quiet",
            ),
            cls="row",
        ),
        id=f"widget-{name}",
        cls="card",
    )


def create_app(protocol: str = "v1") -> FastHTML:
    app = FastHTML(
        hdrs=(datastar_script(protocol=protocol), Style(STYLE)),
        htmx=False,
        surreal=False,
        secret_key="widgets-example",
    )
    app.add_middleware(FastStateMiddleware, protocol=protocol)
    register_state(app, Stepper, scope=StateScope.COMPONENT)

    @app.route("/")
    def index(req):  # type: ignore[no-untyped-def]
        names = ("apples", "pears", "plums")
        views = [stepper_view(name, use_state(req, Stepper, key=name)) for name in names]
        return Titled(
            "Widgets",
            P("Three steppers of one class on one page, each with its own value.", cls="lead"),
            Div(*views, cls="grid"),
            Div(**live(req), id="live"),
        )

    return app


app = create_app()

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=5004)
