"""Browser tests of examples/global_board.py (GLOBAL scope: one poll for everyone)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

CHOICES = ("tea", "coffee", "water")

pytestmark = pytest.mark.parametrize("protocol", ["v1", "beta"])


@pytest.fixture(scope="module")
def site(example_site) -> Callable[[str], str]:
    """``site(protocol) -> base_url``: one server per protocol, started on first use."""
    return example_site("global_board")


def open_board(context: Any, base: str) -> tuple[Any, dict[str, int]]:
    """Open the board; return the page and the votes it shows (total checked)."""
    from playwright.sync_api import expect

    page = context.new_page()
    page.goto(base + "/")
    expect(page.locator("#total")).to_have_text(re.compile(r"^\d+$"))
    votes = {c: int(page.locator(f"#votes-{c}").inner_text()) for c in CHOICES}
    expect(page.locator("#total")).to_have_text(str(sum(votes.values())))
    return page, votes


def expect_board(page: Any, votes: dict[str, int]) -> None:
    from playwright.sync_api import expect

    for choice in CHOICES:
        expect(page.locator(f"#votes-{choice}")).to_have_text(str(votes[choice]))
    expect(page.locator("#total")).to_have_text(str(sum(votes.values())))


def test_votes_from_two_sessions_add_up(protocol: str, site, new_context, page_errors) -> None:
    base = site(protocol)
    alice, votes = open_board(new_context(protocol), base)

    alice.click("#vote-tea")
    votes["tea"] += 1
    expect_board(alice, votes)
    alice.click("#vote-coffee")
    votes["coffee"] += 1
    expect_board(alice, votes)

    bob, seen = open_board(new_context(protocol), base)
    assert seen == votes  # one poll for everyone
    bob.click("#vote-tea")
    votes["tea"] += 1
    expect_board(bob, votes)
    bob.click("#vote-water")
    votes["water"] += 1
    expect_board(bob, votes)

    alice.reload()
    expect_board(alice, votes)
    alice.click("#vote-water")
    votes["water"] += 1
    expect_board(alice, votes)  # the computed total follows
    bob.reload()
    expect_board(bob, votes)
    assert page_errors(alice) == []
    assert page_errors(bob) == []


def test_docs_screenshot(  # type: ignore[no-untyped-def]
    protocol: str, example_site, new_context, page_errors, screenshot
) -> None:
    """docs/screenshots/global_board.png: six votes from two visitors (a poll of its own,
    so that it starts at zero)."""
    base = example_site("global_board")(protocol)
    alice, votes = open_board(new_context(protocol), base)
    assert votes == {"tea": 0, "coffee": 0, "water": 0}
    bob, _ = open_board(new_context(protocol), base)
    for page, choice in [
        (alice, "tea"),
        (bob, "tea"),
        (alice, "coffee"),
        (bob, "tea"),
        (bob, "coffee"),
        (alice, "water"),
    ]:
        page.click(f"#vote-{choice}")
        votes[choice] += 1
        expect_board(page, votes)
    alice.reload()
    expect_board(alice, votes)
    screenshot(alice, "global_board")
    assert page_errors(alice) == []
    assert page_errors(bob) == []
