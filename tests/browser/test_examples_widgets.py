"""Browser tests of examples/widgets.py (COMPONENT scope: three steppers per session)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

NAMES = ("apples", "pears", "plums")

pytestmark = pytest.mark.parametrize("protocol", ["v1", "beta"])


@pytest.fixture(scope="module")
def site(example_site) -> Callable[[str], str]:
    """``site(protocol) -> base_url``: one server per protocol, started on first use."""
    return example_site("widgets")


def expect_steppers(page: Any, **expected: tuple[int, int]) -> None:
    """``expect_steppers(page, apples=(value, step), ...)``."""
    from playwright.sync_api import expect

    for name in NAMES:
        value, step = expected[name]
        expect(page.locator(f"#{name}-value")).to_have_text(str(value))
        expect(page.locator(f"#{name}-step")).to_have_text(str(step))


def use_the_steppers(page: Any) -> None:
    """apples 0 → 2, pears step 10 → 10, plums 0 → -1."""
    from playwright.sync_api import expect

    page.click("#apples-up")
    expect(page.locator("#apples-value")).to_have_text("1")
    page.click("#apples-up")
    expect(page.locator("#apples-value")).to_have_text("2")
    page.click("#pears-step10")
    expect(page.locator("#pears-step")).to_have_text("10")
    page.click("#pears-up")
    expect(page.locator("#pears-value")).to_have_text("10")
    page.click("#plums-down")
    expect(page.locator("#plums-value")).to_have_text("-1")


def test_each_stepper_keeps_its_own_value(protocol: str, site, new_context, page_errors) -> None:
    page = new_context(protocol).new_page()
    page.goto(site(protocol) + "/")
    expect_steppers(page, apples=(0, 1), pears=(0, 1), plums=(0, 1))
    use_the_steppers(page)
    expect_steppers(page, apples=(2, 1), pears=(10, 10), plums=(-1, 1))
    page.click("#apples-down")
    expect_steppers(page, apples=(1, 1), pears=(10, 10), plums=(-1, 1))
    assert page_errors(page) == []


def test_reload_keeps_the_steppers(protocol: str, site, new_context, page_errors) -> None:
    page = new_context(protocol).new_page()
    page.goto(site(protocol) + "/")
    expect_steppers(page, apples=(0, 1), pears=(0, 1), plums=(0, 1))
    use_the_steppers(page)
    page.reload()
    expect_steppers(page, apples=(2, 1), pears=(10, 10), plums=(-1, 1))
    page.click("#pears-down")
    expect_steppers(page, apples=(2, 1), pears=(0, 10), plums=(-1, 1))
    assert page_errors(page) == []


def test_another_session_has_its_own_steppers(
    protocol: str, site, new_context, page_errors
) -> None:
    from playwright.sync_api import expect

    base = site(protocol)
    first = new_context(protocol).new_page()
    first.goto(base + "/")
    expect_steppers(first, apples=(0, 1), pears=(0, 1), plums=(0, 1))
    use_the_steppers(first)

    second = new_context(protocol).new_page()
    second.goto(base + "/")
    expect_steppers(second, apples=(0, 1), pears=(0, 1), plums=(0, 1))
    second.click("#plums-up")
    expect(second.locator("#plums-value")).to_have_text("1")

    first.reload()
    expect_steppers(first, apples=(2, 1), pears=(10, 10), plums=(-1, 1))
    second.reload()
    expect_steppers(second, apples=(0, 1), pears=(0, 1), plums=(1, 1))
    assert page_errors(first) == []
    assert page_errors(second) == []


def test_docs_screenshot(  # type: ignore[no-untyped-def]
    protocol: str, site, new_context, page_errors, screenshot
) -> None:
    """docs/screenshots/widgets.png: three steppers, each at its own value and step."""
    page = new_context(protocol).new_page()
    page.goto(site(protocol) + "/")
    use_the_steppers(page)
    expect_steppers(page, apples=(2, 1), pears=(10, 10), plums=(-1, 1))
    screenshot(page, "widgets")
    assert page_errors(page) == []
