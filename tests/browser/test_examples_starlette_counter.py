"""Browser tests of examples/starlette_counter.py: the session counter on plain
Starlette, its page an f-string, under both protocols."""

from __future__ import annotations

from collections.abc import Callable

import pytest

pytestmark = pytest.mark.parametrize("protocol", ["v1", "beta"])


@pytest.fixture(scope="module")
def site(example_site) -> Callable[[str], str]:  # type: ignore[no-untyped-def]
    return example_site("starlette_counter")


def test_each_session_counts_for_itself(  # type: ignore[no-untyped-def]
    protocol: str, site, new_context, page_errors
) -> None:
    from playwright.sync_api import expect

    page = new_context(protocol).new_page()
    page.goto(site(protocol) + "/")
    count = page.locator("#count")
    expect(count).to_have_text("0")
    page.click("#inc")
    expect(count).to_have_text("1")
    page.click("#inc")
    expect(count).to_have_text("2")
    page.reload()
    expect(count).to_have_text("2")

    other = new_context(protocol).new_page()
    other.goto(site(protocol) + "/")
    expect(other.locator("#count")).to_have_text("0")
    other.click("#inc")
    expect(other.locator("#count")).to_have_text("1")
    page.reload()
    expect(count).to_have_text("2")
    assert page_errors(page) == []
    assert page_errors(other) == []


def test_docs_screenshot(  # type: ignore[no-untyped-def]
    protocol: str, site, new_context, page_errors, screenshot
) -> None:
    """docs/screenshots/starlette_counter.png: the count after three clicks."""
    from playwright.sync_api import expect

    page = new_context(protocol).new_page()
    page.goto(site(protocol) + "/")
    for expected in ("1", "2", "3"):
        page.click("#inc")
        expect(page.locator("#count")).to_have_text(expected)
    screenshot(page, "starlette_counter")
    assert page_errors(page) == []
