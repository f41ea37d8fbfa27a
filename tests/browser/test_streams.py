"""A Stream field in the real clients, under both protocols: append, prepend, update,
delete, the limit and reset show in the tab that fired them (once) and in another
tab of another session through its live stream; a reload renders what the server
keeps."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fasthtml.common import Button, Div, FastHTML, Li, P, Span, Titled, Ul
from pydantic import BaseModel

from faststate import (
    FastStateMiddleware,
    ReactiveState,
    StateScope,
    Stream,
    event,
    live,
    on,
    register_state,
    stream,
    stream_view,
    text,
    use_state,
)
from faststate.fasthtml import datastar_script

pytestmark = pytest.mark.parametrize("protocol", ["v1", "beta"])


class Item(BaseModel):
    id: int
    text: str


def render_item(item: Item) -> Any:
    return Li(item.text, cls="item")


class Board(ReactiveState):
    made: int = 0
    items: Stream[Item] = stream(render_item, key="id", limit=4)

    def _item(self, label: str) -> Item:
        self.made += 1
        return Item(id=self.made, text=f"{label} {self.made}")

    @event
    def add(self) -> None:
        self.items.append(self._item("item"))

    @event
    def top(self) -> None:
        self.items.prepend(self._item("top"))

    @event
    def edit(self) -> None:
        first = next(iter(self.items))
        self.items.update(first.model_copy(update={"text": f"{first.text} edited"}))

    @event
    def drop(self) -> None:
        *_, last = self.items
        self.items.delete(last.id)

    @event
    def reset(self) -> None:
        self.items.reset([self._item("fresh")])


def make_app(protocol: str) -> FastHTML:
    app = FastHTML(hdrs=(datastar_script(protocol=protocol),), htmx=False, surreal=False)
    app.add_middleware(FastStateMiddleware, protocol=protocol, secret_key="browser-streams")
    register_state(app, Board, scope=StateScope.RECORD)

    @app.route("/boards/{id}")
    def page(req, id: str):  # type: ignore[no-untyped-def]
        board = use_state(req, Board)
        return Titled(
            f"Board {id}",
            board,
            P("made: ", Span(**text(board, "made"), id="made")),
            stream_view(board, "items", Ul),
            *(
                Button(name, **on("click", getattr(board, name)), id=name)
                for name in ("add", "top", "edit", "drop", "reset")
            ),
            Div(**live(req), id="live"),
        )

    return app


def test_stream_operations_reach_both_tabs_once_and_survive_a_reload(  # type: ignore[no-untyped-def]
    protocol: str, site, new_context, page_errors
) -> None:
    from playwright.sync_api import expect

    url = f"{site(protocol)}/boards/b{uuid.uuid4().hex[:8]}"
    mine, theirs = new_context(protocol).new_page(), new_context(protocol).new_page()
    for page in (mine, theirs):
        page_errors(page)
        with page.expect_response(lambda r: "/_faststate/live" in r.url):
            page.goto(url)
    items = {page: page.locator("#Board_" + url.rsplit("/", 1)[1] + "-items .item")
             for page in (mine, theirs)}

    def shows(expected: list[str]) -> None:
        for page in (mine, theirs):
            expect(items[page]).to_have_text(expected)

    def click(page: Any, button: str, made: int) -> None:
        page.click(f"#{button}")
        expect(page.locator("#made")).to_have_text(str(made))

    click(mine, "add", 1)
    click(mine, "add", 2)
    shows(["item 1", "item 2"])
    click(theirs, "top", 3)
    shows(["top 3", "item 1", "item 2"])
    mine.click("#edit")
    shows(["top 3 edited", "item 1", "item 2"])
    theirs.click("#drop")
    shows(["top 3 edited", "item 1"])
    click(mine, "add", 4)
    click(mine, "add", 5)
    click(theirs, "add", 6)  # a fifth: the first goes, here and there
    shows(["item 1", "item 4", "item 5", "item 6"])
    click(theirs, "top", 7)  # at the start: the last goes
    shows(["top 7", "item 1", "item 4", "item 5"])
    mine.wait_for_timeout(500)  # a second copy from the page's own stream would be here by now
    shows(["top 7", "item 1", "item 4", "item 5"])

    theirs.reload()
    expect(items[theirs]).to_have_text(["top 7", "item 1", "item 4", "item 5"])
    theirs.wait_for_timeout(300)  # its stream is open again
    click(mine, "reset", 8)
    shows(["fresh 8"])
    click(theirs, "add", 9)
    shows(["fresh 8", "item 9"])
    for page in (mine, theirs):
        expect(page.locator("ul")).to_have_count(1)
        assert page_errors(page) == []
        page.close()
