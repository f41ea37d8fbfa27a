"""Browser tests of examples/shop.py: a cart and a shared stock change together in
one event; every shopper sees the stock and who else is looking."""

from __future__ import annotations

from collections.abc import Callable

import pytest

pytestmark = pytest.mark.parametrize("protocol", ["v1", "beta"])


@pytest.fixture(scope="module")
def site(example_site) -> Callable[[str], str]:  # type: ignore[no-untyped-def]
    return example_site("shop")


def test_two_shoppers_share_the_stock_and_see_each_other(  # type: ignore[no-untyped-def]
    protocol: str, site, new_context, page_errors
) -> None:
    from playwright.sync_api import expect

    # Each protocol's server is its own shop, with its own stock.
    url = f"{site(protocol)}/products/pot"
    ada, bob = new_context(protocol).new_page(), new_context(protocol).new_page()
    ada.goto(url)
    expect(ada.locator("#stock")).to_have_text("5")
    expect(ada.locator("#viewers")).to_have_text("1")
    bob.goto(url)
    expect(bob.locator("#viewers")).to_have_text("2")
    expect(ada.locator("#viewers")).to_have_text("2")  # Ada sees Bob arrive

    # One event changes Ada's cart and the shared stock; Bob sees the stock go.
    ada.click("#add")
    expect(ada.locator("#cart-count")).to_have_text("1")
    expect(ada.locator("#stock")).to_have_text("4")
    expect(bob.locator("#stock")).to_have_text("4")
    expect(bob.locator("#cart-count")).to_have_text("0")  # his cart is his own

    for left in ("3", "2", "1", "0"):
        bob.click("#add")
        expect(ada.locator("#stock")).to_have_text(left)
    expect(bob.locator("#cart-count")).to_have_text("4")

    # Sold out: refused on the page, nothing changes anywhere.
    ada.click("#add")
    expect(ada.locator("#cart-error")).to_have_text("Sorry, that one has just sold out.")
    expect(ada.locator("#cart-count")).to_have_text("1")
    expect(bob.locator("#stock")).to_have_text("0")

    # Giving one back returns it to the stock for everyone, and clears the message.
    bob.click("#remove-pot")
    expect(bob.locator("#cart-count")).to_have_text("3")
    expect(ada.locator("#stock")).to_have_text("1")
    ada.click("#add")
    expect(ada.locator("#cart-count")).to_have_text("2")
    expect(ada.locator("#cart-error")).to_be_hidden()
    expect(bob.locator("#stock")).to_have_text("0")

    bob.close()
    expect(ada.locator("#viewers")).to_have_text("1", timeout=40_000)
    assert page_errors(ada) == []
    ada.close()


def test_docs_screenshot(  # type: ignore[no-untyped-def]
    protocol: str, example_site, new_context, page_errors, screenshot
) -> None:
    """docs/screenshots/shop.png: a product page with a filled cart and two people looking
    (a shop of its own, so that the stock starts full)."""
    from playwright.sync_api import expect

    base = example_site("shop")(protocol)
    ada = new_context(protocol).new_page()
    ada.goto(f"{base}/products/mug")
    ada.click("#add")
    expect(ada.locator("#cart-count")).to_have_text("1")
    ada.goto(f"{base}/products/tea")
    ada.click("#add")
    expect(ada.locator("#cart-count")).to_have_text("2")
    ada.click("#add")
    expect(ada.locator("#cart-count")).to_have_text("3")
    expect(ada.locator("#stock")).to_have_text("3")
    bob = new_context(protocol).new_page()
    bob.goto(f"{base}/products/tea")
    expect(ada.locator("#viewers")).to_have_text("2")
    screenshot(ada, "shop")
    assert page_errors(ada) == []
    assert page_errors(bob) == []
