"""Browser tests of examples/counter.py (SESSION scope), under both protocols.

One uvicorn server per protocol for the module; every test opens fresh browser
contexts, i.e. fresh faststate sessions.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

pytestmark = pytest.mark.parametrize("protocol", ["v1", "beta"])


@pytest.fixture(scope="module")
def site(example_site) -> Callable[[str], str]:
    """``site(protocol) -> base_url``: one server per protocol, started on first use."""
    return example_site("counter")


def test_clicks_change_the_count(protocol: str, site, new_context, page_errors) -> None:
    from playwright.sync_api import expect

    page = new_context(protocol).new_page()
    page.goto(site(protocol) + "/")
    count = page.locator("#count")
    expect(count).to_have_text("0")
    page.click("#inc")
    expect(count).to_have_text("1")
    page.click("#inc5")
    expect(count).to_have_text("6")
    page.click("#reset")
    expect(count).to_have_text("0")
    page.click("#inc")
    expect(count).to_have_text("1")
    assert page_errors(page) == []


def test_reload_keeps_the_session_state(protocol: str, site, new_context, page_errors) -> None:
    from playwright.sync_api import expect

    page = new_context(protocol).new_page()
    page.goto(site(protocol) + "/")
    count = page.locator("#count")
    expect(count).to_have_text("0")
    page.click("#inc")
    expect(count).to_have_text("1")
    page.click("#inc5")
    expect(count).to_have_text("6")
    page.reload()
    expect(count).to_have_text("6")
    page.click("#inc")  # the reloaded page still drives the same instance
    expect(count).to_have_text("7")
    page.reload()
    expect(count).to_have_text("7")
    page.click("#reset")
    expect(count).to_have_text("0")
    page.reload()
    expect(count).to_have_text("0")
    assert page_errors(page) == []


def test_a_new_session_starts_at_zero(protocol: str, site, new_context, page_errors) -> None:
    from playwright.sync_api import expect

    base = site(protocol)
    first = new_context(protocol).new_page()
    first.goto(base + "/")
    expect(first.locator("#count")).to_have_text("0")
    first.click("#inc5")
    expect(first.locator("#count")).to_have_text("5")

    second = new_context(protocol).new_page()
    second.goto(base + "/")
    expect(second.locator("#count")).to_have_text("0")
    second.click("#inc")
    expect(second.locator("#count")).to_have_text("1")

    first.reload()
    expect(first.locator("#count")).to_have_text("5")
    first.click("#inc")
    expect(first.locator("#count")).to_have_text("6")
    second.reload()
    expect(second.locator("#count")).to_have_text("1")
    assert page_errors(first) == []
    assert page_errors(second) == []


def test_docs_screenshot(protocol: str, site, new_context, page_errors, screenshot) -> None:
    """docs/screenshots/counter.png: the count after +5 and +1."""
    from playwright.sync_api import expect

    page = new_context(protocol).new_page()
    page.goto(site(protocol) + "/")
    page.click("#inc5")
    page.click("#inc")
    expect(page.locator("#count")).to_have_text("6")
    screenshot(page, "counter")
    assert page_errors(page) == []
