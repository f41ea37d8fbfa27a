"""Browser tests of examples/chat.py (GLOBAL scope, a Stream of messages, presence).

The room is shared by every test using one server, so each test here gets
servers of its own (``example_site`` called per test) and starts from an empty
room.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.parametrize("protocol", ["v1", "beta"])


@pytest.fixture
def site(example_site) -> Callable[[str], str]:  # type: ignore[no-untyped-def]
    """``site(protocol) -> base_url``: a fresh room for this test."""
    return example_site("chat")


def open_room(context: Any, base: str) -> Any:
    """The room's page, once its live stream is open."""
    page = context.new_page()
    with page.expect_response(lambda r: "/_faststate/live" in r.url):
        page.goto(base + "/")
    return page


def send(page: Any, name: str, message: str) -> None:
    from playwright.sync_api import expect

    page.fill("#name", name)
    page.fill("#message", message)
    page.click("#send")
    expect(page.locator("#message")).to_have_value("")  # accepted: the input empties


def test_two_people_chat_and_see_each_other(  # type: ignore[no-untyped-def]
    protocol: str, site, new_context, page_errors
) -> None:
    from playwright.sync_api import expect

    base = site(protocol)
    ada = open_room(new_context(protocol), base)
    expect(ada.locator("#count")).to_have_text("0")
    expect(ada.locator("#online")).to_have_text("1")
    bob = open_room(new_context(protocol), base)
    expect(ada.locator("#online")).to_have_text("2")  # Ada sees Bob arrive
    expect(bob.locator("#online")).to_have_text("2")

    # A message without a name is refused next to the name field, and kept.
    bob.fill("#message", "anyone here?")
    bob.click("#send")
    expect(bob.locator("#name-error")).to_have_text("String should have at least 1 character")
    expect(bob.locator("#message")).to_have_value("anyone here?")
    expect(bob.locator("#count")).to_have_text("0")

    send(bob, "Bob", "anyone here?")
    expect(bob.locator("#name-error")).to_be_hidden()
    send(ada, "Ada", "hello Bob")
    for page in (ada, bob):
        expect(page.locator("#count")).to_have_text("2")
        expect(page.locator("ul.messages li")).to_have_text(["Bob: anyone here?", "Ada: hello Bob"])
    assert page_errors(ada) == []
    assert page_errors(bob) == []


def test_docs_screenshot(  # type: ignore[no-untyped-def]
    protocol: str, site, new_context, page_errors, screenshot
) -> None:
    """docs/screenshots/chat.png: a short conversation, two people online."""
    from playwright.sync_api import expect

    base = site(protocol)
    ada = open_room(new_context(protocol), base)
    bob = open_room(new_context(protocol), base)
    expect(ada.locator("#online")).to_have_text("2")
    send(ada, "Ada", "Is the tea ready?")
    send(bob, "Bob", "Two more minutes, it is still steeping.")
    send(ada, "Ada", "Perfect, I will bring the mugs.")
    expect(ada.locator("ul.messages li")).to_have_count(3)
    expect(ada.locator("#count")).to_have_text("3")
    screenshot(ada, "chat")
    assert page_errors(ada) == []
    assert page_errors(bob) == []
