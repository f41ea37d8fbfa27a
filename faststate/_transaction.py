"""The one path that changes state: lock → load → place → track → run →
rollback, or diff → save → publish.

Events (and each step of a generator event), ``mutate`` and session
rotation change instances through ``Transaction``; pages and live resyncs
read them through ``load``, ``load_sync`` and ``read``.  No other module
takes a store lock, saves or publishes a change.

A transaction holds one or more instances.  It locks them in one global
order (by key), so two transactions using the same instances in opposite
roles never deadlock, and it rolls back, saves and publishes them together.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any

from faststate._diff import compose_patches
from faststate._live.broker import Change
from faststate._protocol import ElementPatch
from faststate._state import (
    ReactiveState,
    Tracker,
    begin_tracking,
    diff_tracked,
    end_tracking,
    place,
    placement,
    resume_tracking,
    rollback,
    stored_version,
)
from faststate._stores.base import Lease, StaleState

if TYPE_CHECKING:
    from faststate._address import Address
    from faststate._persistence import SQLPersistence
    from faststate._registry import Registration
    from faststate._runtime import Runtime


async def load(runtime: Runtime, address: Address) -> ReactiveState:
    """The stored instance; else its durable copy; else a new one.  Placed at ``address``."""
    cls = address.registration.cls
    store = runtime.store
    state = await store.load(address.key, cls)
    if state is None:
        persistence = persistence_for(runtime, address.registration)
        stored = await persistence.load(address.key, cls) if persistence else None
        ttl = runtime.ttl_for(address.registration.config)
        state = await store.add(address.key, stored or cls(), ttl)
    _place(state, address)
    return state


def load_sync(runtime: Runtime, address: Address) -> ReactiveState:
    """``load`` for sync page handlers."""
    cls = address.registration.cls
    store = runtime.store
    state = store.load_sync(address.key, cls)
    if state is None:
        persistence = persistence_for(runtime, address.registration)
        stored = persistence.load_sync(address.key, cls) if persistence else None
        ttl = runtime.ttl_for(address.registration.config)
        state = store.add_sync(address.key, stored or cls(), ttl)
    _place(state, address)
    return state


async def read(runtime: Runtime, address: Address) -> ReactiveState | None:
    """The instance as last committed, without creating it (a live page's resync)."""
    return await runtime.store.load(address.key, address.registration.cls)


async def move(runtime: Runtime, source: Address, target: Address) -> None:
    """Hand the instance at ``source`` over to ``target`` (a session rotated at login)."""
    store = runtime.store
    async with store.lock(source.key):
        state = await store.load(source.key, source.registration.cls)
        if state is None:
            return
        await store.add(target.key, state, runtime.ttl_for(target.registration.config))
        await store.delete(source.key)


def persistence_for(runtime: Runtime, registration: Registration) -> SQLPersistence | None:
    if not registration.config.auto_persist:
        return None
    if runtime.persistence is None:
        raise RuntimeError(
            f"{registration.name} has auto_persist=True but the middleware has no persistence: "
            "add FastStateMiddleware(persistence=SQLPersistence(url))"
        )
    return runtime.persistence


def _place(state: ReactiveState, address: Address) -> None:
    # A kept instance usually is placed already; re-placing would cost an
    # allocation per event for nothing.
    if not address.same_place(placement(state)):
        place(state, address)


def _by_key(address: Address) -> str:
    return address.key


class Transaction:
    """``async with Transaction(runtime, [address, ...]) as tx``: change instances atomically.

    Inside the block ``tx.states`` are the loaded instances (in the order of
    the addresses given), tracked.  ``tx.step()`` returns what changed since
    the last step (a generator event flushing progress); ``tx.finish()``
    stops tracking and returns the last changes; ``await tx.commit()`` saves
    every instance and publishes what changed to live pages.  A block left
    without a commit (an exception, a return) rolls every instance back.
    """

    __slots__ = ("_done", "_held", "_shown", "_trackers", "addresses", "runtime", "states")

    def __init__(self, runtime: Runtime, addresses: Sequence[Address]) -> None:
        self.runtime = runtime
        if len(addresses) == 1:
            self.addresses = list(addresses)
        else:
            unique: dict[str, Address] = {}
            for address in addresses:
                unique.setdefault(address.key, address)
            self.addresses = list(unique.values())
        self.states: list[ReactiveState] = []
        self._done = False  # committed or rolled back
        self._trackers: list[Tracker] = []
        self._shown: list[dict[str, Any]] = []
        #: Locks taken, in the global order, with their leases and keys.
        self._held: list[tuple[AbstractAsyncContextManager[Lease], Lease, str]] = []

    async def __aenter__(self) -> Transaction:
        runtime = self.runtime
        store = runtime.store
        addresses = self.addresses
        order = addresses if len(addresses) == 1 else sorted(addresses, key=_by_key)
        try:
            for address in order:
                lock = store.lock(address.key)
                self._held.append((lock, await lock.__aenter__(), address.key))
            for address in addresses:
                self.states.append(await load(runtime, address))
        except BaseException as exc:
            await self._release(type(exc), exc, exc.__traceback__)
            raise
        self._trackers = [begin_tracking(state) for state in self.states]
        self._shown = [{} for _ in addresses]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if not self._done:
                self.rollback()
        finally:
            await self._release(exc_type, exc, traceback)

    def step(self) -> list[dict[str, Any]]:
        """What changed since the last step, per instance; tracking goes on."""
        patches = self._diff()
        for state, tracker in zip(self.states, self._trackers, strict=True):
            resume_tracking(state, tracker)
        return patches

    def finish(self) -> list[dict[str, Any]]:
        """Stop tracking; what changed since the last step, per instance."""
        return self._diff()

    async def commit(self, elements: Sequence[ElementPatch] = ()) -> None:
        """Save every instance (to the store, then the database), then tell live pages.

        ``elements`` go to other pages with the first instance's change.
        Versions go out in order because the locks are still held.
        """
        runtime = self.runtime
        store = runtime.store
        self._check_leases()
        for address, state in zip(self.addresses, self.states, strict=True):
            ttl = runtime.ttl_for(address.registration.config)
            await store.save(address.key, state, ttl)
            persistence = persistence_for(runtime, address.registration)
            if persistence is not None:
                await persistence.save(address.key, state, ttl)
        self._done = True
        broker = runtime.broker
        for position, (address, state) in enumerate(zip(self.addresses, self.states, strict=True)):
            patch = self._shown[position]
            shared = tuple(elements) if position == 0 else ()
            if (patch or shared) and broker.reaches(address.key):
                await broker.publish(Change(address.key, stored_version(state), patch, shared))

    def _check_leases(self) -> None:
        for _, lease, key in self._held:
            if not lease.held:
                raise StaleState(f"the lock of {key} was lost; nothing was written")

    def rollback(self) -> list[dict[str, Any]]:
        """Put every instance back as it was; returns, per instance, the patch that
        undoes on the page what earlier steps showed."""
        corrections = []
        for state, tracker in zip(self.states, self._trackers, strict=True):
            end_tracking(state)
            rollback(state, tracker)
            corrections.append(diff_tracked(state, tracker, checkpoint=True))
        self._done = True
        return corrections

    def _diff(self) -> list[dict[str, Any]]:
        patches = []
        for position, (state, tracker) in enumerate(
            zip(self.states, self._trackers, strict=True)
        ):
            end_tracking(state)
            patch = diff_tracked(state, tracker, checkpoint=True)
            if patch:
                shown = self._shown[position]
                self._shown[position] = compose_patches(shown, patch) if shown else patch
            patches.append(patch)
        return patches

    async def _release(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        while self._held:
            lock, _, _ = self._held.pop()
            await lock.__aexit__(exc_type, exc, traceback)
