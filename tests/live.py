"""The live-stream app and SSE reader of test_live_streams and test_live_mutations.

The app's ``/page?parts=board,note,...`` uses the named states and answers the
live stream's URL; ``/webhook`` changes state as a background job would
(``_mutations``: ``mutate()`` and ``push()``, not a request's event).  The
``server`` fixture (tests/conftest.py) serves ``make_app()`` over uvicorn.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from faststate import (
    ReactiveState,
    StateScope,
    event,
    live,
    mutate,
    push,
    use_state,
)
from faststate.testing import DATASTAR_HEADERS, SSEEvent, parse_sse

from .apps import state_app

HEADERS = {**DATASTAR_HEADERS, "Content-Type": "application/json"}


class Board(ReactiveState):
    count: int = 0

    @event
    def bump(self, by: int = 1) -> None:
        self.count += by


class Note(ReactiveState):
    text: str = ""

    @event
    def write(self, text: str) -> None:
        self.text = text


class Panel(ReactiveState):
    open: bool = False


class Doc(ReactiveState):
    body: str = ""


class Profile(ReactiveState):
    likes: int = 0


def make_app(protocol: str = "v1", gzip: bool = False, **options: Any) -> Starlette:
    async def page(request: Request) -> JSONResponse:
        parts = request.query_params.get("parts", "board").split(",")
        for part in parts:
            if part == "board":
                use_state(request, Board)
            elif part == "note":
                use_state(request, Note)
            elif part == "panel":
                use_state(request, Panel, key="p1")
            elif part == "doc":
                use_state(request, Doc, key=request.query_params.get("doc", "d1"))
            elif part == "profile":
                use_state(request, Profile)
        attributes = live(request)
        ((name, expression),) = [(k, v) for k, v in attributes.items() if k != "data-signals"]
        url = re.search(r'"(/_faststate/live\?t=[^"]+)"', expression)
        assert url is not None
        return JSONResponse({"attribute": name, "expression": expression, "url": url.group(1)})

    async def webhook(request: Request) -> JSONResponse:
        """Background-style changes: mutate() by the app, not by a request."""
        await _mutations(request.app)
        return JSONResponse({"ok": True})

    return state_app(
        {
            Board: StateScope.GLOBAL,
            Note: StateScope.SESSION,
            Panel: StateScope.COMPONENT,
            Doc: {
                "scope": StateScope.RECORD,
                "authorize": lambda request, key: key != "secret",
            },
            Profile: StateScope.USER,
        },
        routes=[Route("/page", page), Route("/webhook", webhook, methods=["POST"])],
        # Inside FastStateMiddleware, as when added before it.
        middleware=[Middleware(GZipMiddleware, minimum_size=1)] if gzip else None,
        protocol=protocol,
        user_key=lambda request: request.headers.get("x-user"),
        **options,
    )


async def _mutations(app: Any) -> None:
    async with mutate(app, Doc, key="d1") as doc:
        doc.body = "from a webhook"
    with pytest.raises(RuntimeError):
        async with mutate(app, Doc, key="d1") as doc:
            doc.body = "half"
            raise RuntimeError("webhook failed")
    async with mutate(app, Doc, key="d1") as doc:
        assert doc.body == "from a webhook"
        await push(app, doc, '<p id="banner">pushed</p>')


class Stream:
    """Reads SSE events from an open stream.

    A task of its own reads the body: cancelling a read of httpx's iterator
    (on a timeout) would close the response.
    """

    def __init__(self, response: httpx.Response) -> None:
        self.events: asyncio.Queue[SSEEvent] = asyncio.Queue()
        self.raw = ""
        self.reader = asyncio.create_task(self._read(response))

    async def _read(self, response: httpx.Response) -> None:
        buffer = ""
        try:
            async for chunk in response.aiter_text():
                self.raw += chunk
                buffer += chunk
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    for sse in parse_sse(block + "\n\n"):
                        self.events.put_nowait(sse)
        except httpx.TransportError:
            pass  # the server went away; the test waiting for events times out

    async def next(self, wait: float = 5.0) -> SSEEvent:
        async with asyncio.timeout(wait):
            return await self.events.get()

    async def nothing_within(self, seconds: float) -> bool:
        try:
            await self.next(seconds)
        except TimeoutError:
            return True
        return False


async def open_page(client: httpx.AsyncClient, parts: str = "board", **headers: str) -> str:
    response = await client.get(f"/page?parts={parts}", headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["url"])


async def connect(client: httpx.AsyncClient, url: str, **headers: str) -> AsyncIterator[Stream]:
    async with client.stream("GET", url, headers={"Datastar-Request": "true", **headers}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream"
        yield Stream(r)
