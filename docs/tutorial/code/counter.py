# counter.py — run it with `python counter.py`, then open http://127.0.0.1:5001
from fasthtml.common import Button, P, Span, Titled

from faststate import ReactiveState, event, on, text, use_state
from faststate.fasthtml import FastStateHTML


class CounterState(ReactiveState):
    count: int = 0

    @event
    def increment(self, amount: int = 1):
        self.count += amount

    @event
    def reset(self):
        self.count = 0


# FastHTML with faststate's middleware and the Datastar client, without htmx
app = FastStateHTML()
app.register_state(CounterState, scope="session")  # POST /CounterState/increment, /reset


@app.route("/")
def index(req):
    counter = use_state(req, CounterState)
    return Titled(
        "Counter",
        counter,  # renders <div data-signals='{"CounterState": {...}}'>
        P("Count: ", Span(**text(counter, "count"), id="count")),
        Button("+1", **on("click", counter.increment, amount=1), id="inc"),
        Button("+10", **on("click", counter.increment, amount=10), id="inc10"),
        Button("reset", **on("click", counter.reset), id="reset"),
    )


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=5001)
