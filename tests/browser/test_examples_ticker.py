"""Browser tests of examples/ticker.py: a background task changes a GLOBAL state
through ``mutate`` and every open page follows; pausing stops it for everyone.

The ticker is shared by every test using one server, so each test here gets
servers of its own (``example_site`` called per test).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.parametrize("protocol", ["v1", "beta"])


def open_ticker(context: Any, base: str) -> Any:
    """The ticker's page, once its live stream is open."""
    page = context.new_page()
    with page.expect_response(lambda r: "/_faststate/live" in r.url):
        page.goto(base + "/")
    return page


def ticks(page: Any) -> int:
    return int((page.locator("#ticks").text_content() or "").strip())


def test_ticks_reach_every_page_until_paused(  # type: ignore[no-untyped-def]
    protocol: str, example_site, new_context, page_errors
) -> None:
    from playwright.sync_api import expect

    base = example_site("ticker", interval=0.2)(protocol)
    a = open_ticker(new_context(protocol), base)
    b = open_ticker(new_context(protocol), base)
    expect(a.locator("#running")).to_have_text("true")
    a.wait_for_function("() => Number(document.querySelector('#ticks').textContent) >= 3")
    b.wait_for_function("() => Number(document.querySelector('#ticks').textContent) >= 3")

    b.click("#toggle")
    expect(a.locator("#running")).to_have_text("false")
    a.wait_for_timeout(400)  # a tick already under way may still land
    paused = ticks(a)
    a.wait_for_timeout(600)  # three intervals
    assert ticks(a) == paused
    expect(b.locator("#ticks")).to_have_text(str(paused))
    a.reload()
    expect(a.locator("#ticks")).to_have_text(str(paused))
    expect(a.locator("#running")).to_have_text("false")
    assert page_errors(a) == []
    assert page_errors(b) == []


def test_docs_screenshot(  # type: ignore[no-untyped-def]
    protocol: str, example_site, new_context, page_errors, screenshot
) -> None:
    """docs/screenshots/ticker.png: paused three ticks in (the real one-second interval;
    the pause lands long before a fourth)."""
    from playwright.sync_api import expect

    site: Callable[[str], str] = example_site("ticker")
    page = open_ticker(new_context(protocol), site(protocol))
    expect(page.locator("#ticks")).to_have_text("3", timeout=10_000)
    page.click("#toggle")
    expect(page.locator("#running")).to_have_text("false")
    screenshot(page, "ticker")
    assert page_errors(page) == []
