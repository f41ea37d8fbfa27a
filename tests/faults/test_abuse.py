"""Hostile or careless traffic cannot hold connections, fill Redis, or push out real users."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from typing import Any

import httpx
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from faststate import MemoryStore, ReactiveState, RedisStore, StateScope, event, use_state
from faststate.testing import fire
from tests.apps import Counter, state_app
from tests.support import run_server


class Note(ReactiveState):
    text: str = ""

    @event
    def write(self, text: str) -> None:
        self.text = text


def counter_app(**options: Any) -> Starlette:
    app = state_app({Counter: StateScope.SESSION, Note: StateScope.RECORD}, **options)

    def page(request: Request) -> JSONResponse:
        return JSONResponse({"count": use_state(request, Counter).count})

    app.add_route("/", page)
    return app


# --- Session state expires with its cookie, in every store --------------------------------


def test_cookieless_visits_leave_no_permanent_keys_in_redis(
    redis_url: str, redis_prefix: str
) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix)
    app = counter_app(store=store, max_age=600)
    for _ in range(50):
        with TestClient(app) as visitor:  # a bot: no cookie kept between visits
            assert visitor.get("/").status_code == 200
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(f"{redis_prefix}state:*"))
        assert len(keys) == 50
        ttls = [client.pttl(key) for key in keys]
    finally:
        client.close()
    assert all(0 < ttl <= 600_000 for ttl in ttls), sorted(ttls)[:5]


# --- Anonymous floods do not evict the state of sessions that came back --------------------


def test_a_flood_of_one_off_instances_never_evicts_a_returning_session() -> None:
    store = MemoryStore(max_instances=50)
    app = counter_app(store=store)
    with TestClient(app) as alice, TestClient(app) as attacker:
        assert fire(alice, "/Counter/increment", amount=7).status_code == 200
        assert alice.get("/").json() == {"count": 7}  # she came back: her state is protected
        for index in range(500):
            record = uuid.uuid4().hex
            assert fire(attacker, f"/Note/write?record_id={record}", text="x").status_code == 200
            if index % 50 == 0:
                with TestClient(app) as bot:  # cookieless page views make sessions too
                    assert bot.get("/").status_code == 200
        assert len(store) <= 50
        assert alice.get("/").json() == {"count": 7}


def test_one_off_instances_still_evict_each_other_within_the_cap() -> None:
    """The cap holds: the flood's own instances are what goes."""
    store = MemoryStore(max_instances=20)
    app = counter_app(store=store)
    with TestClient(app) as attacker:
        for _ in range(200):
            record = uuid.uuid4().hex
            assert fire(attacker, f"/Note/write?record_id={record}", text="x").status_code == 200
        assert len(store) == 20


# --- A body sent too slowly is cut off ------------------------------------------------------


def _trickle(base_url: str, answers: list[tuple[bytes, float]]) -> None:
    """Send an event's headers, then its body one byte every 0.3 s, and record the answer."""
    host, port = base_url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(
            b"POST /Counter/increment HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Datastar-Request: true\r\nSec-Fetch-Site: same-origin\r\n"
            b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{"
        )
        received = b""
        sock.settimeout(0.3)
        while time.monotonic() - started < 15:
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                try:
                    sock.sendall(b" ")
                except OSError:
                    break
                continue
            except OSError:
                break
            if not chunk:
                break  # the server closed the connection
            received += chunk
    answers.append((received, time.monotonic() - started))


def test_a_trickled_body_gets_408_and_the_connection_is_closed() -> None:
    app = counter_app(body_timeout=1.5)
    with run_server(app) as base:
        answers: list[tuple[bytes, float]] = []
        slow = [threading.Thread(target=_trickle, args=(base, answers)) for _ in range(20)]
        for thread in slow:
            thread.start()
        time.sleep(0.5)
        with httpx.Client(base_url=base) as client:  # others are served meanwhile
            assert fire(client, "/Counter/increment", amount=1).status_code == 200
        for thread in slow:
            thread.join(20)
        assert len(answers) == 20
        for received, elapsed in answers:
            assert received.startswith(b"HTTP/1.1 408"), received[:80]
            assert elapsed < 1.5 + 3  # cut off at the deadline, not held open
