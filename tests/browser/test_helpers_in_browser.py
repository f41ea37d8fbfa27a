"""Page helpers in the real clients: Datastar's own triggers (``load``, ``interval``)
fire under both protocols."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fasthtml.common import Div, FastHTML, P, Span, Titled

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

pytestmark = pytest.mark.parametrize("protocol", ["v1", "beta"])


class Clock(ReactiveState):
    ticks: int = 0
    loads: int = 0

    @event
    def tick(self) -> None:
        self.ticks += 1

    @event
    def loaded(self) -> None:
        self.loads += 1


def make_app(protocol: str) -> FastHTML:
    app = FastHTML(hdrs=(datastar_script(protocol=protocol),), htmx=False, surreal=False)
    app.add_middleware(FastStateMiddleware, protocol=protocol, secret_key="browser-helpers")
    register_state(app, Clock, scope=StateScope.SESSION)

    @app.route("/")
    def page(req):  # type: ignore[no-untyped-def]
        clock = use_state(req, Clock)
        return Titled(
            "Clock",
            clock,
            P("ticks ", Span(**text(clock, "ticks"), id="ticks")),
            P("loads ", Span(**text(clock, "loads"), id="loads")),
            Div(**on("interval__duration.200ms", clock.tick)),
            Div(**on("load", clock.loaded)),
        )

    return app


@pytest.fixture(scope="module")
def site(serve) -> Callable[[str], str]:  # type: ignore[no-untyped-def]
    urls: dict[str, str] = {}

    def base_url(protocol: str) -> str:
        if protocol not in urls:
            urls[protocol] = serve(make_app(protocol))
        return urls[protocol]

    return base_url


def test_interval_and_load_fire(protocol: str, site, new_context, page_errors) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page = new_context(protocol).new_page()
    page.goto(site(protocol) + "/")
    expect(page.locator("#loads")).to_have_text("1")
    page.wait_for_function(
        "Number(document.querySelector('#ticks').textContent) >= 3", timeout=10_000
    )
    page.close()
