"""Presence: who has a live page open, in one process and across workers through Redis.

The app is tests/presence_app.py; servers are real uvicorn (a thread for the
in-process store, subprocesses for two workers sharing Redis).  The browser
part is tests/browser/test_presence_in_browser.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fasthtml.common import Div, to_xml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from faststate import (
    FastStateMiddleware,
    ReactiveState,
    StateScope,
    live,
    register_state,
    signal_name,
    use_state,
    viewer_count,
    viewer_names,
    viewers,
)
from faststate._live.broker import Change, ViewersChanged, message_from_json
from faststate._live.presence import labels_of

from .apps import SECRET
from .live import Stream
from .presence_app import Plain, Room, make_app
from .support import free_port, run_server
from .test_live_streams import _stream_url

TESTS = Path(__file__).resolve().parent
HEARTBEAT = 0.3


@asynccontextmanager
async def page_stream(client: httpx.AsyncClient, path: str = "/room") -> AsyncIterator[Stream]:
    """Open ``path`` and its live stream, as a browser tab does."""
    page = await client.get(path)
    assert page.status_code == 200, page.text
    url = _stream_url(page.text)
    async with client.stream("GET", url, headers={"Datastar-Request": "true"}) as response:
        assert response.status_code == 200
        yield Stream(response)


async def viewers_of(stream: Stream, namespace: str = "Room", wait: float = 5.0) -> list[str]:
    """The next viewer list the stream receives (other patches are skipped)."""
    async with asyncio.timeout(wait):
        while True:
            sse = await stream.next(wait)
            found = sse.signals.get(namespace, {}) if sse.type == "datastar-patch-signals" else {}
            if "_viewers" in found:
                assert sse.id is None  # no version: a viewer list is not a change
                return list(found["_viewers"])


async def until(stream: Stream, expected: list[str], namespace: str = "Room") -> float:
    """Seconds until the stream shows ``expected``."""
    started = time.monotonic()
    while await viewers_of(stream, namespace) != expected:
        pass
    return time.monotonic() - started


# --------------------------------------------------------------------------- #
# one process, memory store
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with run_server(make_app(heartbeat=HEARTBEAT)) as url:
        yield url


async def test_two_tabs_of_one_session_count_once_and_others_see_join_and_leave(
    base: str,
) -> None:
    async with (
        httpx.AsyncClient(base_url=base) as guest,
        httpx.AsyncClient(base_url=base, cookies={"who": "alice"}) as alice,
    ):
        async with page_stream(guest) as watcher:
            assert await viewers_of(watcher) == ["guest"]
            async with page_stream(alice) as tab1:
                assert await viewers_of(tab1) == ["alice", "guest"]
                await until(watcher, ["alice", "guest"])
                async with page_stream(alice) as tab2:
                    # The second tab of alice's session is no second viewer.
                    assert await viewers_of(tab2) == ["alice", "guest"]
                    assert await watcher.nothing_within(HEARTBEAT * 2)
                    assert (await guest.get("/viewers/room")).json() == ["alice", "guest"]
                # One tab left: alice is still here.
                assert await watcher.nothing_within(HEARTBEAT * 2)
            await until(watcher, ["guest"])
            assert (await guest.get("/viewers/room")).json() == ["guest"]
        assert (await guest.get("/viewers/room")).json() == []


async def test_record_viewers_are_per_record_and_read_async(base: str) -> None:
    async with (
        httpx.AsyncClient(base_url=base, cookies={"who": "bob"}) as bob,
        httpx.AsyncClient(base_url=base, cookies={"who": "carol"}) as carol,
        page_stream(bob, "/docs/one") as one,
        page_stream(carol, "/docs/two") as two,
    ):
        assert await viewers_of(one, "Doc_one") == ["bob"]
        assert await viewers_of(two, "Doc_two") == ["carol"]
        assert (await bob.get("/aviewers/docs/one")).json() == ["bob"]
        async with page_stream(carol, "/docs/one"):
            await until(one, ["bob", "carol"], "Doc_one")
            assert await two.nothing_within(HEARTBEAT * 2)


async def test_a_dropped_connection_leaves_within_the_heartbeat(base: str) -> None:
    async with (
        httpx.AsyncClient(base_url=base) as watcher_client,
        httpx.AsyncClient(base_url=base, cookies={"who": "dave"}) as dave,
        page_stream(watcher_client) as watcher,
    ):
        assert await viewers_of(watcher) == ["guest"]
        async with page_stream(dave) as tab:
            assert await viewers_of(tab) == ["dave", "guest"]
            await until(watcher, ["dave", "guest"])
        # The tab is gone: its connection closed mid-stream, nothing else said.
        assert await until(watcher, ["guest"]) < HEARTBEAT


async def test_only_presence_classes_pay(base: str) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        page = (await client.get("/plain")).text
        assert "_viewers" not in page and "ifmissing" not in page
        async with page_stream(client, "/plain") as stream:
            assert await stream.nothing_within(HEARTBEAT * 2)
            assert "_viewers" not in stream.raw


@pytest.mark.parametrize("protocol", ["v1", "beta"])
def test_page_helpers_and_signals(protocol: str) -> None:
    app = make_app(protocol)
    results: dict[str, Any] = {}

    async def page(request: Request) -> JSONResponse:
        room, plain = use_state(request, Room), use_state(request, Plain)
        results.update(
            room=to_xml(room),
            count=viewer_count(room),
            names=viewer_names(room),
            viewers=viewers(request, room),
        )
        with pytest.raises(TypeError, match="presence=True"):
            viewer_count(plain)
        with pytest.raises(TypeError, match="presence=True"):
            viewers(request, plain)
        return JSONResponse({})

    app.router.routes.append(Route("/check", page))
    with TestClient(app) as client:
        assert client.get("/check").status_code == 200
    assert results["count"] == {"data-text": "$Room._viewers.length"}
    assert "$Room._viewers" in results["names"]["data-text"]
    assert '"guest"' in results["names"]["data-text"]
    assert results["viewers"] == []
    assert "data-signals__ifmissing" in results["room"]
    assert "_viewers" in results["room"]


async def test_a_label_function_names_viewers() -> None:
    class Lobby(ReactiveState):
        n: int = 0

    app = Starlette()
    app.add_middleware(FastStateMiddleware, secret_key=SECRET)
    register_state(
        app, Lobby, scope=StateScope.GLOBAL, presence=lambda req: req.headers.get("x-name")
    )

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(to_xml(Div(use_state(request, Lobby), **live(request))))

    app.router.routes.append(Route("/room", page))
    with run_server(app) as url:
        async with (
            httpx.AsyncClient(base_url=url, headers={"x-name": "Zoe"}) as zoe,
            httpx.AsyncClient(base_url=url) as nobody,
            page_stream(zoe) as stream,
        ):
            assert await viewers_of(stream, "Lobby") == ["Zoe"]
            async with page_stream(nobody):
                await until(stream, ["Zoe", "guest"], "Lobby")


def test_presence_page_sets_a_cookie_and_messages_round_trip() -> None:
    class Lobby(ReactiveState):
        n: int = 0

    app = Starlette()
    app.add_middleware(FastStateMiddleware, secret_key=SECRET)
    register_state(
        app,
        Lobby,
        scope=StateScope.GLOBAL,
        presence=lambda request: request.headers.get("x-name"),
    )

    async def page(request: Request) -> JSONResponse:
        lobby = use_state(request, Lobby)
        return JSONResponse({"live": live(request), "ns": signal_name(lobby)})

    app.router.routes.append(Route("/", page))
    with TestClient(app) as client:
        response = client.get("/")
        # A presence page sets a session cookie, so its tabs count once.
        assert "faststate_session" in response.headers.get("set-cookie", "")
    assert labels_of([("s1", "guest"), ("s1", "zoe"), ("s2", "guest"), ("s3", "al")]) == [
        "al",
        "guest",
        "zoe",
    ]
    notice = ViewersChanged("global:Lobby")
    assert message_from_json(notice.to_json()) == notice
    change = Change("global:Lobby", 7, {"n": 1})
    assert message_from_json(change.to_json()) == change


# --------------------------------------------------------------------------- #
# two workers sharing Redis
# --------------------------------------------------------------------------- #


@contextmanager
def worker(env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """tests/presence_app.py under uvicorn in its own process: (URL, process)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(TESTS),
        "presence_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, env={**os.environ, **env}, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/plain", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("presence_app did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


async def test_two_workers_share_viewers_and_a_killed_worker_expires(
    redis_url: str, redis_prefix: str
) -> None:
    env = {
        "FASTSTATE_REDIS_URL": redis_url,
        "FASTSTATE_REDIS_PREFIX": redis_prefix,
        "FASTSTATE_HEARTBEAT": str(HEARTBEAT),
    }
    with worker(env) as (first, _), worker(env) as (second, second_process):
        async with (
            httpx.AsyncClient(base_url=first, cookies={"who": "alice"}) as alice,
            httpx.AsyncClient(base_url=second, cookies={"who": "bob"}) as bob,
            httpx.AsyncClient(base_url=second, cookies={"who": "alice"}) as alice_too,
        ):
            async with page_stream(alice) as a:
                assert await viewers_of(a) == ["alice"]
                async with page_stream(bob) as b:
                    assert await viewers_of(b) == ["alice", "bob"]
                    await until(a, ["alice", "bob"])
                    # alice in another session, on the other worker: a second viewer.
                    async with page_stream(alice_too):
                        await until(a, ["alice", "alice", "bob"])
                    await until(a, ["alice", "bob"])
                    assert (await alice.get("/viewers/room")).json() == ["alice", "bob"]
                    # The second worker dies with bob's page open: no goodbye, the seat expires.
                    os.killpg(second_process.pid, signal.SIGKILL)
                    gone = await until(a, ["alice"])
                    # Seats live two heartbeats; the survivor re-reads every heartbeat.
                    assert gone < 5 * HEARTBEAT
            assert (await alice.get("/viewers/room")).json() == []
