"""Browser tests of examples/fastapi_app.py: on FastAPI, the counter counts, the
validated form explains a refusal next to its field, and the JSON API reads the
same state."""

from __future__ import annotations

from collections.abc import Callable

import pytest

pytestmark = pytest.mark.parametrize("protocol", ["v1", "beta"])


@pytest.fixture(scope="module")
def site(example_site) -> Callable[[str], str]:  # type: ignore[no-untyped-def]
    return example_site("fastapi_app")


def test_counter_counts_and_the_api_agrees(  # type: ignore[no-untyped-def]
    protocol: str, site, new_context, page_errors
) -> None:
    from playwright.sync_api import expect

    context = new_context(protocol)
    page = context.new_page()
    page.goto(site(protocol) + "/")
    expect(page.locator("h1")).to_have_text("faststate on FastAPI")
    expect(page.locator("#count")).to_have_text("0")
    page.click("#inc")
    expect(page.locator("#count")).to_have_text("1")
    page.click("#inc10")
    expect(page.locator("#count")).to_have_text("11")
    # The same session's state through the typed JSON route (UseState).
    assert context.request.get(site(protocol) + "/api/count").json() == {"count": 11}
    page.reload()
    expect(page.locator("#count")).to_have_text("11")
    other = new_context(protocol).new_page()
    other.goto(site(protocol) + "/")
    expect(other.locator("#count")).to_have_text("0")  # another session
    assert page_errors(page) == []
    assert page_errors(other) == []


def test_the_form_shows_each_refusal_then_accepts(  # type: ignore[no-untyped-def]
    protocol: str, site, new_context, page_errors
) -> None:
    from playwright.sync_api import expect

    page = new_context(protocol).new_page()
    page.goto(site(protocol) + "/")
    error, email = page.locator("#email-error"), page.locator("#email")
    expect(error).to_be_hidden()
    expect(page.locator("#subscribed")).to_be_hidden()

    page.fill("#email", "not an address")
    page.click("#subscribe")
    expect(error).to_have_text("enter an address like ada@example.com")
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(email).to_have_value("not an address")

    page.fill("#email", "ada@example.org")
    page.click("#subscribe")
    expect(error).to_have_text("that domain does not take newsletters")

    page.fill("#email", "Ada@Example.com")
    page.click("#subscribe")
    expect(error).to_be_hidden()
    expect(email).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator("#subscribed")).to_have_text("Subscribed: ada@example.com")
    expect(email).to_have_value("ada@example.com")  # as the server normalised it
    assert page_errors(page) == []


def test_docs_screenshot(  # type: ignore[no-untyped-def]
    protocol: str, site, new_context, page_errors, screenshot
) -> None:
    """docs/screenshots/fastapi_app.png: the counter at 11 and an accepted subscription."""
    from playwright.sync_api import expect

    page = new_context(protocol).new_page()
    page.goto(site(protocol) + "/")
    page.click("#inc10")
    page.click("#inc")
    expect(page.locator("#count")).to_have_text("11")
    page.fill("#email", "Ada@Example.com")
    page.click("#subscribe")
    expect(page.locator("#subscribed")).to_have_text("Subscribed: ada@example.com")
    screenshot(page, "fastapi_app")
    assert page_errors(page) == []
