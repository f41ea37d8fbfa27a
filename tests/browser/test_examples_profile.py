"""Browser tests of examples/profile.py (USER scope, login through FastHTML beforeware).

USER state is shared by every session of one user on the module's server, so
each test logs in with its own user names (bob only where defaults are expected).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.parametrize("protocol", ["v1", "beta"])


@pytest.fixture(scope="module")
def site(example_site) -> Callable[[str], str]:
    """``site(protocol) -> base_url``: one server per protocol, started on first use."""
    return example_site("profile")


def log_in(context: Any, base: str, username: str) -> Any:
    """Open ``/`` in ``context``, get sent to the login form, log in; return the page."""
    from playwright.sync_api import expect

    page = context.new_page()
    page.goto(base + "/")
    expect(page).to_have_url(base + "/login")
    page.fill("#username", username)
    page.click("#login")
    expect(page).to_have_url(base + "/")
    expect(page.locator("#user")).to_have_text(username)
    return page


def test_home_redirects_to_login(protocol: str, site, new_context, page_errors) -> None:
    from playwright.sync_api import expect

    base = site(protocol)
    page = new_context(protocol).new_page()
    response = page.goto(base + "/")
    assert response is not None and response.ok
    expect(page).to_have_url(base + "/login")
    expect(page.locator("#username")).to_be_visible()
    expect(page.locator("#likes")).to_have_count(0)
    assert page_errors(page) == []


def test_like_and_rename(protocol: str, site, new_context, page_errors) -> None:
    from playwright.sync_api import expect

    page = log_in(new_context(protocol), site(protocol), "carol")
    likes, name = page.locator("#likes"), page.locator("#display-name")
    expect(likes).to_have_text("0")
    expect(name).to_have_text("anonymous")

    page.click("#like")
    expect(likes).to_have_text("1")
    page.click("#like")
    expect(likes).to_have_text("2")

    page.fill("#new-name", "Carol C.")
    page.click("#rename")
    expect(name).to_have_text("Carol C.")
    page.fill("#new-name", "  Caz  ")
    page.click("#rename")
    expect(name).to_have_text("Caz")  # stripped by the DisplayName constraint

    page.reload()
    expect(likes).to_have_text("2")
    expect(name).to_have_text("Caz")
    assert page_errors(page) == []


def test_same_user_shares_the_profile(protocol: str, site, new_context, page_errors) -> None:
    from playwright.sync_api import expect

    base = site(protocol)
    first = log_in(new_context(protocol), base, "ada")
    expect(first.locator("#likes")).to_have_text("0")
    first.click("#like")
    expect(first.locator("#likes")).to_have_text("1")
    first.fill("#new-name", "Ada Lovelace")
    first.click("#rename")
    expect(first.locator("#display-name")).to_have_text("Ada Lovelace")

    # same user, another browser (another session): same profile
    second = log_in(new_context(protocol), base, "ada")
    expect(second.locator("#likes")).to_have_text("1")
    expect(second.locator("#display-name")).to_have_text("Ada Lovelace")
    second.click("#like")
    expect(second.locator("#likes")).to_have_text("2")

    # another user: defaults
    third = log_in(new_context(protocol), base, "bob")
    expect(third.locator("#likes")).to_have_text("0")
    expect(third.locator("#display-name")).to_have_text("anonymous")
    third.click("#like")
    expect(third.locator("#likes")).to_have_text("1")

    first.reload()
    expect(first.locator("#likes")).to_have_text("2")
    expect(first.locator("#display-name")).to_have_text("Ada Lovelace")
    for page in (first, second, third):
        assert page_errors(page) == []


def test_whitespace_rename_is_refused(protocol: str, site, new_context, page_errors) -> None:
    from playwright.sync_api import expect

    page = log_in(new_context(protocol), site(protocol), "dora")
    name = page.locator("#display-name")
    page.fill("#new-name", "Dora")
    page.click("#rename")
    expect(name).to_have_text("Dora")

    page.fill("#new-name", "   ")
    page.click("#rename")
    expect(page.locator("#name-error")).to_have_text("String should have at least 1 character")
    expect(page.locator("#new-name")).to_have_value("   ")  # kept, to be fixed
    expect(name).to_have_text("Dora")
    page.fill("#new-name", "Dot")
    page.click("#rename")
    expect(name).to_have_text("Dot")
    expect(page.locator("#name-error")).to_be_hidden()
    expect(page.locator("#new-name")).to_have_value("")  # accepted: emptied
    page.reload()
    expect(name).to_have_text("Dot")
    assert page_errors(page) == []


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


def test_avatar_upload(protocol: str, site, new_context, page_errors) -> None:
    """A form posts the file; oversize and wrong type are refused on the page."""
    from playwright.sync_api import expect

    page = log_in(new_context(protocol), site(protocol), f"eve_{protocol}")
    avatar, refusal = page.locator("#avatar"), page.locator("#avatar-error")
    expect(refusal).to_be_hidden()

    page.set_input_files("#avatar-file", files=[_file("big.png", "image/png", 2**20 + 1)])
    page.click("#upload")
    expect(refusal).to_have_text("The file is larger than 1 MiB.")
    expect(avatar).to_have_text("")

    page.set_input_files("#avatar-file", files=[_file("notes.txt", "text/plain", 10)])
    page.click("#upload")
    expect(refusal).to_have_text("Only image/png, image/jpeg, image/webp files are accepted.")
    expect(avatar).to_have_text("")

    page.set_input_files(
        "#avatar-file", files=[{"name": "me.png", "mimeType": "image/png", "buffer": PNG}]
    )
    page.click("#upload")
    expect(avatar).to_have_text(f"me.png, {len(PNG)} bytes")
    expect(refusal).to_be_hidden()  # the accepted upload cleared it
    expect(page).to_have_url(site(protocol) + "/")  # no native form submission

    page.reload()
    expect(page.locator("#avatar")).to_have_text(f"me.png, {len(PNG)} bytes")
    assert page_errors(page) == []


def _file(name: str, mime: str, size: int) -> dict[str, Any]:
    return {"name": name, "mimeType": mime, "buffer": b"\0" * size}


def test_docs_screenshot(protocol: str, site, new_context, page_errors, screenshot) -> None:
    """docs/screenshots/profile.png: a renamed, liked profile with its avatar uploaded."""
    from playwright.sync_api import expect

    page = log_in(new_context(protocol), site(protocol), "grace")  # a user of its own
    page.fill("#new-name", "Grace Hopper")
    page.click("#rename")
    expect(page.locator("#display-name")).to_have_text("Grace Hopper")
    for likes in ("1", "2", "3"):
        page.click("#like")
        expect(page.locator("#likes")).to_have_text(likes)
    page.set_input_files(
        "#avatar-file", files=[{"name": "grace.png", "mimeType": "image/png", "buffer": PNG}]
    )
    page.click("#upload")
    expect(page.locator("#avatar")).to_have_text(f"grace.png, {len(PNG)} bytes")
    screenshot(page, "profile")
    assert page_errors(page) == []
