"""Presence in a real browser, under both clients: "N here" and "alice editing".

tests/presence_app.py served by uvicorn; each browser context is a session,
a ``who`` cookie logs it in.  Closing a tab ends its stream, and the other
pages' counts drop within the heartbeat.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fasthtml.common import FastHTML

from tests.presence_app import make_app as presence_app

HEARTBEAT = 1.0

pytestmark = pytest.mark.parametrize("protocol", ["v1", "beta"])


def make_app(protocol: str) -> FastHTML:
    return presence_app(protocol, heartbeat=HEARTBEAT)


def open_tab(context: Any, url: str, page_errors: Callable[[Any], list[str]]) -> Any:
    """A page of ``url`` whose live stream is open."""
    page = context.new_page()
    page_errors(page)
    with page.expect_response(lambda r: "/_faststate/live" in r.url):
        page.goto(url)
    return page


def logged_in(new_context: Callable[..., Any], protocol: str, base: str, who: str) -> Any:
    context = new_context(protocol)
    context.add_cookies([{"name": "who", "value": who, "url": base}])
    return context


def test_room_counts_sessions_not_tabs_and_drops_a_closed_tab(
    protocol: str, site: Callable[[str], str], new_context: Any, page_errors: Any
) -> None:
    from playwright.sync_api import expect

    base = site(protocol)
    watcher = open_tab(new_context(protocol), f"{base}/room", page_errors)
    expect(watcher.locator("#count")).to_have_text("1")
    expect(watcher.locator("#names")).to_have_text("")

    alice = logged_in(new_context, protocol, base, "alice")
    first = open_tab(alice, f"{base}/room", page_errors)
    expect(watcher.locator("#count")).to_have_text("2")
    expect(watcher.locator("#names")).to_have_text("alice")
    expect(first.locator("#count")).to_have_text("2")

    second = open_tab(alice, f"{base}/room", page_errors)
    expect(second.locator("#count")).to_have_text("2")  # one session, two tabs: one viewer
    watcher.locator("#click").click()  # an event's answer leaves the list alone
    expect(first.locator("#clicks")).to_have_text("1")
    expect(watcher.locator("#count")).to_have_text("2")

    second.close()
    watcher.wait_for_timeout(300)
    expect(watcher.locator("#count")).to_have_text("2")  # alice still has a tab open
    first.close()
    expect(watcher.locator("#count")).to_have_text("1", timeout=HEARTBEAT * 1000)
    expect(watcher.locator("#names")).to_have_text("")
    watcher.wait_for_timeout(50)
    assert page_errors(watcher) == []


def test_record_shows_who_is_editing(
    protocol: str, site: Callable[[str], str], new_context: Any, page_errors: Any
) -> None:
    from playwright.sync_api import expect

    base = site(protocol)
    url = f"{base}/docs/plan-{protocol}"
    alice = open_tab(logged_in(new_context, protocol, base, "alice"), url, page_errors)
    expect(alice.locator("#names")).to_have_text("alice")
    bob_context = logged_in(new_context, protocol, base, "bob")
    bob = open_tab(bob_context, url, page_errors)
    guest = open_tab(new_context(protocol), url, page_errors)
    for page in (alice, bob, guest):
        expect(page.locator("#names")).to_have_text("alice, bob")
        expect(page.locator("#count")).to_have_text("3")
    bob_context.close()
    expect(alice.locator("#names")).to_have_text("alice", timeout=HEARTBEAT * 1000)
    expect(guest.locator("#count")).to_have_text("2")
    for page in (alice, guest):
        page.wait_for_timeout(50)
        assert page_errors(page) == []
