"""Browser tests of examples/jinja_todos.py: the todo list on Starlette with Jinja2
templates adds, toggles, and refuses a blank title with a message on the page."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.parametrize("protocol", ["v1", "beta"])

ITEM_ID = re.compile(r"^item-(?P<id>.+)$")
DONE = re.compile(r"(^|\s)done(\s|$)")


@pytest.fixture(scope="module")
def site(example_site) -> Callable[[str], str]:  # type: ignore[no-untyped-def]
    return example_site("jinja_todos")


def open_list(context: Any, base: str) -> Any:
    from playwright.sync_api import expect

    list_id = f"list{uuid.uuid4().hex[:10]}"
    page = context.new_page()
    page.goto(f"{base}/lists/{list_id}")
    expect(page.locator("h1")).to_have_text(f"Todo list: {list_id}")
    return page


def add_item(page: Any, title: str, *, enter: bool = False) -> str:
    from playwright.sync_api import expect

    page.fill("#new-title", title)
    if enter:
        page.press("#new-title", "Enter")
    else:
        page.click("#add")
    li = page.locator("#items li", has_text=title)
    expect(li).to_have_count(1)
    match = ITEM_ID.match(li.get_attribute("id") or "")
    assert match
    return match["id"]


def test_add_toggle_and_refuse_a_blank_title(  # type: ignore[no-untyped-def]
    protocol: str, site, new_context, page_errors
) -> None:
    from playwright.sync_api import expect

    page = open_list(new_context(protocol), site(protocol))
    url = page.url
    expect(page.locator("#items li")).to_have_count(0)

    milk = add_item(page, "milk & <eggs>")  # escaped by the template, shown as typed
    expect(page.locator(f"#title-{milk}")).to_have_text("milk & <eggs>")
    expect(page.locator("#new-title")).to_have_value("")
    bread = add_item(page, "bread", enter=True)  # the form's submit, without a reload
    assert page.url == url
    expect(page.locator("#items li span")).to_have_text(["milk & <eggs>", "bread"])

    title, toggle = page.locator(f"#title-{milk}"), page.locator(f"#toggle-{milk}")
    expect(toggle).to_have_text("done")
    toggle.click()
    expect(title).to_have_class(DONE)
    expect(toggle).to_have_text("undo")
    expect(page.locator(f"#title-{bread}")).not_to_have_class(DONE)
    assert (
        page.locator(f"#title-{milk}").evaluate("e => getComputedStyle(e).textDecorationLine")
        == "line-through"
    )

    error = page.locator("#title-error")
    expect(error).to_be_hidden()
    before = page.locator("#items").inner_html()
    page.fill("#new-title", "   ")
    page.click("#add")
    expect(error).to_have_text("String should have at least 1 character")
    expect(page.locator("#new-title")).to_have_value("   ")
    assert page.locator("#items").inner_html() == before

    add_item(page, "then this")
    expect(error).to_be_hidden()
    page.reload()
    expect(page.locator("#items li span")).to_have_text(["milk & <eggs>", "bread", "then this"])
    expect(page.locator(f"#title-{milk}")).to_have_class(DONE)
    page.click(f"#remove-{bread}")
    expect(page.locator("#items li span")).to_have_text(["milk & <eggs>", "then this"])
    assert page_errors(page) == []


def test_a_second_page_sees_changes_live(  # type: ignore[no-untyped-def]
    protocol: str, site, new_context, page_errors
) -> None:
    from playwright.sync_api import expect

    alice = open_list(new_context(protocol), site(protocol))
    bob = new_context(protocol).new_page()
    bob.goto(alice.url)
    expect(bob.locator("#items li")).to_have_count(0)
    bob.wait_for_timeout(300)  # its live stream opens
    item = add_item(alice, "shared")
    expect(bob.locator(f"#title-{item}")).to_have_text("shared")
    alice.click(f"#toggle-{item}")
    expect(bob.locator(f"#title-{item}")).to_have_class(DONE)
    assert page_errors(alice) == []
    assert page_errors(bob) == []


def test_docs_screenshot(  # type: ignore[no-untyped-def]
    protocol: str, site, new_context, page_errors, screenshot
) -> None:
    """docs/screenshots/jinja_todos.png: one finished item and two open ones."""
    from playwright.sync_api import expect

    page = new_context(protocol).new_page()
    page.goto(site(protocol) + "/lists/weekend")
    expect(page.locator("h1")).to_have_text("Todo list: weekend")
    expect(page.locator("#items li")).to_have_count(0)
    tickets = add_item(page, "Book the train tickets")
    add_item(page, "Pack the tent", enter=True)
    add_item(page, "Charge the camera")
    page.click(f"#toggle-{tickets}")
    expect(page.locator(f"#title-{tickets}")).to_have_class(DONE)
    screenshot(page, "jinja_todos")
    assert page_errors(page) == []
