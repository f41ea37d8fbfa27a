"""Page helpers in the real clients, under both protocols: Datastar's own triggers
(``load``, ``interval``) fire, and ``redirect`` navigates after the event's changes."""

from __future__ import annotations

from typing import Any

import pytest
from fasthtml.common import Button, Div, FastHTML, Input, P, Span, Titled
from starlette.responses import RedirectResponse

from faststate import (
    Bindable,
    FastStateMiddleware,
    ReactiveState,
    StateScope,
    action,
    bind,
    event,
    on,
    redirect,
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


class Form(ReactiveState):
    email: Bindable[str] = ""
    seen: str = "nothing yet"

    @event
    def submit(self) -> None:
        self.seen = f"got {self.email}"
        self.email = self.email.strip().lower()


class Search(ReactiveState):
    query: Bindable[str] = ""
    preview: str = ""
    searched: str = "nothing yet"

    @event
    def typed(self) -> None:
        self.preview = self.query.upper()

    @event
    def search(self) -> None:
        self.searched = f"searched {self.query}"


class Wizard(ReactiveState):
    step: str = "start"

    @event
    def finish(self) -> Any:
        self.step = "finished"
        return redirect("/done?from=wizard")

    @event
    def leave(self) -> Any:
        self.step = "left"
        return RedirectResponse("/done?from=response", status_code=303)


def make_app(protocol: str) -> FastHTML:
    app = FastHTML(hdrs=(datastar_script(protocol=protocol),), htmx=False, surreal=False)
    app.add_middleware(FastStateMiddleware, protocol=protocol, secret_key="browser-helpers")
    register_state(app, Clock, scope=StateScope.SESSION)
    register_state(app, Wizard, scope=StateScope.SESSION)
    register_state(app, Form, scope=StateScope.SESSION)
    register_state(app, Search, scope=StateScope.SESSION)
    keydown = "data-on:keydown" if protocol == "v1" else "data-on-keydown"

    @app.route("/form")
    def form(req):  # type: ignore[no-untyped-def]
        state = use_state(req, Form)
        return Titled(
            "Form",
            state,
            Input(**bind(state, "email"), id="email"),
            Button("send", **on("click", state.submit), id="send"),
            P(Span(**text(state, "seen"), id="seen")),
        )

    @app.route("/search")
    def search(req):  # type: ignore[no-untyped-def]
        state = use_state(req, Search)
        return Titled(
            "Search",
            state,
            Input(
                **bind(state, "query"),
                # every keystroke (debounced) runs an event; Enter searches
                **on("input__debounce.50ms", state.typed),
                **{keydown: f"evt.key === 'Enter' && {action(state.search)}"},
                id="query",
            ),
            P(Span(**text(state, "preview"), id="preview")),
            P(Span(**text(state, "searched"), id="searched")),
        )

    @app.route("/wizard")
    def wizard(req):  # type: ignore[no-untyped-def]
        state = use_state(req, Wizard)
        return Titled(
            "Wizard",
            state,
            P("step ", Span(**text(state, "step"), id="step")),
            Button("finish", **on("click", state.finish), id="finish"),
            Button("leave", **on("click", state.leave), id="leave"),
        )

    @app.route("/done")
    def done(req):  # type: ignore[no-untyped-def]
        return Titled("Done", P(f"step {use_state(req, Wizard).step}", id="done"))

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



def test_a_bound_input_reaches_the_server_and_back(  # type: ignore[no-untyped-def]
    protocol: str, site, new_context, page_errors
) -> None:
    from playwright.sync_api import expect

    page = new_context(protocol).new_page()
    page.goto(site(protocol) + "/form")
    expect(page.locator("#seen")).to_have_text("nothing yet")
    page.fill("#email", "  Ada@Example.ORG ")
    page.click("#send")
    expect(page.locator("#seen")).to_have_text("got   Ada@Example.ORG ")
    # The server's own change to the field shows in the input.
    expect(page.locator("#email")).to_have_value("ada@example.org")
    page.reload()
    expect(page.locator("#email")).to_have_value("ada@example.org")
    assert page_errors(page) == []
    page.close()


@pytest.mark.parametrize("button", ["finish", "leave"])
def test_redirect_navigates_after_the_change_is_saved(  # type: ignore[no-untyped-def]
    protocol: str, button: str, site, new_context, page_errors
) -> None:
    from playwright.sync_api import expect

    page = new_context(protocol).new_page()
    page.goto(site(protocol) + "/wizard")
    expect(page.locator("#step")).to_have_text("start")
    page.click(f"#{button}")
    page.wait_for_url("**/done?from=*", timeout=10_000)
    expected = {"finish": "finished", "leave": "left"}[button]
    expect(page.locator("#done")).to_have_text(f"step {expected}")
    assert page_errors(page) == []
    page.close()


def test_interval_and_load_fire(protocol: str, site, new_context, page_errors) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page = new_context(protocol).new_page()
    page.goto(site(protocol) + "/")
    expect(page.locator("#loads")).to_have_text("1")
    page.wait_for_function(
        "Number(document.querySelector('#ticks').textContent) >= 3", timeout=10_000
    )
    page.close()


def test_dom_events_and_action_run_events(  # type: ignore[no-untyped-def]
    protocol: str, site, new_context, page_errors
) -> None:
    from playwright.sync_api import expect

    page = new_context(protocol).new_page()
    page.goto(site(protocol) + "/search")
    page.locator("#query").press_sequentially("grace", delay=20)
    expect(page.locator("#preview")).to_have_text("GRACE")  # on("input") ran
    expect(page.locator("#searched")).to_have_text("nothing yet")
    page.locator("#query").press("Enter")  # action() in a hand-written attribute
    expect(page.locator("#searched")).to_have_text("searched grace")
    assert page_errors(page) == []
    page.close()
