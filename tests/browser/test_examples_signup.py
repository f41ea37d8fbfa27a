"""Browser tests of examples/signup.py: every refused input is explained next to
its field and kept; the accepted form goes to the welcome page."""

from __future__ import annotations

from collections.abc import Callable

import pytest

pytestmark = pytest.mark.parametrize("protocol", ["v1", "beta"])


@pytest.fixture(scope="module")
def site(example_site) -> Callable[[str], str]:  # type: ignore[no-untyped-def]
    return example_site("signup")


def test_signup_explains_each_refusal_then_welcomes(  # type: ignore[no-untyped-def]
    protocol: str, site, new_context, page_errors
) -> None:
    from playwright.sync_api import expect

    page = new_context(protocol).new_page()
    page.goto(site(protocol) + "/")
    expect(page.locator("h1")).to_have_text("Sign up")
    errors = ("#name-error", "#email-error", "#age-error", "#agree-error", "#form-error")
    for message in errors:
        expect(page.locator(message)).to_be_hidden()

    # Types refuse: every bad field at once, each with its message; input kept.
    page.fill("#email", "not an address")
    page.fill("#age", "12")
    page.click("#submit")
    expect(page.locator("#name-error")).to_have_text("String should have at least 1 character")
    expect(page.locator("#email-error")).to_contain_text("String should match pattern")
    expect(page.locator("#age-error")).to_have_text("Input should be greater than or equal to 18")
    expect(page.locator("#name")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#email")).to_have_value("not an address")
    expect(page.locator("#age")).to_have_value("12")

    # The event refuses what types cannot say; the fixed fields' messages go.
    page.fill("#name", "Ada Lovelace")
    page.fill("#email", "Ada@Example.org")
    page.fill("#age", "36")
    page.click("#submit")
    expect(page.locator("#email-error")).to_have_text("sign-ups from that domain are closed")
    for message in ("#name-error", "#age-error"):
        expect(page.locator(message)).to_be_hidden()
    expect(page.locator("#name")).not_to_have_attribute("aria-invalid", "true")

    page.fill("#email", "Ada@Example.com")
    page.click("#submit")
    expect(page.locator("#agree-error")).to_have_text("please accept the terms to go on")
    expect(page.locator("#email-error")).to_be_hidden()
    expect(page.locator("#email")).to_have_value("Ada@Example.com")  # as typed: refused
    assert page.url.endswith("/")

    page.check("#agree")
    page.click("#submit")
    page.wait_for_url("**/welcome", timeout=10_000)
    expect(page.locator("h1")).to_have_text("Welcome, Ada Lovelace")
    expect(page.locator("#welcome")).to_have_text("We will write to ada@example.com.")

    page.click("#again")
    page.wait_for_url(lambda url: not url.endswith("/welcome"), timeout=10_000)
    expect(page.locator("#name")).to_have_value("")
    assert page_errors(page) == []
    page.close()


def test_docs_screenshot(  # type: ignore[no-untyped-def]
    protocol: str, site, new_context, page_errors, screenshot
) -> None:
    """docs/screenshots/signup.png: the form refusing two fields, each message by its field."""
    from playwright.sync_api import expect

    page = new_context(protocol).new_page()
    page.goto(site(protocol) + "/")
    page.fill("#email", "ada@example.com")
    page.fill("#age", "12")
    page.click("#submit")
    expect(page.locator("#name-error")).to_have_text("String should have at least 1 character")
    expect(page.locator("#age-error")).to_have_text("Input should be greater than or equal to 18")
    expect(page.locator("#age")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#email-error")).to_be_hidden()
    screenshot(page, "signup")
    assert page_errors(page) == []
