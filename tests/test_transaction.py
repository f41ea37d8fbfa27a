"""The transaction unit: every instance it holds is locked in one order, rolled back,
saved and published together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
from pydantic import Field
from starlette.applications import Starlette

from faststate import FastStateMiddleware, MemoryStore, ReactiveState, StateConfig, StateScope
from faststate._address import Address
from faststate._live.broker import Change
from faststate._registry import Registry, add_registration
from faststate._runtime import Runtime
from faststate._stores.base import Lease, StaleState
from faststate._transaction import Transaction, read
from tests.apps import SECRET


class Account(ReactiveState):
    balance: int = 0
    history: list[int] = Field(default_factory=list)


def _runtime(store: MemoryStore | None = None) -> Runtime:
    middleware = FastStateMiddleware(Starlette(), secret_key=SECRET, store=store)
    return middleware.runtime


def _accounts(runtime: Runtime, *ids: str) -> list[Address]:
    registration = add_registration(
        Registry(), Account, StateConfig(scope=StateScope.RECORD), prefix=""
    )
    return [Address.of(registration, rid, None, runtime.protocol) for rid in ids]


def _changes(runtime: Runtime, keys: list[str]) -> list[Change]:
    seen: list[Change] = []
    for key in keys:
        runtime.broker._subscribers.setdefault(key, set()).add(
            lambda change: seen.append(change) if change else None
        )
    return seen


async def _balance(runtime: Runtime, address: Address) -> int:
    state = await read(runtime, address)
    assert isinstance(state, Account)
    return state.balance


class YieldingStore(MemoryStore):
    """Lets other tasks run between taking one lock and the next, as a networked store does."""

    def lock(self, key: str) -> AbstractAsyncContextManager[Lease]:
        return self._yield_then_lock(key)

    @asynccontextmanager
    async def _yield_then_lock(self, key: str) -> AsyncIterator[Lease]:
        await asyncio.sleep(0)
        async with super().lock(key) as lease:
            yield lease


async def test_transfers_in_opposite_directions_never_deadlock() -> None:
    """200 concurrent A→B and B→A transfers: all finish, and money is conserved."""
    runtime = _runtime(YieldingStore())
    a, b = _accounts(runtime, "a", "b")

    async def transfer(source: Address, target: Address) -> None:
        async with Transaction(runtime, (source, target)) as tx:
            paying, paid = tx.states
            assert isinstance(paying, Account) and isinstance(paid, Account)
            paying.balance -= 1
            await asyncio.sleep(0)  # let the other direction try to interleave
            paid.balance += 1
            tx.finish()
            await tx.commit()

    runs = [transfer(a, b) if i % 2 else transfer(b, a) for i in range(200)]
    runs += [transfer(a, b) for _ in range(10)]
    await asyncio.wait_for(asyncio.gather(*runs), timeout=10)
    assert await _balance(runtime, a) == -10
    assert await _balance(runtime, b) == 10


async def test_a_failure_rolls_every_instance_back_and_publishes_nothing() -> None:
    runtime = _runtime()
    a, b = _accounts(runtime, "a", "b")
    seen = _changes(runtime, [a.key, b.key])
    with pytest.raises(RuntimeError):
        async with Transaction(runtime, (a, b)) as tx:
            first, second = tx.states
            assert isinstance(first, Account) and isinstance(second, Account)
            first.balance = 5
            first.history.append(5)
            second.balance = 7
            raise RuntimeError("declined")
    for address in (a, b):
        state = await read(runtime, address)
        assert isinstance(state, Account)
        assert (state.balance, state.history) == (0, [])
    assert seen == []


async def test_a_block_left_without_commit_changes_nothing() -> None:
    runtime = _runtime()
    (a,) = _accounts(runtime, "a")
    async with Transaction(runtime, (a,)) as tx:
        state = tx.states[0]
        assert isinstance(state, Account)
        state.balance = 99
    assert await _balance(runtime, a) == 0


async def test_commit_saves_and_publishes_each_instance_with_its_own_patch() -> None:
    runtime = _runtime()
    a, b = _accounts(runtime, "a", "b")
    seen = _changes(runtime, [a.key, b.key])
    async with Transaction(runtime, (b, a)) as tx:
        first, second = tx.states
        assert isinstance(first, Account) and isinstance(second, Account)
        first.balance = 2
        second.balance = 3
        assert tx.finish() == [{"balance": 2}, {"balance": 3}]
        await tx.commit()
    # One save each (the low bits of a version count saves).
    assert {(c.key, c.version & 0xFFFFFFFF, c.patch["balance"]) for c in seen} == {
        (b.key, 1, 2),
        (a.key, 1, 3),
    }
    assert await _balance(runtime, a) == 3


async def test_steps_show_progress_and_the_commit_publishes_all_of_it() -> None:
    runtime = _runtime()
    (a,) = _accounts(runtime, "a")
    seen = _changes(runtime, [a.key])
    async with Transaction(runtime, (a,)) as tx:
        state = tx.states[0]
        assert isinstance(state, Account)
        state.balance = 1
        assert tx.step() == [{"balance": 1}]
        state.history.append(1)
        assert tx.step() == [{"history": [1]}]
        state.balance = 2
        assert tx.finish() == [{"balance": 2}]
        await tx.commit()
    assert [c.patch for c in seen] == [{"balance": 2, "history": [1]}]


async def test_rollback_after_steps_returns_what_undoes_them_on_the_page() -> None:
    runtime = _runtime()
    (a,) = _accounts(runtime, "a")
    async with Transaction(runtime, (a,)) as tx:
        state = tx.states[0]
        assert isinstance(state, Account)
        state.balance = 4
        tx.step()
        state.balance = 5
        assert tx.rollback() == [{"balance": 0}]
    assert await _balance(runtime, a) == 0


async def test_the_same_instance_named_twice_is_held_once() -> None:
    runtime = _runtime()
    (a,) = _accounts(runtime, "a")
    (again,) = _accounts(runtime, "a")
    async with Transaction(runtime, (a, again)) as tx:
        assert len(tx.states) == 1
        state = tx.states[0]
        assert isinstance(state, Account)
        state.balance = 1
        tx.finish()
        await tx.commit()
    assert await _balance(runtime, a) == 1


async def test_a_failed_lock_leaves_no_lock_behind() -> None:
    """If loading the second instance fails, the first instance's lock is released."""

    class FailingStore(MemoryStore):
        async def load(self, key: str, cls: type) -> None:  # type: ignore[override]
            if key.endswith(":b"):
                raise ConnectionError("store down")
            return await super().load(key, cls)

    store = FailingStore()
    runtime = _runtime(store)
    a, b = _accounts(runtime, "a", "b")
    with pytest.raises(ConnectionError):
        async with Transaction(runtime, (a, b)):
            pass
    assert len(store._locks) == 0
    async with asyncio.timeout(1), Transaction(runtime, (a,)) as tx:
        assert len(tx.states) == 1


async def test_nothing_is_written_once_a_lock_is_lost() -> None:
    """A lock that expired while the event ran (a stalled worker) must not be written through."""

    class Lost(Lease):
        __slots__ = ()

        @property
        def held(self) -> bool:
            return False

    class ExpiringStore(MemoryStore):
        def lock(self, key: str) -> AbstractAsyncContextManager[Lease]:
            return self._expired(key)

        @asynccontextmanager
        async def _expired(self, key: str) -> AsyncIterator[Lease]:
            async with super().lock(key):
                yield Lost()

    runtime = _runtime(ExpiringStore())
    (a,) = _accounts(runtime, "a")
    seen = _changes(runtime, [a.key])
    with pytest.raises(StaleState):
        async with Transaction(runtime, (a,)) as tx:
            state = tx.states[0]
            assert isinstance(state, Account)
            state.balance = 5
            tx.finish()
            await tx.commit()
    state = await read(runtime, a)
    assert isinstance(state, Account) and state.balance == 0
    assert seen == []
