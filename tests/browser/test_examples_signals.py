"""Browser tests of two contract points on small dedicated apps, under both protocols.

- Server-only data (``Field(exclude=True)``, ``PrivateAttr``) reaches neither the
  page nor any response the browser receives, before or after events.
- A field set to ``None`` shows as empty text and a later value comes back
  (faststate sends ``None`` as ``""``: Datastar v1 would delete a null signal and
  leave the bound element stale).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from fasthtml.common import Button, Div, FastHTML, P, Span, Titled
from pydantic import PrivateAttr
from sqlmodel import Field

from faststate import (
    FastStateMiddleware,
    ReactiveState,
    StateScope,
    event,
    on,
    register_state,
    text,
    use_state,
)
from faststate.fasthtml import datastar_script

pytestmark = pytest.mark.parametrize("protocol", ["v1", "beta"])

SECRETS = ("TOPSECRET-FIELD", "TOPSECRET-PRIVATE", "TOPSECRET")


# --------------------------------------------------------------------------- #
# the apps
# --------------------------------------------------------------------------- #


class Vault(ReactiveState):
    opened: int = 0
    secret: str = Field(default="TOPSECRET-FIELD", exclude=True)
    _token: str = PrivateAttr(default="TOPSECRET-PRIVATE")

    @event
    def open(self) -> None:
        """Changes the public field and both server-only values (signal patch)."""
        self.opened += 1
        self.secret = f"TOPSECRET-FIELD-{self.opened}"
        self._token = f"TOPSECRET-PRIVATE-{self.opened}"

    @event
    def open_and_render(self) -> Any:
        """The same, answered with elements rendering the instance (``__ft__``)."""
        self.opened += 1
        self.secret = f"TOPSECRET-FIELD-{self.opened}"
        self._token = f"TOPSECRET-PRIVATE-{self.opened}"
        return vault_box(self)


def vault_box(vault: Vault) -> Any:
    return Div(vault, P("rendered ", Span(str(vault.opened), id="rendered")), id="vault-box")


class Nick(ReactiveState):
    nickname: str | None = "ada"

    @event
    def clear(self) -> None:
        self.nickname = None

    @event
    def set(self, nickname: str) -> None:
        self.nickname = nickname


def make_app(protocol: str) -> FastHTML:
    app = FastHTML(
        hdrs=(datastar_script(protocol=protocol),), htmx=False, surreal=False, secret_key="x"
    )
    app.add_middleware(FastStateMiddleware, protocol=protocol)
    register_state(app, Vault, scope=StateScope.SESSION)
    register_state(app, Nick, scope=StateScope.SESSION)

    @app.route("/vault")
    def vault_page(req):  # type: ignore[no-untyped-def]
        vault = use_state(req, Vault)
        return Titled(
            "Vault",
            vault,
            P("opened ", Span(**text(vault, "opened"), id="opened")),
            Button("open", **on("click", vault.open), id="open"),
            Button("open and render", **on("click", vault.open_and_render), id="open-render"),
            vault_box(vault),
        )

    @app.route("/nick")
    def nick_page(req):  # type: ignore[no-untyped-def]
        nick = use_state(req, Nick)
        return Titled(
            "Nick",
            nick,
            P("nickname: [", Span(**text(nick, "nickname"), id="nick"), "]"),
            P("instance ", Span(**text(nick, "id"), id="nick-id")),
            Button("clear", **on("click", nick.clear), id="clear"),
            Button("grace", **on("click", nick.set, nickname="grace"), id="set-grace"),
            Button("bob", **on("click", nick.set, nickname="bob"), id="set-bob"),
        )

    return app



@pytest.fixture(scope="module", autouse=True)
def _secret_key():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FASTSTATE_SECRET_KEY", "browser-examples-signals")
        yield


# --------------------------------------------------------------------------- #
# server-only data
# --------------------------------------------------------------------------- #


class ResponseBodies:
    """Every same-origin response a context receives, bodies read on ``read()``.

    Bodies are read right after each step: a document's body is gone once the
    page navigates away.
    """

    def __init__(self, context: Any, base: str) -> None:
        self.origin = urlsplit(base).netloc
        self.pending: list[Any] = []
        self.bodies: dict[str, list[str]] = {}
        context.on("response", self._on_response)

    def _on_response(self, response: Any) -> None:
        if urlsplit(response.url).netloc == self.origin:
            self.pending.append(response)

    def read(self) -> dict[str, list[str]]:
        while self.pending:
            response = self.pending.pop(0)
            key = f"{response.request.method} {urlsplit(response.url).path} {response.status}"
            self.bodies.setdefault(key, []).append(response.text())
        return self.bodies


def assert_no_secret(where: str, content: str) -> None:
    leaked = [s for s in SECRETS if s in content]
    assert not leaked, f"{leaked} found in {where}:\n{content[:2000]}"


def test_server_only_data_never_reaches_the_browser(
    protocol: str, site, new_context, page_errors
) -> None:
    from playwright.sync_api import expect

    base = site(protocol)
    context = new_context(protocol)
    responses = ResponseBodies(context, base)
    page = context.new_page()
    page.goto(base + "/vault")
    opened = page.locator("#opened")
    expect(opened).to_have_text("0")
    assert_no_secret("the page", page.content())

    page.click("#open")
    expect(opened).to_have_text("1")
    page.click("#open")
    expect(opened).to_have_text("2")
    page.click("#open-render")
    expect(page.locator("#rendered")).to_have_text("3")
    expect(opened).to_have_text("3")
    assert_no_secret("the page after the events", page.content())
    for key, texts in responses.read().items():
        for body in texts:
            assert_no_secret(f"the response {key}", body)

    page.reload()
    expect(opened).to_have_text("3")
    assert_no_secret("the reloaded page", page.content())
    bodies = responses.read()
    for key, texts in bodies.items():
        for body in texts:
            assert_no_secret(f"the response {key}", body)

    # the collection did see the page and every event answer
    assert len(bodies["GET /vault 200"]) == 2
    assert len(bodies["POST /Vault/open 200"]) == 2
    assert len(bodies["POST /Vault/open_and_render 200"]) == 1
    assert any('"opened":2' in b.replace(" ", "") for b in bodies["POST /Vault/open 200"])
    assert page_errors(page) == []


# --------------------------------------------------------------------------- #
# None
# --------------------------------------------------------------------------- #


def test_none_shows_empty_and_a_later_value_comes_back(
    protocol: str, site, new_context, page_errors
) -> None:
    from playwright.sync_api import expect

    page = new_context(protocol).new_page()
    page.goto(site(protocol) + "/nick")
    nick = page.locator("#nick")
    expect(nick).to_have_text("ada")

    page.click("#clear")
    expect(nick).to_have_text("")
    page.click("#set-grace")
    expect(nick).to_have_text("grace")
    page.click("#clear")
    expect(nick).to_have_text("")
    page.click("#set-bob")
    expect(nick).to_have_text("bob")
    assert page_errors(page) == []


def test_none_after_reload(protocol: str, site, new_context, page_errors) -> None:
    """A page rendered while the field is None shows nothing, and values still arrive."""
    from playwright.sync_api import expect

    page = new_context(protocol).new_page()
    page.goto(site(protocol) + "/nick")
    nick = page.locator("#nick")
    expect(nick).to_have_text("ada")
    page.click("#clear")
    expect(nick).to_have_text("")

    page.reload()
    expect(page.locator("#nick-id")).to_have_text(re.compile(r"^[0-9a-f-]{36}$"))  # bound
    expect(nick).to_have_text("")
    page.click("#set-grace")
    expect(nick).to_have_text("grace")
    page.click("#clear")
    expect(nick).to_have_text("")
    assert page_errors(page) == []
