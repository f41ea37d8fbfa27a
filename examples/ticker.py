"""A background task changes a GLOBAL state once a second; every page follows.

Run:  python examples/ticker.py   (serves http://127.0.0.1:5008)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fasthtml.common import Button, Div, FastHTML, P, Span, Style, Titled

from faststate import (
    FastStateMiddleware,
    ReactiveState,
    StateScope,
    event,
    live,
    mutate,
    on,
    register_state,
    text,
    use_state,
)
from faststate.fasthtml import datastar_script

#: The stylesheet all the examples share.
STYLE = Path(__file__).with_name("style.css").read_text()


class Ticker(ReactiveState):
    ticks: int = 0
    running: bool = True

    @event
    def toggle(self) -> None:
        self.running = not self.running


async def tick_forever(app: Any, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        async with mutate(app, Ticker) as ticker:
            if ticker.running:
                ticker.ticks += 1


def create_app(protocol: str = "v1", interval: float = 1.0) -> FastHTML:
    async def lifespan(app: Any) -> AsyncIterator[None]:  # FastHTML wants a generator
        task = asyncio.create_task(tick_forever(app, interval))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app = FastHTML(
        hdrs=(datastar_script(protocol=protocol), Style(STYLE)),
        htmx=False,
        surreal=False,
        secret_key="ticker-example",
        lifespan=lifespan,
    )
    app.add_middleware(FastStateMiddleware, protocol=protocol)
    register_state(app, Ticker, scope=StateScope.GLOBAL)

    @app.route("/")
    def index(req):  # type: ignore[no-untyped-def]
        ticker = use_state(req, Ticker)
        return Titled(
            "Ticker",
            ticker,
            P("A task on the server counts once a second; every open page follows.", cls="lead"),
            P(
                Span("Ticks", cls="label"),
                Span(**text(ticker, "ticks"), id="ticks", cls="big"),
                cls="stat",
            ),
            P("Running: ", Span(**text(ticker, "running"), id="running", cls="badge")),
            Div(Button("pause / resume", **on("click", ticker.toggle), id="toggle"), cls="row"),
            Div(**live(req), id="live"),
        )

    return app


app = create_app()

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=5008)
