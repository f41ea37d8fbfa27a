"""The counter of DESIGN.md §1: a per-session counter on a FastHTML page.

Run:  python examples/counter.py   (serves http://127.0.0.1:5001)

Environment (all optional):
  FASTSTATE_REDIS_URL     share counters between workers through Redis
  FASTSTATE_DATABASE_URL  keep counters in a database across restarts
                          (sqlite:///counter.db, postgresql+psycopg://...)
  FASTSTATE_SECRET_KEY    session cookie key; required with Redis

Several workers:
  FASTSTATE_SECRET_KEY=change-me FASTSTATE_REDIS_URL=redis://127.0.0.1:6379/0 \
    uvicorn --app-dir examples counter:app --workers 4
"""

from __future__ import annotations

import os
from pathlib import Path

from fasthtml.common import Button, Div, FastHTML, P, Span, Style, Titled

from faststate import (
    FastStateMiddleware,
    ReactiveState,
    RedisStore,
    SQLPersistence,
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


class CounterState(ReactiveState):
    count: int = 0

    @event
    def increment(self, amount: int = 1) -> None:
        self.count += amount

    @event
    def reset(self) -> None:
        self.count = 0


def create_app(
    protocol: str = "v1", redis_url: str | None = None, database_url: str | None = None
) -> FastHTML:
    app = FastHTML(
        hdrs=(datastar_script(protocol=protocol), Style(STYLE)), htmx=False, surreal=False
    )
    app.add_middleware(
        FastStateMiddleware,
        protocol=protocol,
        store=RedisStore(redis_url) if redis_url else None,
        persistence=SQLPersistence(database_url) if database_url else None,
    )
    register_state(app, CounterState, scope=StateScope.SESSION, auto_persist=bool(database_url))

    @app.route("/")
    def index(req):  # type: ignore[no-untyped-def]
        counter = use_state(req, CounterState)
        return Titled(
            "Counter",
            counter,
            P(
                Span("Count", cls="label"),
                Span(**text(counter, "count"), id="count", cls="big"),
                cls="stat",
            ),
            Div(
                Button("+1", **on("click", counter.increment, amount=1), id="inc"),
                Button("+5", **on("click", counter.increment, amount=5), id="inc5"),
                Button("Reset", **on("click", counter.reset), id="reset", cls="quiet"),
                cls="row",
            ),
            P(
                "This count is yours: every visitor has their own, and your other tabs follow.",
                cls="muted",
            ),
            # This is what makes the other tabs of the same session follow along.
            Div(**live(req), id="live"),
        )

    return app


app = create_app(
    redis_url=os.environ.get("FASTSTATE_REDIS_URL"),
    database_url=os.environ.get("FASTSTATE_DATABASE_URL"),
)

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=5001)
