"""The counter as a plain Starlette app, without FastHTML.

Run:  python examples/starlette_counter.py   (serves http://127.0.0.1:5002)
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from faststate import (
    FastStateMiddleware,
    ReactiveState,
    StateScope,
    event,
    on,
    register_state,
    signals,
    text,
    use_state,
)
from faststate.fasthtml import DATASTAR_BETA_SRC, DATASTAR_V1_SRC

#: The stylesheet all the examples share.
STYLE = Path(__file__).with_name("style.css").read_text()


class CounterState(ReactiveState):
    count: int = 0

    @event
    def increment(self, amount: int = 1) -> None:
        self.count += amount


def attrs(mapping: dict[str, str]) -> str:
    return " ".join(f'{name}="{escape(value)}"' for name, value in mapping.items())


def create_app(protocol: str = "v1") -> Starlette:
    src = DATASTAR_BETA_SRC if protocol == "beta" else DATASTAR_V1_SRC

    async def index(request: Request) -> HTMLResponse:
        counter = use_state(request, CounterState)
        return HTMLResponse(
            f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Counter</title>
  <script type="module" src="{src}"></script>
  <style>{STYLE}</style>
</head>
<body><main>
  <h1>Counter</h1>
  <p class="lead">Plain Starlette: the page is an f-string.</p>
  <div {attrs(signals(counter))}></div>
  <p class="stat">
    <span class="label">Count</span>
    <span id="count" class="big" {attrs(text(counter, "count"))}></span>
  </p>
  <div class="row">
    <button id="inc" {attrs(on("click", counter.increment, amount=1))}>+1</button>
  </div>
</main></body>
</html>"""
        )

    app = Starlette(routes=[Route("/", index)])
    app.add_middleware(FastStateMiddleware, protocol=protocol)
    register_state(app, CounterState, scope=StateScope.SESSION)
    return app


app = create_app()

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=5002)
