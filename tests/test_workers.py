"""Real uvicorn processes: restarts keep state, workers share it through Redis."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from html import unescape
from pathlib import Path

import httpx
import pytest

from faststate.testing import DATASTAR_HEADERS

from .support import free_port, start_example

SIGNALS = re.compile(r"data-signals='([^']*)'")


@contextmanager
def uvicorn(module: str, env: dict[str, str], workers: int = 1) -> Iterator[str]:
    """An example under uvicorn in a subprocess; yields its URL, then kills it like a crash."""
    port = free_port()
    process = start_example(module, port, env, workers)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def page_signals(client: httpx.Client, path: str = "/") -> dict[str, object]:
    response = client.get(path)
    assert response.status_code == 200
    match = SIGNALS.search(response.text)
    assert match, response.text[:500]
    return json.loads(unescape(match.group(1)))  # type: ignore[no-any-return]


def increment(client: httpx.Client, amount: int = 1) -> httpx.Response:
    return client.post(
        f"/CounterState/increment?amount={amount}", headers=DATASTAR_HEADERS, content="{}"
    )


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'counter.db'}"


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_counter_survives_a_killed_server(
    database: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'counter.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    env = {"FASTSTATE_DATABASE_URL": url, "FASTSTATE_SECRET_KEY": "restart-test"}
    with uvicorn("counter", env) as base, httpx.Client(base_url=base) as client:
        assert page_signals(client)["CounterState"]["count"] == 0  # type: ignore[index]
        for _ in range(3):
            assert increment(client).status_code == 200
        cookies = dict(client.cookies)
    with uvicorn("counter", env) as base, httpx.Client(base_url=base, cookies=cookies) as client:
        assert page_signals(client)["CounterState"]["count"] == 3  # type: ignore[index]
        response = increment(client, 2)
        assert '"count":5' in response.text
    with uvicorn("counter", env) as base, httpx.Client(base_url=base) as stranger:
        assert page_signals(stranger)["CounterState"]["count"] == 0  # type: ignore[index]


async def _hammer(
    bases: list[str],
    total: int,
    sessions: int,
    path: str,
    cookies: list[dict[str, str]] | None = None,
) -> list[int]:
    """``total`` event posts spread evenly over ``bases`` and ``sessions`` clients."""
    limits = httpx.Limits(max_connections=16)
    clients = [
        httpx.AsyncClient(
            base_url=bases[i % len(bases)],
            limits=limits,
            timeout=60,
            cookies=(cookies[i] if cookies else None),
        )
        for i in range(sessions)
    ]
    semaphore = asyncio.Semaphore(64)

    async def one(i: int) -> int:
        async with semaphore:
            client = clients[i % sessions]
            response = await client.post(path, headers=DATASTAR_HEADERS, content="{}")
            return response.status_code

    try:
        return await asyncio.gather(*(one(i) for i in range(total)))
    finally:
        for client in clients:
            await client.aclose()


def test_two_servers_share_one_session_counter_through_redis(
    redis_url: str, redis_prefix: str
) -> None:
    env = {"FASTSTATE_REDIS_URL": redis_url, "FASTSTATE_SECRET_KEY": "workers-test"}
    with uvicorn("counter", env) as first, uvicorn("counter", env) as second:
        with httpx.Client(base_url=first) as client:
            page_signals(client)
            cookie = dict(client.cookies)
        statuses = asyncio.run(
            _hammer([first, second], 2000, 2, "/CounterState/increment", [cookie, cookie])
        )
        assert statuses.count(200) == 2000
        with httpx.Client(base_url=second, cookies=cookie) as client:
            assert page_signals(client)["CounterState"]["count"] == 2000  # type: ignore[index]
    _flush_session_keys(redis_url, cookie)


def test_workers_share_a_global_poll_hit_by_many_sessions(redis_url: str) -> None:
    import redis

    redis.Redis.from_url(redis_url).delete("faststate:state:{global:Poll}")
    env = {"FASTSTATE_REDIS_URL": redis_url, "FASTSTATE_SECRET_KEY": "workers-test"}
    with uvicorn("global_board", env, workers=2) as base:
        statuses = asyncio.run(_hammer([base], 2000, 40, "/Poll/vote?choice=tea"))
        assert statuses.count(200) == 2000
        with httpx.Client(base_url=base) as client:
            poll = page_signals(client)["Poll"]
        assert poll["votes"]["tea"] == 2000  # type: ignore[index]
        assert poll["total"] == 2000  # type: ignore[index]
    redis.Redis.from_url(redis_url).delete("faststate:state:{global:Poll}")


def _flush_session_keys(redis_url: str, cookie: dict[str, str]) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("faststate:state:{session:CounterState:*"):
        client.delete(key)
    client.close()
