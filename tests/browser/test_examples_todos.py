"""Browser tests of examples/todos.py (RECORD scope: one list per /lists/{id}).

Every test uses its own list ids, so tests sharing the module's servers never
see each other's items.
"""

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
def site(example_site) -> Callable[[str], str]:
    """``site(protocol) -> base_url``: one server per protocol, started on first use."""
    return example_site("todos")


def new_list_id() -> str:
    return f"list{uuid.uuid4().hex[:10]}"


def open_list(context: Any, base: str, list_id: str) -> Any:
    from playwright.sync_api import expect

    page = context.new_page()
    page.goto(f"{base}/lists/{list_id}")
    expect(page.locator("h1")).to_have_text(f"Todo list: {list_id}")
    return page


def add_item(page: Any, title: str) -> str:
    """Type ``title``, click Add; wait for its ``li``; return the item id."""
    from playwright.sync_api import expect

    page.fill("#new-title", title)
    page.click("#add")
    li = page.locator("#items li", has_text=title)
    expect(li).to_have_count(1)
    match = ITEM_ID.match(li.get_attribute("id") or "")
    assert match, f"li without an item-<id> id: {li.evaluate('e => e.outerHTML')}"
    return match["id"]


def item_titles(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("#items li span").all_text_contents()]


def test_add_clears_the_input(protocol: str, site, new_context, page_errors) -> None:
    from playwright.sync_api import expect

    list_id = new_list_id()
    page = open_list(new_context(protocol), site(protocol), list_id)
    expect(page.locator("#items li")).to_have_count(0)

    with page.expect_response(lambda r: "/TodoList/add" in r.url) as info:
        item = add_item(page, "buy milk")
    expect(page.locator(f"#title-{item}")).to_have_text("buy milk")
    # the list came as an element patch, not by reloading the page
    response = info.value
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    body = response.text()
    patch_event = "datastar-patch-elements" if protocol == "v1" else "datastar-merge-fragments"
    assert f"event: {patch_event}" in body
    assert f'id="item-{item}"' in body
    assert page.url.endswith(f"/lists/{list_id}")
    expect(page.locator("#new-title")).to_have_value("")  # accepted: set_signals emptied it

    second = add_item(page, "walk the dog")
    assert second != item
    expect(page.locator("#items li span")).to_have_text(["buy milk", "walk the dog"])
    expect(page.locator("#new-title")).to_have_value("")
    expect(page.locator("ul#items")).to_have_count(1)
    assert page_errors(page) == []


def test_toggle_and_delete(protocol: str, site, new_context, page_errors) -> None:
    from playwright.sync_api import expect

    list_id = new_list_id()
    page = open_list(new_context(protocol), site(protocol), list_id)
    milk = add_item(page, "milk")
    eggs = add_item(page, "eggs")

    title, toggle = page.locator(f"#title-{milk}"), page.locator(f"#toggle-{milk}")
    expect(title).not_to_have_class(DONE)
    expect(toggle).to_have_text("done")
    toggle.click()
    expect(title).to_have_class(DONE)
    expect(toggle).to_have_text("undo")
    expect(page.locator(f"#title-{eggs}")).not_to_have_class(DONE)

    page.reload()  # the record keeps it
    expect(title).to_have_class(DONE)
    expect(toggle).to_have_text("undo")

    toggle.click()
    expect(title).not_to_have_class(DONE)
    expect(toggle).to_have_text("done")

    page.click(f"#remove-{milk}")
    expect(page.locator(f"#item-{milk}")).to_have_count(0)
    expect(page.locator("#items li span")).to_have_text(["eggs"])
    page.reload()
    expect(page.locator("#items li span")).to_have_text(["eggs"])
    assert page_errors(page) == []


def test_lists_are_independent(protocol: str, site, new_context, page_errors) -> None:
    from playwright.sync_api import expect

    base = site(protocol)
    context = new_context(protocol)
    first_id, other_id = new_list_id(), new_list_id()
    first = open_list(context, base, first_id)
    add_item(first, "first only")

    other = open_list(context, base, other_id)
    expect(other.locator("#items li")).to_have_count(0)
    add_item(other, "other only")
    expect(other.locator("#items li span")).to_have_text(["other only"])

    first.reload()
    expect(first.locator("#items li span")).to_have_text(["first only"])
    other.reload()
    expect(other.locator("#items li span")).to_have_text(["other only"])
    assert page_errors(first) == []
    assert page_errors(other) == []


def test_the_literal_other_list_is_independent(
    protocol: str, site, new_context, page_errors
) -> None:
    """``/lists/other`` (the issue's example) does not share items with another list."""
    from playwright.sync_api import expect

    base = site(protocol)
    context = new_context(protocol)
    mine = open_list(context, base, new_list_id())
    add_item(mine, "mine")
    other = open_list(context, base, "other")
    expect(other.locator("#items li", has_text="mine")).to_have_count(0)
    title = f"other {uuid.uuid4().hex[:6]}"
    add_item(other, title)
    mine.reload()
    expect(mine.locator("#items li span")).to_have_text(["mine"])
    assert page_errors(mine) == []
    assert page_errors(other) == []


def test_two_sessions_share_a_list(protocol: str, site, new_context, page_errors) -> None:
    from playwright.sync_api import expect

    base, list_id = site(protocol), new_list_id()
    alice = open_list(new_context(protocol), base, list_id)
    add_item(alice, "from alice")

    bob = open_list(new_context(protocol), base, list_id)
    expect(bob.locator("#items li span")).to_have_text(["from alice"])
    add_item(bob, "from bob")
    expect(bob.locator("#items li span")).to_have_text(["from alice", "from bob"])

    alice.reload()
    expect(alice.locator("#items li span")).to_have_text(["from alice", "from bob"])
    assert page_errors(alice) == []
    assert page_errors(bob) == []


@pytest.mark.parametrize("title", ["", "   "])
def test_blank_title_is_refused(protocol: str, title: str, site, new_context, page_errors) -> None:
    from playwright.sync_api import expect

    page = open_list(new_context(protocol), site(protocol), new_list_id())
    add_item(page, "keep me")
    before = page.locator("#items").inner_html()

    page.fill("#new-title", title)
    page.click("#add")
    expect(page.locator("#title-error")).to_have_text("String should have at least 1 character")
    expect(page.locator("#new-title")).to_have_value(title)  # kept, to be fixed
    assert page.locator("#items").inner_html() == before
    expect(page.locator("#items li span")).to_have_text(["keep me"])

    add_item(page, "then this")
    expect(page.locator("#title-error")).to_be_hidden()
    page.reload()
    expect(page.locator("#items li span")).to_have_text(["keep me", "then this"])
    assert page_errors(page) == []


def test_docs_screenshot(protocol: str, site, new_context, page_errors, screenshot) -> None:
    """docs/screenshots/todos.png: a list with one finished item and two open ones."""
    from playwright.sync_api import expect

    page = open_list(new_context(protocol), site(protocol), "groceries")
    bread = add_item(page, "Bake bread")
    add_item(page, "Buy oat milk")
    add_item(page, "Water the plants")
    page.click(f"#toggle-{bread}")
    expect(page.locator(f"#title-{bread}")).to_have_class(DONE)
    assert (
        page.locator(f"#title-{bread}").evaluate("e => getComputedStyle(e).textDecorationLine")
        == "line-through"
    )
    screenshot(page, "todos")
    assert page_errors(page) == []
