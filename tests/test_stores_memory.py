"""MemoryStore: sliding expiry, the instance cap, ``add`` and per-key locks.

Time is a fake clock handed to the store, so expiry is tested without sleeping.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections import OrderedDict
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from faststate import (
    FastStateMiddleware,
    MemoryStore,
    ReactiveState,
    StateScope,
    register_state,
    use_state,
)
from faststate._state import KEY_SLOT, NEWER_SLOT, OLDER_SLOT, stored_version
from faststate._versions import same_incarnation
from faststate.testing import afire, fire

from .apps import SECRET, Counter, state_app


class Other(ReactiveState):
    name: str = ""


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def counter(count: int = 0) -> Counter:
    return Counter(count=count)


# --- expiry, unit level --------------------------------------------------------


async def test_instance_expires_after_ttl(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    state = await store.add("k", counter(3), ttl=10)
    clock.advance(9.9)
    assert await store.load("k", Counter) is state
    clock.advance(10)
    assert await store.load("k", Counter) is None
    assert store.load_sync("k", Counter) is None
    assert len(store) == 0


async def test_expiry_slides_with_each_load_and_save(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    state = await store.add("k", counter(), ttl=10)
    for _ in range(5):  # 40 s in all, never 10 s without use
        clock.advance(8)
        assert store.load_sync("k", Counter) is state
    clock.advance(8)
    await store.save("k", state, ttl=10)
    clock.advance(8)
    assert await store.load("k", Counter) is state
    clock.advance(10)
    assert await store.load("k", Counter) is None


async def test_no_ttl_never_expires(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    state = await store.add("k", counter(1), ttl=None)
    clock.advance(10**9)
    assert await store.load("k", Counter) is state


async def test_save_sets_a_new_ttl(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    state = await store.add("k", counter(), ttl=None)
    await store.save("k", state, ttl=5)
    clock.advance(6)
    assert await store.load("k", Counter) is None


async def test_add_returns_the_existing_instance(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    first = await store.add("k", counter(1), ttl=None)
    second = await store.add("k", counter(2), ttl=None)
    assert second is first
    assert second.count == 1
    assert store.add_sync("k", counter(3), ttl=None) is first
    assert len(store) == 1


async def test_add_replaces_an_expired_instance(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    await store.add("k", counter(1), ttl=5)
    clock.advance(5)
    fresh = counter(2)
    assert await store.add("k", fresh, ttl=5) is fresh
    assert await store.load("k", Counter) is fresh


async def test_load_of_another_class_is_none() -> None:
    store = MemoryStore()
    await store.add("k", counter(1), ttl=None)
    assert await store.load("k", Other) is None
    assert await store.load("missing", Counter) is None


async def test_delete() -> None:
    store = MemoryStore()
    await store.add("k", counter(1), ttl=None)
    await store.delete("k")
    await store.delete("k")  # deleting twice is harmless
    assert await store.load("k", Counter) is None
    assert len(store) == 0


# --- the cap -----------------------------------------------------------------------


async def test_cap_evicts_the_least_recently_used(clock: FakeClock) -> None:
    store = MemoryStore(max_instances=3, clock=clock)
    a = await store.add("a", counter(1), ttl=None)
    await store.add("b", counter(2), ttl=None)
    c = await store.add("c", counter(3), ttl=None)
    assert await store.load("a", Counter) is a  # a is now more recent than b
    d = await store.add("d", counter(4), ttl=None)
    assert len(store) == 3
    assert await store.load("b", Counter) is None
    assert await store.load("a", Counter) is a
    assert await store.load("c", Counter) is c
    assert await store.load("d", Counter) is d


class ReferenceLRU:
    """The segmented LRU of MemoryStore's docstring, in ordered dicts."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.max_protected = cap - max(1, cap // 5)
        self.probation: OrderedDict[str, None] = OrderedDict()
        self.protected: OrderedDict[str, None] = OrderedDict()

    def load(self, key: str) -> None:
        if key in self.protected:
            self.protected.move_to_end(key)
        elif key in self.probation:
            del self.probation[key]
            self.protected[key] = None
            while len(self.protected) > self.max_protected:
                self.probation[self.protected.popitem(last=False)[0]] = None

    def add_or_save(self, key: str) -> None:
        for segment in (self.protected, self.probation):
            if key in segment:
                segment.move_to_end(key)
                return
        self.probation[key] = None
        while len(self.probation) + len(self.protected) > self.cap:
            (self.probation or self.protected).popitem(last=False)

    def delete(self, key: str) -> None:
        self.probation.pop(key, None)
        self.protected.pop(key, None)


def use_order(segment: Any) -> list[str]:
    """The keys of a store's segment, least recently used first, walked along
    the list the store threads through its instances (and back again)."""
    forward: list[str] = []
    state = segment.oldest
    while state is not None:
        forward.append(KEY_SLOT.__get__(state))
        state = NEWER_SLOT.__get__(state)
    backward: list[str] = []
    state = segment.newest
    while state is not None:
        backward.append(KEY_SLOT.__get__(state))
        state = OLDER_SLOT.__get__(state)
    assert backward[::-1] == forward
    assert sorted(forward) == sorted(segment.by_key)
    return forward


@settings(max_examples=300, deadline=None)
@given(
    cap=st.integers(min_value=1, max_value=6),
    steps=st.lists(
        st.tuples(st.sampled_from(["load", "add", "save", "delete"]), st.sampled_from("abcdefgh")),
        max_size=60,
    ),
)
def test_eviction_follows_the_segmented_lru(cap: int, steps: list[tuple[str, str]]) -> None:
    """Whatever the order of loads, adds, saves and deletes, the store keeps
    the instances the segmented LRU keeps, in the same order of use."""
    asyncio.run(_replay(cap, steps))


async def _replay(cap: int, steps: list[tuple[str, str]]) -> None:
    store = MemoryStore(max_instances=cap)
    reference = ReferenceLRU(cap)
    held: dict[str, Counter] = {}
    for action, key in steps:
        if action == "load":
            assert (await store.load(key, Counter) is not None) == (
                key in reference.protected or key in reference.probation
            )
            reference.load(key)
        elif action == "add":
            held[key] = await store.add(key, held.get(key) or counter(), ttl=None)
            reference.add_or_save(key)
        elif action == "save":
            state = held.get(key) or counter()
            await store.save(key, state, ttl=None)
            held[key] = state
            reference.add_or_save(key)
        else:
            await store.delete(key)
            reference.delete(key)
        assert use_order(store._probation) == list(reference.probation)
        assert use_order(store._protected) == list(reference.protected)


async def test_an_instance_added_under_another_key_moves_there() -> None:
    """A session's instance handed to its new key at login is held once, under the new key."""
    store = MemoryStore()
    state = await store.add("session:Counter:old", counter(5), ttl=None)
    assert await store.add("session:Counter:new", state, ttl=None) is state
    assert await store.load("session:Counter:old", Counter) is None
    assert await store.load("session:Counter:new", Counter) is state
    assert len(store) == 1


async def test_a_removed_instance_keeps_no_other_instance_alive() -> None:
    """A request may hold on to an evicted instance; the instances that were
    its neighbours in the store are freed all the same."""
    store = MemoryStore(max_instances=2)
    first = await store.add("a", counter(1), ttl=None)
    neighbour = weakref.ref(await store.add("b", counter(2), ttl=None))
    await store.add("c", counter(3), ttl=None)  # evicts a
    await store.delete("b")
    gc.collect()
    assert first.count == 1
    assert neighbour() is None


async def test_a_new_copy_never_continues_the_versions_of_the_one_it_replaces(
    clock: FakeClock,
) -> None:
    """New instances share a first version only while none left the store: a
    page of an evicted, expired or deleted copy never takes the next copy under
    its key for a later save of the one it saw."""
    store = MemoryStore(max_instances=2, clock=clock)
    a = stored_version(await store.add("a", counter(), ttl=10))
    b = stored_version(await store.add("b", counter(), ttl=10))
    assert a == b and a  # neither left: one incarnation, no save yet
    await store.delete("a")
    again = stored_version(await store.add("a", counter(), ttl=10))
    assert not same_incarnation(again, a)
    await store.add("c", counter(), ttl=10)  # evicts b
    b_again = stored_version(await store.add("b", counter(), ttl=10))
    assert not same_incarnation(b_again, b)
    clock.advance(10)
    expired = stored_version(await store.add("b", counter(), ttl=10))
    assert not same_incarnation(expired, b_again)


def test_invalid_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="max_instances"):
        MemoryStore(max_instances=0)


# --- through an app ---------------------------------------------------------------


def make_app(
    store: MemoryStore,
    ttl: float | None = None,
    scope: StateScope = StateScope.SESSION,
    **options: Any,
) -> Starlette:
    app = state_app({Counter: {"scope": scope, "ttl": ttl}}, store=store, **options)

    def page(request: Request) -> JSONResponse:
        return JSONResponse({"count": use_state(request, Counter).count})

    app.add_route("/", page)
    return app


def count(client: TestClient) -> int:
    response = client.get("/")
    assert response.status_code == 200
    value: int = response.json()["count"]
    return value


def test_session_state_expires_after_ttl_and_is_recreated(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    with TestClient(make_app(store, ttl=60)) as client:
        fire(client, "/Counter/increment", amount=5)
        clock.advance(59)
        assert count(client) == 5
        clock.advance(61)
        assert count(client) == 0  # a new instance for the same session
        assert fire(client, "/Counter/increment").signals == {"Counter": {"count": 1}}
        assert len(store) == 1


def test_session_state_kept_alive_by_use(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    with TestClient(make_app(store, ttl=60)) as client:
        fire(client, "/Counter/increment", amount=2)
        for _ in range(10):  # 500 s in all
            clock.advance(50)
            assert fire(client, "/Counter/increment").status_code == 200
        clock.advance(50)
        assert count(client) == 12


def test_session_state_without_ttl_lives_as_long_as_its_cookie(clock: FakeClock) -> None:
    """Nobody can reach a session's state once its cookie has expired: it goes too."""
    store = MemoryStore(clock=clock)
    with TestClient(make_app(store, ttl=None, max_age=1000)) as client:
        fire(client, "/Counter/increment", amount=2)
        clock.advance(999)
        assert count(client) == 2
        clock.advance(1001)
        assert len(store) == 1  # not swept yet, but expired
        assert count(client) == 0


def test_shared_state_without_ttl_never_expires(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    with TestClient(make_app(store, ttl=None, scope=StateScope.GLOBAL, max_age=1000)) as client:
        fire(client, "/Counter/increment", amount=2)
        clock.advance(10**8)
        assert count(client) == 2


def test_fourth_session_evicts_the_least_recently_used(clock: FakeClock) -> None:
    store = MemoryStore(max_instances=3, clock=clock)
    app = make_app(store)
    clients = [TestClient(app) for _ in range(4)]
    try:
        for amount, client in enumerate(clients[:3], start=1):
            fire(client, "/Counter/increment", amount=amount)
        assert count(clients[0]) == 1  # session 1 used again: session 2 is now oldest
        fire(clients[3], "/Counter/increment", amount=4)
        assert len(store) == 3
        assert count(clients[3]) == 4
        assert count(clients[2]) == 3
        assert count(clients[0]) == 1
        assert count(clients[1]) == 0  # evicted: starts again
    finally:
        for client in clients:
            client.close()


def test_cookieless_flood_never_grows_past_the_cap() -> None:
    store = MemoryStore(max_instances=50)
    sizes: list[int] = []
    with TestClient(make_app(store)) as client:
        for _ in range(200):
            client.cookies.clear()
            assert count(client) == 0
            sizes.append(len(store))
    assert max(sizes) == 50
    assert len(store) == 50


# --- locks ---------------------------------------------------------------------


async def test_lock_serialises_holders_of_one_key() -> None:
    store = MemoryStore()
    inside = 0
    overlaps = 0
    order: list[int] = []

    async def worker(n: int) -> None:
        nonlocal inside, overlaps
        async with store.lock("k"):
            inside += 1
            overlaps = max(overlaps, inside)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            order.append(n)
            inside -= 1

    await asyncio.gather(*(worker(n) for n in range(20)))
    assert overlaps == 1
    assert sorted(order) == list(range(20))
    # White-box check, acceptable here: the per-key lock table is the one
    # part of the store that grows with keys used but holds no instance, and
    # nothing public shows it; an entry left behind per key would leak memory
    # under a flood of distinct keys.
    assert len(store._locks) == 0


async def test_locks_of_different_keys_do_not_block_each_other() -> None:
    store = MemoryStore()
    both_inside = asyncio.Event()
    entered: set[str] = set()

    async def worker(key: str) -> None:
        async with store.lock(key):
            entered.add(key)
            if len(entered) == 2:
                both_inside.set()
            await asyncio.wait_for(both_inside.wait(), timeout=2)

    await asyncio.gather(worker("a"), worker("b"))
    assert entered == {"a", "b"}
    assert len(store._locks) == 0  # see test_lock_serialises_holders_of_one_key


async def test_lock_is_released_when_the_holder_raises() -> None:
    store = MemoryStore()
    with pytest.raises(RuntimeError):
        async with store.lock("k"):
            raise RuntimeError("boom")
    await asyncio.wait_for(_take(store, "k"), timeout=1)
    assert len(store._locks) == 0  # see test_lock_serialises_holders_of_one_key


async def _take(store: MemoryStore, key: str) -> None:
    async with store.lock(key):
        pass


async def test_concurrent_events_through_an_app_all_count() -> None:
    store = MemoryStore()
    app = Starlette()
    app.add_middleware(FastStateMiddleware, secret_key=SECRET, store=store)
    register_state(app, Counter, scope=StateScope.GLOBAL)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        results: list[Any] = await asyncio.gather(
            *(afire(client, "/Counter/increment") for _ in range(50))
        )
    assert all(r.status_code == 200 for r in results)
    final = await store.load("global:Counter", Counter)
    assert final is not None and final.count == 50
    seen = sorted(r.signals["Counter"]["count"] for r in results)
    assert seen == list(range(1, 51))
    assert len(store._locks) == 0  # see test_lock_serialises_holders_of_one_key
