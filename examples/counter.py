"""The counter of DESIGN.md §1: a per-session counter on a FastHTML page.

Run:  python examples/counter.py   (serves http://127.0.0.1:5001)
"""

from __future__ import annotations

from fasthtml.common import Button, FastHTML, P, Span, Titled

from faststate import (
    FastStateMiddleware,
    ReactiveState,
    StateScope,
    event,
    on,
    register_state,
    text,
    use_state,
)
from faststate.fasthtml import datastar_script


class CounterState(ReactiveState):
    count: int = 0

    @event
    def increment(self, amount: int = 1) -> None:
        self.count += amount

    @event
    def reset(self) -> None:
        self.count = 0


def create_app(protocol: str = "v1") -> FastHTML:
    app = FastHTML(hdrs=(datastar_script(protocol=protocol),), htmx=False, surreal=False)
    app.add_middleware(FastStateMiddleware, protocol=protocol)
    register_state(app, CounterState, scope=StateScope.SESSION)

    @app.route("/")
    def index(req):  # type: ignore[no-untyped-def]
        counter = use_state(req, CounterState)
        return Titled(
            "Counter",
            counter,
            P("Count: ", Span(**text(counter, "count"), id="count")),
            Button("+1", **on("click", counter.increment, amount=1), id="inc"),
            Button("+5", **on("click", counter.increment, amount=5), id="inc5"),
            Button("Reset", **on("click", counter.reset), id="reset"),
        )

    return app


app = create_app()

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=5001)
