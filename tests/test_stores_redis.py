"""RedisStore against a real Redis: versions, the stale-write guard, expiry, outages."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, PrivateAttr, computed_field
from sqlmodel import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from faststate import (
    FastStateMiddleware,
    ReactiveState,
    RedisBroker,
    RedisStore,
    StaleState,
    StateScope,
    StoreUnavailable,
    event,
    use_state,
)
from faststate._live.broker import Change
from faststate._redis import Router, Server, _packed
from faststate._state import stored_version
from faststate.testing import afire

from .apps import state_app
from .conftest import require


class Tally(ReactiveState):
    count: int = 0
    note: str = Field(default="kept", exclude=True)
    _seen: list[int] = PrivateAttr(default_factory=list)

    @event
    async def increment(self, amount: int = 1) -> None:
        self.count += amount
        self._seen.append(amount)

    @event
    async def slow(self) -> None:
        await asyncio.sleep(0.3)
        self.count += 1


def make_app(store: RedisStore, scope: StateScope = StateScope.SESSION) -> Starlette:
    async def page(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(use_state(request, Tally).count))

    return state_app({Tally: scope}, routes=[Route("/", page)], store=store)


async def test_round_trip_keeps_every_server_side_value(redis_prefix: str, redis_url: str) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix)
    state = Tally(count=3, note="secret")
    state._seen.append(9)
    created = await store.add("k", state, ttl=None)
    assert created is state
    loaded = await store.load("k", Tally)
    assert loaded is not None and loaded is not state
    assert (loaded.count, loaded.note, loaded._seen, loaded.id) == (3, "secret", [9], state.id)
    await store.aclose()


class Place(BaseModel):
    city: str
    floor: int


class Rich(ReactiveState):
    """No excluded field: pydantic writes its stored JSON in one go."""

    title: str = "Café ☕ «déjà»"
    when: datetime = datetime(2026, 11, 30, 17, 5, tzinfo=UTC)
    ref: uuid.UUID = uuid.UUID(int=42)
    ratio: float = 1e16
    tags: list[str] = Field(default_factory=lambda: ["a", "ü"])
    scores: dict[str, int] = Field(default_factory=lambda: {"x": 1})
    place: Place = Place(city="Zürich", floor=-1)
    _notes: dict[str, str] = PrivateAttr(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tag_count(self) -> int:
        return len(self.tags)


async def test_round_trip_keeps_every_kind_of_value(redis_prefix: str, redis_url: str) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix)
    state = Rich(tags=["x", "y", "z"], ratio=0.1 + 0.2)
    state._notes["ß"] = "naïve"
    await store.add("rich", state, ttl=None)
    loaded = await store.load("rich", Rich)
    assert loaded is not None and loaded is not state
    assert loaded.model_dump() == state.model_dump()
    assert loaded._notes == {"ß": "naïve"} and loaded.tag_count == 3
    await store.aclose()


async def test_save_many_saves_each_by_its_own_version(redis_prefix: str, redis_url: str) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix)
    a = await store.add("a", Tally(), ttl=None)
    b = await store.add("b", Tally(), ttl=None)
    other = await store.load("b", Tally)
    assert other is not None
    await store.save("b", other, ttl=None)  # b moved on since it was loaded
    a.__dict__["count"], b.__dict__["count"] = 1, 2
    outcomes = await store.save_many([("a", a, None), ("b", b, None)])
    assert outcomes[0] is None and isinstance(outcomes[1], StaleState)
    assert [(await store.load(k, Tally)).count for k in "ab"] == [1, 0]  # type: ignore[union-attr]
    # Scripts flushed (a restarted Redis): loaded again, nothing half done.
    await store._router.single.script_flush()
    a.__dict__["count"] = 3
    assert await store.save_many([("a", a, None)]) == [None]
    assert (await store.load("a", Tally)).count == 3  # type: ignore[union-attr]
    await store.aclose()


async def test_add_returns_the_instance_already_there(redis_prefix: str, redis_url: str) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix)
    first = await store.add("k", Tally(count=1), ttl=None)
    second = await store.add("k", Tally(count=2), ttl=None)
    assert second.count == 1 and second.id == first.id
    await store.aclose()


async def test_stale_write_after_expired_lock_is_refused(redis_prefix: str, redis_url: str) -> None:
    # Worker A takes the lock with a short expiry, loads, and stalls past it;
    # worker B then takes the lock, changes and saves. A's late save must fail.
    store_a = RedisStore(redis_url, prefix=redis_prefix, lock_timeout=0.2)
    store_b = RedisStore(redis_url, prefix=redis_prefix)
    await store_a.add("k", Tally(), ttl=None)
    async with store_a.lock("k"):
        stale = await store_a.load("k", Tally)
        assert stale is not None
        await asyncio.sleep(0.4)  # A's lock expires here
        async with store_b.lock("k"):  # B gets it although A never released
            fresh = await store_b.load("k", Tally)
            assert fresh is not None
            fresh.count = 10
            await store_b.save("k", fresh, ttl=None)
        stale.count = 1
        with pytest.raises(StaleState):
            await store_a.save("k", stale, ttl=None)
    final = await store_b.load("k", Tally)
    assert final is not None and final.count == 10
    await store_a.aclose()
    await store_b.aclose()


async def test_stale_event_answers_409_and_changes_nothing(
    redis_prefix: str, redis_url: str
) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix, lock_timeout=0.1)
    app = make_app(store, StateScope.GLOBAL)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as ac:
        assert (await ac.get("/")).text == "0"

        async def meddle() -> None:
            await asyncio.sleep(0.15)  # after the slow event's lock expired
            other = RedisStore(redis_url, prefix=redis_prefix)
            async with other.lock("global:Tally"):
                state = await other.load("global:Tally", Tally)
                assert state is not None
                state.count = 100
                await other.save("global:Tally", state, ttl=None)
            await other.aclose()

        slow, _ = await asyncio.gather(afire(ac, "/Tally/slow"), meddle())
        assert slow.status_code == 409
        assert (await ac.get("/")).text == "100"
    await store.aclose()


async def test_ttl_becomes_key_expiry(redis_prefix: str, redis_url: str) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix)
    await store.add("k", Tally(), ttl=0.3)
    assert await store.load("k", Tally) is not None
    client = redis.Redis.from_url(redis_url)
    assert 0 < client.pttl(f"{redis_prefix}state:{{k}}") <= 300
    client.close()
    await asyncio.sleep(0.45)
    assert await store.load("k", Tally) is None
    await store.aclose()


async def test_record_that_no_longer_validates_is_replaced(
    redis_prefix: str, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    broken = {"v": 7, "d": '{"fields": {"count": "NaN?"}}'}
    client.hset(f"{redis_prefix}state:{{k}}", mapping=broken)
    client.close()
    store = RedisStore(redis_url, prefix=redis_prefix)
    assert await store.load("k", Tally) is None
    fresh = await store.add("k", Tally(), ttl=None)
    fresh.count = 5
    async with store.lock("k"):
        await store.save("k", fresh, ttl=None)  # not stuck on the broken record
    loaded = await store.load("k", Tally)
    assert loaded is not None and loaded.count == 5
    await store.aclose()


async def test_events_through_app_are_serialised(redis_prefix: str, redis_url: str) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix)
    app = make_app(store, StateScope.GLOBAL)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as ac:
        results = await asyncio.gather(*(afire(ac, "/Tally/increment") for _ in range(200)))
        assert all(r.status_code == 200 for r in results)
        assert (await ac.get("/")).text == "200"
    await store.aclose()


def test_redis_store_without_secret_key_refuses_to_start(
    redis_prefix: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FASTSTATE_SECRET_KEY", raising=False)
    with pytest.raises(RuntimeError, match="secret key"):
        FastStateMiddleware(Starlette(), store=RedisStore(redis_url, prefix=redis_prefix))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: os.PathLike[str]) -> Iterator[tuple[str, int]]:
    """A redis-server of this test's own, on another port, that the test may stop."""
    binary = shutil.which("redis-server")
    if binary is None:
        require("redis-server is not installed")
    port = _free_port()
    yield str(binary), port
    subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True)


def _start_redis(binary: str, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    client.close()
    return process


async def test_redis_down_gives_503_then_recovers(private_redis: tuple[str, int]) -> None:
    binary, port = private_redis
    server = _start_redis(binary, port)
    store = RedisStore(f"redis://127.0.0.1:{port}/0", socket_timeout=1)
    app = make_app(store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as ac:
        assert (await ac.get("/")).text == "0"
        assert (await afire(ac, "/Tally/increment")).signals == {"Tally": {"count": 1}}

        server.terminate()
        server.wait(timeout=10)
        down = await afire(ac, "/Tally/increment")
        assert down.status_code == 503
        assert "unavailable" in down.text
        assert (await ac.get("/")).status_code == 503

        server = _start_redis(binary, port)  # empty: Redis here keeps nothing on disk
        assert (await ac.get("/")).text == "0"
        assert (await afire(ac, "/Tally/increment")).signals == {"Tally": {"count": 1}}
    server.terminate()
    server.wait(timeout=10)
    await store.aclose()


async def test_unreachable_redis_raises_store_unavailable() -> None:
    store = RedisStore(f"redis://127.0.0.1:{_free_port()}/0", socket_timeout=0.5)
    with pytest.raises(StoreUnavailable):
        await store.load("k", Tally)
    with pytest.raises(StoreUnavailable):
        store.load_sync("k", Tally)
    await store.aclose()


async def test_use_state_replaces_a_record_that_no_longer_validates(
    redis_prefix: str, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    client.hset(f"{redis_prefix}state:{{k}}", mapping={"v": 4, "d": '{"fields": {"count": []}}'})
    client.close()
    store = RedisStore(redis_url, prefix=redis_prefix)
    fresh = store.add_sync("k", Tally(), ttl=None)  # the path of use_state in sync handlers
    assert fresh.count == 0
    fresh.count = 2
    async with store.lock("k"):
        await store.save("k", fresh, ttl=None)
    loaded = store.load_sync("k", Tally)
    assert loaded is not None and loaded.count == 2
    await store.aclose()


async def _commit(store: RedisStore, broker: RedisBroker, key: str) -> int:
    """One event's worth on ``key``: lock and load, +1, save and publish; the new version."""
    async with store.lock(key) as lease:
        state = await store.load_held(key, Tally, lease) or await store.add(key, Tally(), None)
        state.count += 1
        change = Change(key, stored_version(state) + 1, {"count": state.count})
        await store.save_and_publish(key, state, None, lease, broker, change)
        return stored_version(state)


async def test_only_watched_instances_log_and_publish_their_changes(
    redis_prefix: str, redis_url: str
) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix)
    broker = RedisBroker(redis_url, prefix=redis_prefix, replay_window=0.6)
    client = redis.asyncio.Redis.from_url(redis_url)
    listener = client.pubsub()
    await listener.subscribe(store.keys.channel("k"))  # a bare subscriber marks nothing
    log = store.keys.log("k")

    async def heard() -> list[Any]:
        messages = []
        while (message := await listener.get_message(timeout=0.2)) is not None:
            if message["type"] == "message":
                messages.append(json.loads(message["data"])["v"])
        return messages

    await heard()
    await _commit(store, broker, "k")
    assert not await client.exists(log) and await heard() == []  # nobody watches: nothing sent

    got: list[Any] = []
    await broker.subscribe("k", got.append)  # a page opens: watched from now on
    version = await _commit(store, broker, "k")
    await asyncio.sleep(0.1)
    assert [change.version for change in got] == [version] and await heard() == [version]
    await broker.unsubscribe("k", got.append)
    left = await _commit(store, broker, "k")  # within the replay window: still logged
    assert [c.version for c in await broker.replay("k", version) or []] == [left]
    assert await heard() == [left]
    await asyncio.sleep(0.8)  # the window has passed
    await _commit(store, broker, "k")
    assert await heard() == []
    assert not (await client.get(store.keys.lock("k")))  # every commit gave its lock back

    await listener.aclose()
    await client.aclose()
    await broker.aclose()
    await store.aclose()


async def test_a_change_saved_while_a_page_began_watching_survives_a_failed_publication(
    redis_prefix: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Nobody watched when the event took the lock, a page did by its save: the
    save keeps the lock for a third round trip that publishes and releases.  If
    that one fails, the change stays saved (the event's 200 is the truth), the
    failure is logged, and the lock is still given back at once."""
    store = RedisStore(redis_url, prefix=redis_prefix)
    broker = RedisBroker(redis_url, prefix=redis_prefix)
    client = redis.asyncio.Redis.from_url(redis_url)
    await _commit(store, broker, "k")  # exists, unwatched
    script = store._script

    async def publication_fails(source: str, keys: list[str], args: list[Any]) -> Any:
        if "publish(1, 1)" in source:
            raise redis.exceptions.ConnectionError("connection lost mid-event")
        return await script(source, keys, args)

    store._script = publication_fails  # type: ignore[method-assign]
    async with store.lock("k") as lease:
        state = await store.load_held("k", Tally, lease)
        assert state is not None and state.count == 1
        await client.set(store.keys.watch("k"), "1", px=5000)  # a page opens meanwhile
        state.count += 1
        change = Change("k", stored_version(state) + 1, {"count": state.count})
        with caplog.at_level("WARNING", logger="faststate"):
            await store.save_and_publish("k", state, None, lease, broker, change)
    assert "was saved but not published" in caplog.text
    store._script = script  # type: ignore[method-assign]
    loaded = await store.load("k", Tally)
    assert loaded is not None and loaded.count == 2
    async with asyncio.timeout(1):  # released in the background, not after the lease
        await asyncio.gather(*store._releasing)
    assert not await client.get(store.keys.lock("k"))
    assert await _commit(store, broker, "k") == stored_version(loaded) + 1
    await client.aclose()
    await broker.aclose()
    await store.aclose()


async def test_a_single_event_takes_two_round_trips(
    redis_prefix: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix)
    broker = store.default_broker()
    assert isinstance(broker, RedisBroker)
    await _commit(store, broker, "k")  # created, scripts known
    sent: list[Any] = []
    connection_class = store._router.single.connection_pool.connection_class
    original = connection_class.send_packed_command

    async def counted(self: Any, command: Any, check_health: bool = True) -> None:
        sent.append(command)
        await original(self, command, check_health)

    monkeypatch.setattr(connection_class, "send_packed_command", counted)
    await _commit(store, broker, "k")
    monkeypatch.undo()
    assert len(sent) == 2  # lock + load; save + publish + release
    await broker.aclose()
    await store.aclose()


async def test_the_copy_a_worker_keeps_is_used_only_while_current(
    redis_prefix: str, redis_url: str
) -> None:
    first = RedisStore(redis_url, prefix=redis_prefix)
    second = RedisStore(redis_url, prefix=redis_prefix)
    broker = first.default_broker()
    assert isinstance(broker, RedisBroker)
    await _commit(first, broker, "k")
    async with first.lock("k") as lease:  # current: the kept instance itself, not read
        kept = await first.load_held("k", Tally, lease)
        assert kept is not None and kept.count == 1
        kept._seen.append(99)  # changed by an event that then fails: never kept
    await _commit(second, broker, "k")  # another worker moves it on
    async with first.lock("k") as lease:
        fresh = await first.load_held("k", Tally, lease)
        assert fresh is not None and fresh is not kept
        assert (fresh.count, fresh._seen) == (2, [])
    await broker.aclose()
    await first.aclose()
    await second.aclose()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(st.characters(exclude_categories=("Cs",))),
            st.integers(),
            st.binary(),
            st.binary().map(memoryview),
            st.floats(allow_nan=False),
        ),
        max_size=8,
    ),
    st.sampled_from(["utf-8", "UTF8", "latin-1"]),
)
def test_event_commands_go_out_byte_for_byte_as_redis_py_writes_them(
    arguments: list[Any], encoding: str
) -> None:
    # The lanes write commands themselves; a byte astray would corrupt a
    # stored instance or a key, not merely slow an event.
    connection = redis.asyncio.Connection(encoding=encoding)
    command = ("EVALSHA", *arguments)
    try:
        expected = b"".join(connection.pack_command(*command))
    except UnicodeEncodeError:  # text the connection's encoding cannot write
        with pytest.raises(UnicodeEncodeError):
            _packed(connection, command)
        return
    assert _packed(connection, command) == expected


def test_commands_redis_cannot_take_are_refused_as_redis_py_refuses_them() -> None:
    connection = redis.asyncio.Connection()
    with pytest.raises(redis.exceptions.DataError):
        _packed(connection, ("SET", "k", True))
    with pytest.raises(redis.exceptions.DataError):
        _packed(connection, ("SET", "k", None))


@asynccontextmanager
async def _lane(
    redis_url: str, key: str, connections: int, pool_timeout: float
) -> AsyncIterator[Any]:
    """The lane of ``key`` on a router of its own, with ``connections`` connections."""
    router = Router(
        Server.of(redis_url),
        max_connections=connections,
        pool_timeout=pool_timeout,
        connect_timeout=5,
    )
    try:
        yield await router.lane(key)
    finally:
        await router.aclose()


async def test_commands_beyond_the_connection_limit_wait_their_turn_for_pool_timeout(
    redis_url: str, redis_prefix: str
) -> None:
    async with _lane(redis_url, f"{redis_prefix}k", 1, pool_timeout=0.3) as lane:
        # The one connection is busy for a second (BLPOP on an empty list):
        # the next command waits pool_timeout for it, then fails plainly.
        busy = asyncio.create_task(lane.execute("BLPOP", f"{redis_prefix}empty", 1))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(redis.exceptions.ConnectionError, match="no free connection"):
            await lane.execute("PING")
        assert 0.25 <= time.monotonic() - started < 0.9
        assert await busy is None
        # Once free, commands queue and all get their answer, one at a time.
        answers = await asyncio.gather(*(lane.execute("PING") for _ in range(20)))
        assert answers == [b"PONG"] * 20


async def test_a_command_that_gives_up_waiting_takes_no_turn_with_it(
    redis_url: str, redis_prefix: str
) -> None:
    other = redis.asyncio.Redis.from_url(redis_url)
    try:
        async with _lane(redis_url, f"{redis_prefix}k", 2, pool_timeout=5) as lane:
            # Both connections busy until the lists get an item; three commands wait.
            busy = [
                asyncio.create_task(lane.execute("BLPOP", f"{redis_prefix}list{n}", 2))
                for n in range(2)
            ]
            await asyncio.sleep(0.05)
            waiting = [asyncio.create_task(lane.execute("PING")) for _ in range(3)]
            await asyncio.sleep(0.05)
            waiting[0].cancel()  # its client went away while it waited
            await other.rpush(f"{redis_prefix}list0", "a")
            await other.rpush(f"{redis_prefix}list1", "b")
            assert [await task for task in busy] == [
                [f"{redis_prefix}list0".encode(), b"a"],
                [f"{redis_prefix}list1".encode(), b"b"],
            ]
            assert await asyncio.gather(*waiting[1:]) == [b"PONG", b"PONG"]
            with pytest.raises(asyncio.CancelledError):
                await waiting[0]
            # Both turns came back: two commands run side by side again, at once.
            started = time.monotonic()
            both = [
                asyncio.create_task(lane.execute("BLPOP", f"{redis_prefix}list{n}", 0.3))
                for n in range(2)
            ]
            assert await asyncio.gather(*both) == [None, None]
            assert time.monotonic() - started < 0.55
    finally:
        await other.delete(f"{redis_prefix}list0", f"{redis_prefix}list1")
        await other.aclose()


async def test_a_command_cut_short_never_hands_its_reply_to_the_next(
    redis_url: str, redis_prefix: str
) -> None:
    other = redis.asyncio.Redis.from_url(redis_url)
    try:
        async with _lane(redis_url, f"{redis_prefix}k", 1, pool_timeout=5) as lane:
            await other.set(f"{redis_prefix}k", "mine")
            # Cancelled while Redis holds its reply back (an event whose client left).
            waiting = asyncio.create_task(lane.execute("BLPOP", f"{redis_prefix}list", 2))
            await asyncio.sleep(0.1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            await other.rpush(f"{redis_prefix}list", "late")  # the cut command's reply, if it lived
            # The only connection was closed, not reused: the next command gets its own reply.
            assert await lane.execute("GET", f"{redis_prefix}k") == b"mine"
    finally:
        await other.delete(f"{redis_prefix}k", f"{redis_prefix}list")
        await other.aclose()
