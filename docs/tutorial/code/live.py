# live.py — run it with `python live.py`, open http://127.0.0.1:5006 in two windows
import asyncio
import contextlib
from typing import Literal

from fasthtml.common import Button, Div, P, Span, Titled
from pydantic import Field

from faststate import (
    ReactiveState,
    event,
    live,
    mutate,
    on,
    ref,
    text,
    use_state,
    viewer_count,
)
from faststate.fasthtml import FastStateHTML

Choice = Literal["tea", "coffee"]


class Poll(ReactiveState):
    votes: dict[str, int] = Field(default_factory=lambda: {"tea": 0, "coffee": 0})
    seconds_open: int = 0

    @event
    def vote(self, choice: Choice):
        self.votes[choice] += 1


async def clock(app):
    """A background task: changes the state through mutate, every page follows."""
    while True:
        await asyncio.sleep(1)
        async with mutate(app, Poll) as poll:  # GLOBAL: no key
            poll.seconds_open += 1


async def lifespan(app):
    task = asyncio.create_task(clock(app))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


app = FastStateHTML(lifespan=lifespan)
app.register_state(Poll, scope="global", presence=True)  # one poll; who is here


@app.route("/")
def index(req):
    poll = use_state(req, Poll)
    return Titled(
        "Tea or coffee?",
        poll,
        # ref() names a field in a Datastar expression of your own
        P("Tea: ", Span(data_text=ref(poll, "votes") + ".tea", id="tea-votes")),
        P("Coffee: ", Span(data_text=ref(poll, "votes") + ".coffee", id="coffee-votes")),
        Button("Tea", **on("click", poll.vote, choice="tea"), id="tea"),
        Button("Coffee", **on("click", poll.vote, choice="coffee"), id="coffee"),
        P("Open for ", Span(**text(poll, "seconds_open")), " s"),
        P(Span(**viewer_count(poll), id="online"), " people here"),
        Div(**live(req), id="live"),  # after every use_state of the page
    )


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=5006)
