"""Bounded resources under floods: instances, locks, cookie caches, live streams.

The floods go through the real middleware and app, called as plain ASGI
callables (as a server would call them), so that 100,000 requests take
seconds.  Live-stream caps are checked over a real uvicorn server.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import resource
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from itsdangerous import TimestampSigner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.types import ASGIApp, Message

from faststate import (
    FastStateMiddleware,
    MemoryStore,
    ReactiveState,
    StateScope,
    event,
    live,
    use_state,
)
from faststate._middleware import VERIFIED_COOKIES

from .apps import SECRET, state_app
from .support import run_server

COOKIE = "faststate_session"
CAP = 1000
MB = 1024 * 1024


class Visit(ReactiveState):
    count: int = 0
    note: str = ""

    @event
    def bump(self, amount: int = 1) -> None:
        self.count += amount


class Board(ReactiveState):
    count: int = 0


def flood_app(store: MemoryStore) -> Starlette:
    async def page(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(use_state(request, Visit).count))

    app = state_app({Visit: StateScope.SESSION}, store=store)
    app.add_route("/", page)
    return app


def rss() -> int:
    """Resident memory of this process now, in bytes."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the peak is an upper bound of "now"
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Caller:
    """Calls an ASGI app directly with one request and remembers the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self,
        method: str = "GET",
        path: str = "/",
        query: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
    ) -> tuple[int, list[tuple[bytes, bytes]]]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "root_path": "",
            "headers": [(b"host", b"testserver"), *(headers or [])],
            "client": ("127.0.0.1", 40000),
            "server": ("testserver", 80),
        }
        sent = False
        answer: dict[str, Any] = {}

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)  # pragma: no cover - nobody waits for a disconnect
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["headers"] = message.get("headers", [])

        await self.app(scope, receive, send)
        return answer["status"], answer["headers"]


def middleware_of(app: Starlette) -> FastStateMiddleware:
    node: Any = app.middleware_stack
    while node is not None and not isinstance(node, FastStateMiddleware):
        node = getattr(node, "app", None)
    assert isinstance(node, FastStateMiddleware), "the app has served a request"
    return node


def sets_cookie(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k == b"set-cookie" and v.startswith(COOKIE.encode()) for k, v in headers)


async def test_cookieless_flood_of_100k_page_views_keeps_memory_bounded() -> None:
    store = MemoryStore(max_instances=CAP)
    app = flood_app(store)
    call = Caller(app)
    # Warm up past the cap, so that allocator pools and the full table exist.
    for _ in range(2 * CAP):
        status, headers = await call()
        assert status == 200 and sets_cookie(headers)
    gc.collect()
    before = rss()
    for number in range(100_000):
        status, headers = await call()
        if number % 10_000 == 0:
            assert status == 200 and sets_cookie(headers), status
            assert len(store) <= CAP
    gc.collect()
    grown = rss() - before
    assert len(store) == CAP
    assert grown < 60 * MB, f"memory grew by {grown / MB:.1f} MB over 100,000 cookieless views"


async def test_cookieless_flood_of_events_keeps_instances_and_locks_bounded() -> None:
    store = MemoryStore(max_instances=CAP)
    app = flood_app(store)
    call = Caller(app)
    headers = [
        (b"datastar-request", b"true"),
        (b"sec-fetch-site", b"same-origin"),
        (b"content-type", b"application/json"),
    ]
    gc.collect()
    before = rss()
    for _ in range(20_000):
        status, answer = await call("POST", "/Visit/bump", b"amount=2", headers, b"{}")
        assert status == 200 and sets_cookie(answer)
    gc.collect()
    assert len(store) == CAP
    assert len(store._locks) == 0  # a lock per key lives only while held
    assert rss() - before < 60 * MB


async def test_many_valid_cookies_keep_the_signature_cache_bounded() -> None:
    """Returning visitors (genuine cookies) are remembered up to a fixed number; forged
    ones are never remembered."""
    store = MemoryStore(max_instances=CAP)
    app = flood_app(store)
    call = Caller(app)
    await call()
    middleware = middleware_of(app)
    signer = TimestampSigner(SECRET, salt="faststate.session")
    for number in range(VERIFIED_COOKIES + 2_000):
        cookie = signer.sign(f"visitor-{number}").decode()
        status, headers = await call(headers=[(b"cookie", f"{COOKIE}={cookie}".encode())])
        assert status == 200 and not sets_cookie(headers)
    assert len(middleware._verified) <= VERIFIED_COOKIES
    assert len(store) == CAP
    cached = dict(middleware._verified)
    for number in range(2_000):
        forged = f"visitor-{number}.AAAAAA.{'A' * 27}"
        status, headers = await call(headers=[(b"cookie", f"{COOKIE}={forged}".encode())])
        assert status == 200 and sets_cookie(headers)
    assert middleware._verified == cached


# --- live streams: the total cap -----------------------------------------------------------


class Note(ReactiveState):
    text: str = ""


def stream_app(**options: Any) -> Starlette:
    async def board(request: Request) -> JSONResponse:
        use_state(request, Board)
        return JSONResponse(live(request))

    async def note(request: Request) -> JSONResponse:
        use_state(request, Note)
        return JSONResponse(live(request))

    app = state_app({Board: StateScope.GLOBAL, Note: StateScope.SESSION}, **options)
    app.add_route("/board", board)
    app.add_route("/note", note)
    return app


@pytest.fixture
def capped_server() -> Iterator[str]:
    with run_server(stream_app(max_streams=3, max_streams_per_session=16, heartbeat=0.5)) as base:
        yield base


async def stream_url(client: httpx.AsyncClient, page: str) -> str:
    response = await client.get(page)
    assert response.status_code == 200, response.text
    (expression,) = [v for k, v in response.json().items() if k != "data-signals"]
    match = re.search(r"/_faststate/live\?t=[A-Za-z0-9_.\-]+", expression)
    assert match is not None, expression
    return match.group(0)


async def test_total_cap_on_live_streams_answers_429(capped_server: str) -> None:
    """The per-session cap cannot stop cookieless visitors or many sessions: the total does."""
    headers = {"Datastar-Request": "true"}
    clients = [httpx.AsyncClient(base_url=capped_server, timeout=10) for _ in range(5)]
    alice, bob, anon1, anon2, late = clients
    async with AsyncExitStack() as stack:
        for client in clients:
            await stack.enter_async_context(client)
        alice_url = await stream_url(alice, "/note")
        bob_url = await stream_url(bob, "/note")
        board_url = await stream_url(anon1, "/board")
        assert COOKIE not in anon1.cookies  # a GLOBAL page mints no session

        opened = []
        for client, url in ((alice, alice_url), (alice, alice_url), (anon1, board_url)):
            response = await stack.enter_async_context(client.stream("GET", url, headers=headers))
            assert response.status_code == 200
            opened.append(response)
        await asyncio.sleep(0.2)

        refused = [
            await bob.get(bob_url, headers=headers),
            await anon2.get(board_url, headers=headers),
            await late.get(board_url, headers=headers),
        ]
        assert [r.status_code for r in refused] == [429, 429, 429]
        assert all("text/event-stream" not in r.headers.get("content-type", "") for r in refused)

        # A stream that ends frees its place.
        await opened[0].aclose()
        for _ in range(50):
            await asyncio.sleep(0.1)
            async with bob.stream("GET", bob_url, headers=headers) as again:
                if again.status_code == 200:
                    break
                assert again.status_code == 429
        else:
            pytest.fail("a closed stream never freed its place under the cap")
