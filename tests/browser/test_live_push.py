"""Live push in a real browser: changes reach every open page without a reload.

Each example (global_board, todos, chat, ticker, counter) is served once per
protocol for the module (started on first use); every test opens fresh
browser contexts, i.e. fresh faststate sessions, and checks that what one
page (or the server itself, for the ticker) changes shows up in the other
pages through their ``live(request)`` stream (``data-init`` + ``@get`` in v1,
``data-on-load`` in beta).

GLOBAL instances are shared by every test of a module that uses the same
server, so the tests compare against the values they read first instead of
assuming a fresh state.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest

PUSH_TIMEOUT_MS = 5_000  # a push arrives within milliseconds; allow for a slow machine

pytestmark = pytest.mark.parametrize("protocol", ["v1", "beta"])


@pytest.fixture(scope="module")
def site(example_site) -> Callable[..., str]:
    """``site(example, protocol) -> base_url``: one server per example and protocol."""
    sites: dict[str, Callable[[str], str]] = {}

    def base_url(example: str, protocol: str) -> str:
        if example not in sites:
            options = {"interval": 0.2} if example == "ticker" else {}
            sites[example] = example_site(example, **options)
        return sites[example](protocol)

    return base_url


@pytest.fixture
def open_page(site, new_context, page_errors) -> Callable[..., Any]:
    """``open_page(example, protocol, path="/", context=None) -> page`` (a new context
    unless one is given); waits until the page's live stream is open."""

    def _open(example: str, protocol: str, path: str = "/", context: Any = None) -> Any:
        context = context or new_context(protocol)
        page = context.new_page()
        page_errors(page)
        with page.expect_response(lambda r: "/_faststate/live" in r.url):
            page.goto(site(example, protocol) + path)
        page.evaluate("window.__notReloaded = true")  # see no_errors()
        return page

    return _open


def as_int(locator: Any) -> int:
    return int((locator.text_content() or "").strip())


def no_errors(page_errors, *pages: Any) -> None:
    """No console error on any page, and none of them was reloaded."""
    for page in pages:
        page.wait_for_timeout(50)  # let Playwright deliver pending console events
        assert page_errors(page) == [], page.url
        assert page.evaluate("window.__notReloaded === true"), f"{page.url} was reloaded"


# --------------------------------------------------------------------------- #
# 1. global board: a vote in one session shows in another
# --------------------------------------------------------------------------- #


def test_board_vote_reaches_other_session(protocol: str, open_page, page_errors) -> None:
    from playwright.sync_api import expect

    a = open_page("global_board", protocol)
    b = open_page("global_board", protocol)
    expect(a.locator("#total")).not_to_have_text("")
    tea, total = as_int(a.locator("#votes-tea")), as_int(a.locator("#total"))
    coffee = as_int(a.locator("#votes-coffee"))
    expect(b.locator("#votes-tea")).to_have_text(str(tea))
    expect(b.locator("#total")).to_have_text(str(total))

    a.click("#vote-tea")
    expect(a.locator("#votes-tea")).to_have_text(str(tea + 1))
    expect(b.locator("#votes-tea")).to_have_text(str(tea + 1), timeout=PUSH_TIMEOUT_MS)
    expect(b.locator("#total")).to_have_text(str(total + 1), timeout=PUSH_TIMEOUT_MS)

    # and back the other way, twice in a row
    b.click("#vote-coffee")
    b.click("#vote-coffee")
    expect(a.locator("#votes-coffee")).to_have_text(str(coffee + 2), timeout=PUSH_TIMEOUT_MS)
    expect(a.locator("#total")).to_have_text(str(total + 3), timeout=PUSH_TIMEOUT_MS)
    expect(b.locator("#total")).to_have_text(str(total + 3))
    expect(a.locator("#votes-tea")).to_have_text(str(tea + 1))
    no_errors(page_errors, a, b)


# --------------------------------------------------------------------------- #
# 2. todos: broadcast elements (RECORD scope)
# --------------------------------------------------------------------------- #


def test_todos_items_pushed_to_other_page(protocol: str, open_page, page_errors) -> None:
    from playwright.sync_api import expect

    path = f"/lists/live-{uuid.uuid4().hex[:10]}"
    a = open_page("todos", protocol, path)
    b = open_page("todos", protocol, path)
    expect(a.locator("#items li")).to_have_count(0)
    expect(b.locator("#items li")).to_have_count(0)

    a.fill("#new-title", "buy milk")
    a.click("#add")
    expect(a.locator("#items li")).to_have_count(1)
    expect(b.locator("#items li")).to_have_count(1, timeout=PUSH_TIMEOUT_MS)
    item = b.locator("#items li").first
    expect(item).to_contain_text("buy milk")
    item_id = (item.get_attribute("id") or "").removeprefix("item-")
    assert item_id, "the pushed li carries its item id"

    # toggling in B (on the element B received by push) updates A
    b.click(f"#toggle-{item_id}")
    expect(b.locator(f"#toggle-{item_id}")).to_have_text("undo")
    expect(a.locator(f"#toggle-{item_id}")).to_have_text("undo", timeout=PUSH_TIMEOUT_MS)
    expect(a.locator(f"#title-{item_id}")).to_have_class("done")

    # a second item from B appears in A, in order, without duplicating the list
    b.fill("#new-title", "walk dog")
    b.click("#add")
    expect(a.locator("#items li")).to_have_count(2, timeout=PUSH_TIMEOUT_MS)
    expect(a.locator("#items li span")).to_have_text(["buy milk", "walk dog"])
    expect(a.locator("ul#items")).to_have_count(1)
    no_errors(page_errors, a, b)


def test_todos_other_list_is_not_pushed(protocol: str, open_page, page_errors) -> None:
    """A page on another list (another RECORD instance) gets nothing."""
    from playwright.sync_api import expect

    tag = uuid.uuid4().hex[:10]
    a = open_page("todos", protocol, f"/lists/live-{tag}-a")
    b = open_page("todos", protocol, f"/lists/live-{tag}-b")
    a.fill("#new-title", "only in a")
    a.click("#add")
    expect(a.locator("#items li")).to_have_count(1)
    b.wait_for_timeout(500)
    expect(b.locator("#items li")).to_have_count(0)
    no_errors(page_errors, a, b)


# --------------------------------------------------------------------------- #
# 3. chat: broadcast messages and the count signal
# --------------------------------------------------------------------------- #


def test_chat_message_reaches_other_page(protocol: str, open_page, page_errors) -> None:
    from playwright.sync_api import expect

    a = open_page("chat", protocol)
    b = open_page("chat", protocol)
    expect(a.locator("#count")).not_to_have_text("")
    count = as_int(a.locator("#count"))
    expect(b.locator("#count")).to_have_text(str(count))

    text = f"hello {uuid.uuid4().hex[:8]}"
    a.fill("#name", "alice")
    a.fill("#message", text)
    a.click("#send")
    expect(a.locator("#count")).to_have_text(str(count + 1))
    expect(b.locator("#count")).to_have_text(str(count + 1), timeout=PUSH_TIMEOUT_MS)
    last_b = b.locator("#ChatRoom-messages li").last
    expect(last_b).to_have_text(f"alice: {text}", timeout=PUSH_TIMEOUT_MS)
    expect(a.locator("#ChatRoom-messages li").last).to_have_text(f"alice: {text}")
    expect(a.locator("#message")).to_have_value("")

    reply = f"hi {uuid.uuid4().hex[:8]}"
    b.fill("#name", "bob")
    b.fill("#message", reply)
    b.click("#send")
    last_a = a.locator("#ChatRoom-messages li").last
    expect(last_a).to_have_text(f"bob: {reply}", timeout=PUSH_TIMEOUT_MS)
    expect(a.locator("#count")).to_have_text(str(count + 2), timeout=PUSH_TIMEOUT_MS)
    expect(b.locator("#count")).to_have_text(str(count + 2))
    expect(a.locator("ul#ChatRoom-messages")).to_have_count(1)
    no_errors(page_errors, a, b)


def test_chat_keeps_a_refused_message_and_says_why(protocol: str, open_page, page_errors) -> None:
    from playwright.sync_api import expect

    a = open_page("chat", protocol)
    b = open_page("chat", protocol)
    expect(a.locator("#count")).not_to_have_text("")
    count = as_int(a.locator("#count"))
    too_long = "x" * 501
    a.fill("#name", "alice")
    a.fill("#message", too_long)
    a.click("#send")
    expect(a.locator("#message-error")).to_have_text("String should have at most 500 characters")
    expect(a.locator("#message")).to_have_value(too_long)  # kept, to be shortened
    expect(a.locator("#name-error")).to_be_hidden()
    expect(a.locator("#count")).to_have_text(str(count))

    a.fill("#message", "short enough")
    a.click("#send")
    expect(a.locator("#count")).to_have_text(str(count + 1))
    expect(a.locator("#message")).to_have_value("")
    expect(a.locator("#message-error")).to_be_hidden()
    expect(b.locator("#count")).to_have_text(str(count + 1), timeout=PUSH_TIMEOUT_MS)
    expect(b.locator("#message-error")).to_be_hidden()  # another page's errors are its own
    no_errors(page_errors, a, b)


# --------------------------------------------------------------------------- #
# 4. ticker: a background task (mutate) drives every page
# --------------------------------------------------------------------------- #


def test_ticker_ticks_and_pauses_across_pages(protocol: str, open_page, page_errors) -> None:
    from playwright.sync_api import expect

    a = open_page("ticker", protocol)
    b = open_page("ticker", protocol)
    running = a.locator("#running")
    expect(running).to_have_text(re.compile(r"^(true|false)$"))
    if running.text_content() == "false":  # left paused by an earlier run: resume first
        a.click("#toggle")
        expect(running).to_have_text("true")
        expect(b.locator("#running")).to_have_text("true", timeout=PUSH_TIMEOUT_MS)

    # ticks increase by themselves on both open pages (interval 0.2 s)
    start = as_int(a.locator("#ticks"))
    expect(a.locator("#ticks")).not_to_have_text(str(start), timeout=PUSH_TIMEOUT_MS)
    a.wait_for_function(
        "n => Number(document.querySelector('#ticks').textContent) >= n + 3", arg=start
    )
    b_start = as_int(b.locator("#ticks"))
    b.wait_for_function(
        "n => Number(document.querySelector('#ticks').textContent) >= n + 3", arg=b_start
    )

    # pausing in A stops the ticks in B
    a.click("#toggle")
    expect(a.locator("#running")).to_have_text("false")
    expect(b.locator("#running")).to_have_text("false", timeout=PUSH_TIMEOUT_MS)
    b.wait_for_timeout(400)  # a tick already under way may still land
    paused_b, paused_a = as_int(b.locator("#ticks")), as_int(a.locator("#ticks"))
    b.wait_for_timeout(1_000)  # five intervals
    assert as_int(b.locator("#ticks")) == paused_b
    assert as_int(a.locator("#ticks")) == paused_a
    assert paused_a == paused_b

    # resuming in B restarts them in A
    b.click("#toggle")
    expect(b.locator("#running")).to_have_text("true")
    expect(a.locator("#running")).to_have_text("true", timeout=PUSH_TIMEOUT_MS)
    a.wait_for_function(
        "n => Number(document.querySelector('#ticks').textContent) >= n + 2", arg=paused_a
    )
    no_errors(page_errors, a, b)


# --------------------------------------------------------------------------- #
# 5. counter: two tabs of one session
# --------------------------------------------------------------------------- #


def test_counter_two_tabs_same_session(protocol: str, open_page, new_context, page_errors) -> None:
    from playwright.sync_api import expect

    context = new_context(protocol)
    tab1 = open_page("counter", protocol, context=context)
    tab2 = open_page("counter", protocol, context=context)
    expect(tab1.locator("#count")).to_have_text("0")
    expect(tab2.locator("#count")).to_have_text("0")

    tab1.click("#inc")
    expect(tab1.locator("#count")).to_have_text("1")
    expect(tab2.locator("#count")).to_have_text("1", timeout=PUSH_TIMEOUT_MS)
    tab2.click("#inc5")
    expect(tab2.locator("#count")).to_have_text("6")
    expect(tab1.locator("#count")).to_have_text("6", timeout=PUSH_TIMEOUT_MS)
    tab1.click("#reset")
    expect(tab2.locator("#count")).to_have_text("0", timeout=PUSH_TIMEOUT_MS)

    # another session's counter is a different instance and is not pushed
    other = open_page("counter", protocol)
    expect(other.locator("#count")).to_have_text("0")
    tab1.click("#inc")
    expect(tab2.locator("#count")).to_have_text("1", timeout=PUSH_TIMEOUT_MS)
    other.wait_for_timeout(500)
    expect(other.locator("#count")).to_have_text("0")
    no_errors(page_errors, tab1, tab2, other)
