"""The database failing under ``auto_persist``: answers stay true and bounded.

An event answered with an error has changed nothing anywhere; an event
answered 200 is in the store and in the database.  A database that refuses
or stalls gets events answered 503 within a few seconds, and nothing those
events did shows up later.  Real Redis (a prefix of the test's own) and real
PostgreSQL behind a ``TcpProxy``, in a schema of the test's own, so that other
tests dropping faststate's table cannot touch these rows.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import Engine, create_engine, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from faststate import (
    FastStateMiddleware,
    MemoryStore,
    ReactiveState,
    RedisStore,
    SQLPersistence,
    StateConfig,
    StateScope,
    event,
    use_state,
)
from faststate._address import Address
from faststate._registry import Registry, add_registration
from faststate._runtime import Runtime
from faststate._state import ReactiveState as State
from faststate._state import stored_version
from faststate._stores.base import Lease, StaleState
from faststate._transaction import Transaction
from faststate.testing import fire
from tests.apps import SECRET, state_app
from tests.conftest import POSTGRES_URL
from tests.faults.support import TcpProxy, proxied_postgres_url
from tests.support import run_server

TIMEOUT = 2.0  # SQLPersistence(timeout=...) in these tests
SLOWEST = 5.0  # what an answer may take while the database is unreachable


class Tally(ReactiveState):
    count: int = 0

    @event
    def add(self) -> None:
        self.count += 1


def make_app(store: MemoryStore | RedisStore, persistence: SQLPersistence) -> Starlette:
    def page(request: Request) -> PlainTextResponse:
        # A sync handler: use_state loads through SQLPersistence.load_sync.
        return PlainTextResponse(str(use_state(request, Tally).count))

    return state_app(
        {Tally: {"scope": StateScope.RECORD, "auto_persist": True}},
        routes=[Route("/tally/{id}", page)],
        store=store,
        persistence=persistence,
    )


@dataclass
class Database:
    """PostgreSQL reached through ``proxy`` (``url``), and directly, to look at the rows."""

    proxy: TcpProxy
    url: str
    direct: Engine

    def row(self, record: str) -> tuple[int, int] | None:
        """(saves, count) of the record's row, or None: the row holds the store's
        version, whose low bits count the saves."""
        with self.direct.connect() as connection:
            found = connection.execute(
                text("SELECT version, data FROM faststate_states WHERE key = :key"),
                {"key": f"record:Tally:{record}"},
            ).first()
        return None if found is None else (_saves(found.version), _count(found.data))


@pytest.fixture
def database(postgres_proxy: TcpProxy) -> Iterator[Database]:
    schema = f"faults_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    path = f"?options=-csearch_path%3D{schema}"
    direct = create_engine(POSTGRES_URL + path)
    try:
        yield Database(postgres_proxy, proxied_postgres_url(postgres_proxy) + path, direct)
    finally:
        direct.dispose()
        postgres_proxy.kill()  # whatever a test left open there is rolled back
        with admin.begin() as connection:
            connection.execute(text("SET lock_timeout = '10s'"))
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _saves(version: int) -> int:
    """How many saves a version counts (its high bits name the stored copy)."""
    return version & 0xFFFFFFFF


@dataclass
class Redis:
    client: redis.Redis
    prefix: str

    def record(self, record: str) -> tuple[int, int] | None:
        """(saves, count) the store holds for the record, or None."""
        version, data = self.client.hmget(f"{self.prefix}state:{{record:Tally:{record}}}", "v", "d")
        return None if version is None or data is None else (_saves(int(version)), _count(data))


@pytest.fixture
def shared_redis(redis_url: str, redis_prefix: str) -> Iterator[Redis]:
    client = redis.Redis.from_url(redis_url)
    yield Redis(client, redis_prefix)
    client.close()


def _count(data: str | bytes) -> int:
    return int(json.loads(data)["fields"]["count"])


def _add(client: TestClient | httpx.Client, record: str) -> int:
    return fire(client, f"/Tally/add?record_id={record}").status_code


def test_an_event_refused_for_the_database_changes_nothing_anywhere(
    database: Database, shared_redis: Redis, redis_url: str
) -> None:
    """Database refusing connections: 503s keep nothing; once back, 200s keep everything."""
    records = [f"r{i}" for i in range(4)]
    store = RedisStore(redis_url, prefix=shared_redis.prefix)
    app = make_app(store, SQLPersistence(database.url, timeout=TIMEOUT))
    with TestClient(app) as client:
        assert [_add(client, record) for record in records] == [200] * 4
        database.proxy.kill()
        started = time.monotonic()
        refused = [_add(client, record) for record in records for _ in range(3)]
        took = time.monotonic() - started
        assert refused == [503] * 12
        assert took <= SLOWEST
        print(f"\n12 events refused by PostgreSQL answered in {took:.2f}s")
        for record in records:
            # One save each, in the store and in the database alike.
            assert shared_redis.record(record) == (1, 1)
            assert database.row(record) == (1, 1)
        database.proxy.restore()
        kept = [_add(client, record) for record in records for _ in range(2)]
        assert kept == [200] * 8
    for record in records:
        assert shared_redis.record(record) == (3, 3)
        assert database.row(record) == (3, 3)


def test_a_stalled_database_gets_503_within_seconds_and_keeps_nothing(
    database: Database, shared_redis: Redis, redis_url: str
) -> None:
    """Packets held (proxy paused) under real uvicorn: every event and page answers 503
    within ``SLOWEST``, the instances work again right after, and nothing the refused
    events did lands later, when the held bytes finally flow."""
    records = [f"s{i}" for i in range(4)]
    store = RedisStore(redis_url, prefix=shared_redis.prefix)
    app = make_app(store, SQLPersistence(database.url, timeout=TIMEOUT))

    def timed(base: str, path: str) -> tuple[int, float]:
        with httpx.Client(base_url=base, timeout=3 * SLOWEST) as client:
            started = time.monotonic()
            if path.startswith("/tally/"):
                status = client.get(path).status_code
            else:
                status = fire(client, path).status_code
            return status, time.monotonic() - started

    with run_server(app) as base, httpx.Client(base_url=base, timeout=3 * SLOWEST) as client:
        assert [_add(client, record) for record in records] == [200] * 4
        database.proxy.pause()
        try:
            # Events on instances the store holds (the database write stalls), an
            # event on a new one and a page of a new one (the database read stalls).
            paths = [f"/Tally/add?record_id={record}" for record in records]
            paths += ["/Tally/add?record_id=new", "/tally/new-page"]
            with ThreadPoolExecutor(len(paths)) as pool:
                first = list(pool.map(lambda path: timed(base, path), paths))
                second = list(pool.map(lambda path: timed(base, path), paths))
        finally:
            database.proxy.resume()
        answers = first + second
        assert [status for status, _ in answers] == [503] * len(answers)
        slowest = max(took for _, took in answers)
        assert slowest <= SLOWEST, f"slowest answer {slowest:.2f}s"
        print(f"\nslowest answer while PostgreSQL stalled: {slowest:.2f}s")

        status, took = timed(base, f"/Tally/add?record_id={records[0]}")
        assert status == 200 and took < 1.0
        # Long enough for every held statement to reach the database and any
        # late COMMIT to land, were one ever sent.
        time.sleep(2 * TIMEOUT)
        assert shared_redis.record(records[0]) == (2, 2)
        assert database.row(records[0]) == (2, 2)
        for record in records[1:]:
            assert shared_redis.record(record) == (1, 1)
            assert database.row(record) == (1, 1)
        assert shared_redis.record("new") is None and database.row("new") is None
        assert shared_redis.record("new-page") is None


class FaultyStore(RedisStore):
    """Meets ``fault`` right after an event's next save: between the store save and
    the database commit (an ``auto_persist`` event saves through ``save_many``)."""

    fault: Callable[[], Awaitable[None]] | None = None

    async def save_many(
        self, items: Sequence[tuple[str, State, float | None]]
    ) -> list[Exception | None]:
        outcomes = await super().save_many(items)
        fault, self.fault = self.fault, None
        if fault is not None:
            await fault()
        return outcomes


def _faults(proxy: TcpProxy) -> dict[str, Callable[[], Awaitable[None]]]:
    async def cut() -> None:
        proxy.kill()

    async def stall() -> None:
        proxy.pause()

    async def dawdle() -> None:
        # A store this slow leaves too little of the timeout for a COMMIT.
        await asyncio.sleep(TIMEOUT / 2 + 0.3)

    return {"cut": cut, "stalled": stall, "slow store": dawdle}


@pytest.mark.parametrize("fault", ["cut", "stalled", "slow store"])
def test_a_commit_that_fails_after_the_store_saved_is_undone_in_the_store(
    database: Database, shared_redis: Redis, redis_url: str, fault: str
) -> None:
    """The database is cut or stalls after the rows are written and the store saved,
    or the store took too long: the event answers 503, the store gets the old values
    back (at a new version, as a page may have read the undone one), and the
    database never commits, not even when a COMMIT held in the network reaches it
    later."""
    store = FaultyStore(redis_url, prefix=shared_redis.prefix)
    app = make_app(store, SQLPersistence(database.url, timeout=TIMEOUT))
    # Without a deadline of its own the event would wait for the network forever.
    unstall = threading.Timer(3 * SLOWEST, database.proxy.resume)
    with TestClient(app) as client:
        assert _add(client, "c") == 200
        store.fault = _faults(database.proxy)[fault]
        unstall.start()
        started = time.monotonic()
        try:
            assert _add(client, "c") == 503
        finally:
            unstall.cancel()
        assert time.monotonic() - started <= SLOWEST
        # Saved a second time, then put back by a third save.
        assert shared_redis.record("c") == (3, 1)
        database.proxy.restore()
        time.sleep(2 * TIMEOUT)
        assert database.row("c") == (1, 1)
        assert _add(client, "c") == 200
    assert shared_redis.record("c") == (4, 2)
    assert database.row("c") == (4, 2)  # the row carries the store's version


def test_memory_store_keeps_its_version_when_the_database_refuses(
    database: Database,
) -> None:
    """MemoryStore: a refused event leaves the stored version as it was (a live page
    has nothing to resync) and its values rolled back."""
    store = MemoryStore()
    app = make_app(store, SQLPersistence(database.url, timeout=TIMEOUT))
    with TestClient(app) as client:
        assert _add(client, "m") == 200
        database.proxy.kill()
        assert [_add(client, "m") for _ in range(3)] == [503] * 3
        state = store.load_sync("record:Tally:m", Tally)
        assert state is not None
        assert (state.count, _saves(stored_version(state))) == (1, 1)
        database.proxy.restore()
        assert _add(client, "m") == 200
        assert (state.count, _saves(stored_version(state))) == (2, 2)
    assert database.row("m") == (2, 2)


def test_a_locked_sqlite_database_gets_503_and_the_version_is_kept(tmp_path: Path) -> None:
    """SQLite held by another writer: the busy timeout ends the wait, nothing is kept."""
    path = tmp_path / "state.db"
    store = MemoryStore()
    app = make_app(store, SQLPersistence(f"sqlite:///{path}", timeout=TIMEOUT))
    with TestClient(app) as client:
        assert _add(client, "q") == 200
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            assert _add(client, "q") == 503
            assert time.monotonic() - started <= TIMEOUT + 0.5
        finally:
            other.execute("ROLLBACK")
            other.close()
        state = store.load_sync("record:Tally:q", Tally)
        assert state is not None and (state.count, _saves(stored_version(state))) == (1, 1)
        assert _add(client, "q") == 200
    check = SQLPersistence(f"sqlite:///{path}").load_sync("record:Tally:q", Tally)
    assert check is not None and check.count == 2


class SlowStore(MemoryStore):
    async def save(self, key: str, state: State, ttl: float | None) -> None:
        await super().save(key, state, ttl)
        if state.count > 1:  # type: ignore[attr-defined]
            await asyncio.sleep(TIMEOUT / 2 + 0.3)


def test_no_commit_goes_out_once_too_late(tmp_path: Path) -> None:
    """SQLite has no server to drop a late COMMIT: the worker thread itself must not send
    one later than half the timeout after the rows were written."""
    path = tmp_path / "state.db"
    store = SlowStore()
    app = make_app(store, SQLPersistence(f"sqlite:///{path}", timeout=TIMEOUT))
    with TestClient(app) as client:
        assert _add(client, "z") == 200
        assert _add(client, "z") == 503
        state = store.load_sync("record:Tally:z", Tally)
        assert state is not None and state.count == 1
    check = SQLPersistence(f"sqlite:///{path}").load_sync("record:Tally:z", Tally)
    assert check is not None and check.count == 1


class LosingStore(MemoryStore):
    """Its lock is lost right after the first save (a worker stalled past the lock's expiry)."""

    def __init__(self) -> None:
        super().__init__()
        self.saves = 0

    def lock(self, key: str) -> AbstractAsyncContextManager[Lease]:
        return self._held(key)

    @asynccontextmanager
    async def _held(self, key: str) -> AsyncIterator[Lease]:
        outer = self

        class Expiring(Lease):
            __slots__ = ()

            @property
            def held(self) -> bool:
                return outer.saves == 0

        async with super().lock(key):
            yield Expiring()

    async def save(self, key: str, state: State, ttl: float | None) -> None:
        await super().save(key, state, ttl)
        self.saves += 1


class FailingSecondSave(MemoryStore):
    async def save(self, key: str, state: State, ttl: float | None) -> None:
        if key.endswith(":b"):
            raise StaleState("changed meanwhile")
        await super().save(key, state, ttl)


def _transaction_runtime(
    store: MemoryStore, database: Database
) -> tuple[FastStateMiddleware, list[Address]]:
    persistence = SQLPersistence(database.url, timeout=TIMEOUT)
    middleware = FastStateMiddleware(
        Starlette(), secret_key=SECRET, store=store, persistence=persistence
    )
    registration = add_registration(
        Registry(), Tally, StateConfig(scope=StateScope.RECORD, auto_persist=True), prefix=""
    )
    runtime = middleware.runtime
    return middleware, [Address.of(registration, rid, None, runtime.protocol) for rid in "ab"]


async def _add_both(runtime: Runtime, addresses: list[Address]) -> None:
    async with Transaction(runtime, addresses) as tx:
        for state in tx.states:
            assert isinstance(state, Tally)
            state.count += 1
        tx.finish()
        await tx.commit()


async def test_several_instances_are_written_in_one_database_transaction(
    database: Database,
) -> None:
    """The second instance's store save fails: the first's database row is rolled back
    with it and its store save undone."""
    store = FailingSecondSave()
    middleware, addresses = _transaction_runtime(store, database)
    with pytest.raises(StaleState):
        await _add_both(middleware.runtime, addresses)
    state = store.load_sync("record:Tally:a", Tally)
    assert state is not None and state.count == 0
    assert database.row("a") is None and database.row("b") is None
    assert middleware.runtime.persistence is not None
    await middleware.runtime.persistence.aclose()


async def test_a_lock_lost_before_the_database_commit_writes_nothing(
    database: Database,
) -> None:
    store = LosingStore()
    middleware, addresses = _transaction_runtime(store, database)
    with pytest.raises(StaleState):
        await _add_both(middleware.runtime, addresses[:1])
    state = store.load_sync("record:Tally:a", Tally)
    assert state is not None and state.count == 0
    assert database.row("a") is None
    assert middleware.runtime.persistence is not None
    await middleware.runtime.persistence.aclose()
