"""GLOBAL scope: one poll shared by every visitor.

Run:  python examples/global_board.py   (serves http://127.0.0.1:5006)

With FASTSTATE_REDIS_URL (and FASTSTATE_SECRET_KEY) set, every worker shares
the poll through Redis.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from fasthtml.common import Button, Div, FastHTML, Li, P, Span, Style, Titled, Ul
from pydantic import computed_field
from sqlmodel import Field

from faststate import (
    FastStateMiddleware,
    ReactiveState,
    RedisStore,
    StateScope,
    event,
    live,
    on,
    ref,
    register_state,
    text,
    use_state,
)
from faststate.fasthtml import datastar_script

#: The stylesheet all the examples share.
STYLE = Path(__file__).with_name("style.css").read_text()

Choice = Literal["tea", "coffee", "water"]


class Poll(ReactiveState):
    votes: dict[str, int] = Field(default_factory=lambda: {"tea": 0, "coffee": 0, "water": 0})

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> int:
        return sum(self.votes.values())

    @event
    def vote(self, choice: Choice) -> None:
        self.votes[choice] += 1


def create_app(protocol: str = "v1", redis_url: str | None = None) -> FastHTML:
    app = FastHTML(
        hdrs=(datastar_script(protocol=protocol), Style(STYLE)),
        htmx=False,
        surreal=False,
        secret_key="board-example",
    )
    app.add_middleware(
        FastStateMiddleware, protocol=protocol, store=RedisStore(redis_url) if redis_url else None
    )
    register_state(app, Poll, scope=StateScope.GLOBAL)

    @app.route("/")
    def index(req):  # type: ignore[no-untyped-def]
        poll = use_state(req, Poll)
        return Titled(
            "What do we drink?",
            poll,
            P("One poll for everyone: each vote shows on every open page.", cls="lead"),
            Ul(
                *(
                    Li(
                        Button(
                            choice, **on("click", poll.vote, choice=choice), id=f"vote-{choice}"
                        ),
                        " ",
                        Span(
                            **{"data-text": f"{ref(poll, 'votes')}.{choice}"},
                            id=f"votes-{choice}",
                            cls="badge",
                        ),
                    )
                    for choice in ("tea", "coffee", "water")
                ),
                cls="poll",
            ),
            P("Total: ", Span(**text(poll, "total"), id="total"), " votes", cls="muted"),
            Div(**live(req), id="live"),
        )

    return app


app = create_app(redis_url=os.environ.get("FASTSTATE_REDIS_URL"))

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=5006)
