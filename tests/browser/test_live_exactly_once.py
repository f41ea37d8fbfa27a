"""Broadcast elements in the real clients, under both protocols: the tab that fired
an event shows its appended element once, and every other tab gets every one,
also after events that changed nothing or answered only their caller."""

from __future__ import annotations

from typing import Any

import pytest
from fasthtml.common import Button, Div, FastHTML, Li, P, Span, Titled, Ul

from faststate import (
    FastStateMiddleware,
    ReactiveState,
    StateScope,
    event,
    live,
    on,
    register_state,
    text,
    use_state,
)
from faststate.fasthtml import datastar_script

pytestmark = pytest.mark.parametrize("protocol", ["v1", "beta"])


class Wall(ReactiveState):
    count: int = 0

    @event(broadcast=True, selector="#posts", mode="append")
    def post(self) -> Any:
        self.count += 1
        return Li(f"post {self.count}", cls="post")

    @event(selector="#mine", mode="inner")
    def peek(self) -> Any:
        return Span(f"you peeked at {self.count}")

    @event
    def nothing(self) -> None:
        pass


def make_app(protocol: str) -> FastHTML:
    app = FastHTML(hdrs=(datastar_script(protocol=protocol),), htmx=False, surreal=False)
    app.add_middleware(FastStateMiddleware, protocol=protocol, secret_key="browser-once")
    register_state(app, Wall, scope=StateScope.RECORD)

    @app.route("/walls/{id}")
    def page(req, id: str):  # type: ignore[no-untyped-def]
        wall = use_state(req, Wall)
        return Titled(
            f"Wall {id}",
            wall,
            P("posts: ", Span(**text(wall, "count"), id="count")),
            Ul(*(Li(f"post {n}", cls="post") for n in range(1, wall.count + 1)), id="posts"),
            P(id="mine"),
            Button("post", **on("click", wall.post), id="post"),
            Button("peek", **on("click", wall.peek), id="peek"),
            Button("nothing", **on("click", wall.nothing), id="nothing"),
            Div(**live(req), id="live"),
        )

    return app


def test_each_post_shows_once_on_every_tab(  # type: ignore[no-untyped-def]
    protocol: str, site, new_context, page_errors
) -> None:
    import uuid

    from playwright.sync_api import expect

    url = f"{site(protocol)}/walls/w{uuid.uuid4().hex[:8]}"
    mine, theirs = new_context(protocol).new_page(), new_context(protocol).new_page()
    for page in (mine, theirs):
        page.goto(url)
        expect(page.locator("#count")).to_have_text("0")
    theirs.wait_for_timeout(300)  # its stream is open

    mine.click("#post")
    expect(theirs.locator("#posts .post")).to_have_text(["post 1"])
    mine.wait_for_timeout(500)  # a second copy from its own stream would be here by now
    expect(mine.locator("#posts .post")).to_have_text(["post 1"])

    # Changes nobody else sees: a 204, and an answer for the caller alone.
    mine.click("#nothing")
    mine.click("#peek")
    expect(mine.locator("#mine")).to_have_text("you peeked at 1")
    mine.click("#post")
    expect(theirs.locator("#posts .post")).to_have_text(["post 1", "post 2"])
    expect(theirs.locator("#count")).to_have_text("2")

    theirs.click("#post")
    expect(mine.locator("#posts .post")).to_have_text(["post 1", "post 2", "post 3"])
    theirs.wait_for_timeout(500)
    expect(theirs.locator("#posts .post")).to_have_text(["post 1", "post 2", "post 3"])
    expect(mine.locator("#mine")).to_have_text("you peeked at 1")  # never anyone else's
    for page in (mine, theirs):
        assert page_errors(page) == []
        page.close()
