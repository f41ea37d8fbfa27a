"""RedisStore under faults: dead lock holders, outages, long events, queues, load.

Workers are real uvicorn processes serving ``tests/faults/redis_app.py``.
Tests that stop Redis or cut it off use a redis-server of their own
(``PrivateRedis``); the others use the shared Redis under a prefix of their
own.  Each prints the figure it measures (``pytest -s``), which SECURITY.md
"Under faults" records.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio

from faststate import RedisStore
from faststate.testing import DATASTAR_HEADERS, afire
from tests.faults.redis_app import create_app
from tests.faults.support import PrivateRedis, TcpProxy, worker_env
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LEASE = 3.0  # RedisStore's lock_lease
PRIVATE_PREFIX = "faststate-fault:"


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    url: str

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a lost machine would: no cleanup runs."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


@contextmanager
def worker(redis_url: str, prefix: str, **options: Any) -> Iterator[Worker]:
    """One uvicorn worker serving ``redis_app`` with ``RedisStore(**options)``."""
    port = free_port()
    env = worker_env(
        FASTSTATE_REDIS_URL=redis_url,
        FASTSTATE_REDIS_PREFIX=prefix,
        FASTSTATE_STORE_OPTIONS=json.dumps(options),
    )
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "tests.faults.redis_app:app_from_env",
        "--app-dir",
        str(ROOT),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "critical",
    ]
    process = subprocess.Popen(command, env=env, start_new_session=True)
    running = Worker(process, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the worker did not start") from None
                time.sleep(0.05)
        yield running
    finally:
        running.kill()


def post(client: httpx.Client, path: str) -> httpx.Response:
    return client.post(path, headers=DATASTAR_HEADERS, content="{}")


def timed(call: Any, *args: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call(*args)
    return result, time.monotonic() - started


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def in_background(client: httpx.Client, path: str) -> tuple[threading.Thread, list[Any]]:
    """Post ``path`` in a thread; the list gets the response, or the error."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(post(client, path))
        except httpx.HTTPError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_killed_holder_frees_the_instance_within_the_lease(
    redis_url: str, redis_prefix: str
) -> None:
    lock = f"{redis_prefix}lock:{{global:Shared}}"
    probe = redis.Redis.from_url(redis_url)
    with (
        worker(redis_url, redis_prefix) as doomed,
        worker(redis_url, redis_prefix) as survivor,
        httpx.Client(base_url=doomed.url, timeout=60) as a,
        httpx.Client(base_url=survivor.url, timeout=60) as b,
    ):
        assert b.get("/shared").text == "0"
        _, outcome = in_background(a, "/Shared/add?amount=100&pause=30")
        wait_for(lambda: probe.exists(lock), 10, "the slow event to take the lock")
        # The worst moment: just after the watchdog renewed the lease for its full length.
        time.sleep(DEFAULT_LEASE / 3 + 0.2)
        wait_for(lambda: probe.pttl(lock) > DEFAULT_LEASE * 1000 - 60, 5, "a renewal")
        doomed.kill()
        response, waited = timed(post, b, "/Shared/add?amount=1")
        print(f"\n[figure] usable {waited:.2f}s after the lock holder was killed")
        assert response.status_code == 200
        assert waited <= DEFAULT_LEASE + 1.5
        assert b.get("/shared").text == "1"  # the killed event's +100 was never kept
        assert outcome == [] or isinstance(outcome[0], httpx.HTTPError)
    probe.close()


def test_a_redis_outage_answers_503_quickly_and_ends_with_it(
    private_redis: PrivateRedis,
) -> None:
    with (
        worker(private_redis.url, PRIVATE_PREFIX) as app,
        httpx.Client(base_url=app.url, timeout=30) as client,
    ):
        assert post(client, "/Visits/increment").status_code == 200
        private_redis.stop()
        down_since = time.monotonic()
        during: list[tuple[int, float]] = []
        while time.monotonic() - down_since < 10:
            response, took = timed(post, client, "/Visits/increment")
            during.append((response.status_code, took))
            time.sleep(0.2)
        private_redis.start()
        back = time.monotonic()
        while (status := post(client, "/Visits/increment").status_code) != 200:
            assert status == 503
            assert time.monotonic() - back < 30, "never recovered"
            time.sleep(0.05)
        recovered = time.monotonic() - back
        slowest = max(took for _, took in during)
        print(f"\n[figure] outage: slowest 503 {slowest:.3f}s; 200 again {recovered:.2f}s after")
        assert {status for status, _ in during} == {503}
        assert slowest <= 1.0
        assert recovered <= 2.0
        assert all(post(client, "/Visits/increment").status_code == 200 for _ in range(10))
        assert client.get("/").text == "11"  # Redis came back empty: 1 + 10 since


def test_an_outage_during_an_event_blocks_the_instance_no_longer_than_the_outage(
    private_redis: PrivateRedis,
) -> None:
    # Cut off rather than stopped: Redis keeps the lock the interrupted event
    # could not release, as it would across a network partition.
    proxy = TcpProxy("127.0.0.1", private_redis.port)
    url = f"redis://127.0.0.1:{proxy.port}/0"
    probe = redis.Redis.from_url(private_redis.url)
    try:
        with (
            worker(url, PRIVATE_PREFIX) as app,
            httpx.Client(base_url=app.url, timeout=60) as client,
        ):
            assert client.get("/shared").text == "0"
            thread, outcome = in_background(client, "/Shared/add?amount=100&pause=3")
            lock = f"{PRIVATE_PREFIX}lock:{{global:Shared}}"
            wait_for(lambda: probe.exists(lock), 10, "the lock")
            proxy.kill(refuse=True)
            time.sleep(10)
            proxy.restore()
            back = time.monotonic()
            thread.join(30)
            while (status := post(client, "/Shared/add?amount=1").status_code) != 200:
                assert status == 503
                assert time.monotonic() - back < 40, "never recovered"
                time.sleep(0.05)
            recovered = time.monotonic() - back
            print(f"\n[figure] cut off mid-event for 10s: 200 again {recovered:.2f}s after")
            print(f"[figure] the event cut off mid-way answered {outcome[0].status_code}")
            assert outcome[0].status_code in (409, 503)  # its lock was lost: nothing written
            assert recovered <= 2.0
            assert client.get("/shared").text == "1"
    finally:
        probe.close()
        proxy.close()


def test_connections_redis_closed_while_idle_fail_no_event_and_no_page(
    private_redis: PrivateRedis,
) -> None:
    # A Redis restart, a failover or a proxy's idle timeout closes connections
    # a worker keeps between requests; the next requests must not pay for it.
    probe = redis.Redis.from_url(private_redis.url)
    try:
        with (
            worker(private_redis.url, PRIVATE_PREFIX) as app,
            httpx.Client(base_url=app.url, timeout=30) as client,
        ):
            assert post(client, "/Shared/add?amount=1").status_code == 200
            assert client.get("/shared").text == "1"
            killed = probe.client_kill_filter(_type="normal", skipme=True)
            assert killed >= 1  # the worker's connections, all of them
            time.sleep(0.2)  # the worker's loop sees them closed
            assert post(client, "/Shared/add?amount=1").status_code == 200
            assert client.get("/shared").text == "2"
    finally:
        probe.close()


def test_an_event_longer_than_the_lease_keeps_its_lock(redis_url: str, redis_prefix: str) -> None:
    lease = 1.0
    lock = f"{redis_prefix}lock:{{global:Shared}}"
    probe = redis.Redis.from_url(redis_url)
    with (
        worker(redis_url, redis_prefix, lock_lease=lease) as first,
        worker(redis_url, redis_prefix, lock_lease=lease) as second,
        httpx.Client(base_url=first.url, timeout=60) as a,
        httpx.Client(base_url=second.url, timeout=60) as b,
    ):
        assert b.get("/shared").text == "0"
        thread, outcome = in_background(a, f"/Shared/add?amount=1&pause={3 * lease}")
        wait_for(lambda: probe.exists(lock), 10, "the long event to take the lock")
        time.sleep(0.5)
        waiting, waited = timed(post, b, "/Shared/add?amount=10")
        thread.join(30)
        slow = outcome[0]
        assert slow.status_code == 200, slow.text
        assert waiting.status_code == 200, waiting.text
        assert '"count":11' in waiting.text  # it ran after the long event, on its result
        assert waited >= 2 * lease  # it waited for the long event rather than cutting in
        assert b.get("/shared").text == "11"
    probe.close()


async def test_an_event_past_lock_timeout_writes_nothing_and_frees_the_instance(
    redis_url: str, redis_prefix: str
) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix, lock_lease=0.3, lock_timeout=0.6)
    transport = httpx.ASGITransport(create_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as ac:
        hung = await afire(ac, "/Shared/add", amount=100, pause=1.2)
        assert hung.status_code == 409
        assert (await ac.get("/shared")).text == "0"
        assert (await afire(ac, "/Shared/add")).status_code == 200
        assert (await ac.get("/shared")).text == "1"
    await store.aclose()


async def test_an_event_whose_lock_was_taken_over_writes_nothing(
    redis_url: str, redis_prefix: str
) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix, lock_lease=0.6)
    intruder = redis.asyncio.Redis.from_url(redis_url)
    lock = f"{redis_prefix}lock:{{global:Shared}}"
    transport = httpx.ASGITransport(create_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as ac:
        assert (await ac.get("/shared")).text == "0"

        async def take_over() -> None:
            await asyncio.sleep(0.2)  # the event holds the lock by now
            assert await intruder.exists(lock)
            await intruder.set(lock, "someone else", px=5000)  # as after an expiry

        event, _ = await asyncio.gather(
            afire(ac, "/Shared/add", amount=100, pause=1.0), take_over()
        )
        assert event.status_code == 409
        assert (await ac.get("/shared")).text == "0"
    await intruder.aclose()
    await store.aclose()


@pytest.mark.parametrize("holder", ["this process", "another worker"])
async def test_every_queued_waiter_is_answered_within_lock_wait(
    holder: str, redis_url: str, redis_prefix: str
) -> None:
    lock_wait = 1.0
    store = RedisStore(redis_url, prefix=redis_prefix, lock_wait=lock_wait)
    other = RedisStore(redis_url, prefix=redis_prefix)
    transport = httpx.ASGITransport(create_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as ac:
        assert (await ac.get("/shared")).text == "0"
        released = asyncio.Event()

        async def hold() -> int:
            if holder == "this process":
                return (await afire(ac, "/Shared/add", pause=4 * lock_wait)).status_code
            async with other.lock("global:Shared"):
                released.set()
                await asyncio.sleep(4 * lock_wait)
            return 200

        async def wait() -> tuple[int, float]:
            started = time.monotonic()
            result = await afire(ac, "/Shared/add")
            return result.status_code, time.monotonic() - started

        holding = asyncio.create_task(hold())
        if holder == "this process":
            await asyncio.sleep(0.3)
        else:
            await released.wait()
        waiters = await asyncio.gather(*(wait() for _ in range(10)))
        assert await holding == 200
        slowest = max(took for _, took in waiters)
        print(f"\n[figure] lock_wait={lock_wait}: slowest of 10 queued waiters {slowest:.2f}s")
        assert [status for status, _ in waiters] == [503] * 10
        assert slowest <= lock_wait + 0.5
        expected = "1" if holder == "this process" else "0"
        assert (await ac.get("/shared")).text == expected
    await store.aclose()
    await other.aclose()


SESSIONS = 600


async def _one_event_per_session(base: str) -> tuple[list[int], list[str]]:
    transport = httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=SESSIONS, max_keepalive_connections=SESSIONS)
    )
    # One client per session (its own cookie jar), all over one pool of connections.
    clients = [
        httpx.AsyncClient(transport=transport, base_url=base, timeout=60) for _ in range(SESSIONS)
    ]
    try:
        responses = await asyncio.gather(
            *(
                client.post("/Visits/increment?pause=0.3", headers=DATASTAR_HEADERS, content="{}")
                for client in clients
            )
        )
        reading = asyncio.Semaphore(50)

        async def count(client: httpx.AsyncClient) -> str:
            async with reading:
                return (await client.get("/")).text

        counts = await asyncio.gather(*(count(client) for client in clients))
        return [response.status_code for response in responses], counts
    finally:
        await transport.aclose()


def test_six_hundred_concurrent_sessions_on_one_worker_all_succeed(
    redis_url: str, redis_prefix: str
) -> None:
    with worker(redis_url, redis_prefix) as app:
        statuses, counts = asyncio.run(asyncio.wait_for(_one_event_per_session(app.url), 150))
    refused = sum(status != 200 for status in statuses)
    print(f"\n[figure] {SESSIONS} concurrent sessions on one worker: {refused} not 200")
    assert refused == 0, {status: statuses.count(status) for status in set(statuses)}
    assert counts == ["1"] * SESSIONS
