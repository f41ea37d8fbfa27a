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

import logging
from collections.abc import Awaitable, Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from anyio import CancelScope

from faststate._collections import (
    Stream,
    close_streams,
    flush_streams,
    guard_streams,
    open_streams,
    stream_fields,
    stream_resets,
)
from faststate._diff import compose_patches
from faststate._live.broker import Change
from faststate._observe import Watch
from faststate._protocol import ElementPatch
from faststate._state import (
    ReactiveState,
    Tracker,
    begin_tracking,
    diff_tracked,
    end_tracking,
    place,
    placed_at,
    resume_tracking,
    rollback,
    stored_version,
)
from faststate._stores.base import Lease, StaleState, StoreUnavailable

if TYPE_CHECKING:
    from faststate._address import Address
    from faststate._persistence import OpenWrite, SQLPersistence
    from faststate._registry import Registration
    from faststate._runtime import Runtime

logger = logging.getLogger("faststate")

#: The transaction whose code (an event's method, a ``mutate`` block) is running
#: in this context: ``mutate`` and ``use_state`` there join it.
RUNNING: ContextVar[Transaction | None] = ContextVar("faststate_transaction", default=None)


def running() -> Transaction | None:
    """The transaction whose code is running here, if any."""
    return RUNNING.get()


class _Running:
    """``with tx.running():`` (a class: it runs once per event, and a generator-based
    context manager costs several times more)."""

    __slots__ = ("token", "transaction")

    def __init__(self, transaction: Transaction) -> None:
        self.transaction = transaction

    def __enter__(self) -> None:
        self.token = RUNNING.set(self.transaction)

    def __exit__(self, *exc_info: object) -> None:
        RUNNING.reset(self.token)


class OutOfOrder(Exception):
    """A running transaction was asked to join an instance it cannot lock without
    risking a deadlock: its key sorts before one already held.  The caller rolls
    back and starts again with the instance among those locked up front."""

    def __init__(self, address: Address) -> None:
        super().__init__(f"{address.key} must be locked before the instances already held")
        self.address = address


async def load(runtime: Runtime, address: Address, lease: Lease | None = None) -> ReactiveState:
    """The stored instance; else its durable copy; else a new one.  Placed at ``address``.

    ``lease``: this caller holds the instance's lock (the store may have read it then)."""
    cls = address.registration.cls
    store = runtime.store
    if lease is None:
        state = await store.load(address.key, cls)
    else:
        state = await store.load_held(address.key, cls, lease)
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


#: What a single instance without stream fields holds of stream bookkeeping (never
#: changed: a transaction that joins another instance replaces them with lists of its own).
_NO_STREAMS: Final[list[list[Stream[Any]]]] = [[]]
_NOTHING_STREAMED: Final[list[list[ElementPatch]]] = [[]]


def _place(state: ReactiveState, address: Address) -> None:
    # A kept instance usually is placed already; re-placing would cost an
    # allocation per event for nothing.
    if not placed_at(state, address.key, address.site):
        place(state, address.key, address.site)
        guard_streams(state)


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

    __slots__ = (
        "_corrections",
        "_done",
        "_flushed",
        "_held",
        "_shown",
        "_streamed",
        "_streams",
        "_trackers",
        "addresses",
        "runtime",
        "states",
        "watch",
    )

    def __init__(
        self, runtime: Runtime, addresses: Sequence[Address], watch: Watch | None = None
    ) -> None:
        self.runtime = runtime
        #: A watched event's clock: the time spent waiting for locks is added to it.
        self.watch = watch
        if len(addresses) == 1:
            self.addresses = [addresses[0]]
        else:
            unique: dict[str, Address] = {}
            for address in addresses:
                unique.setdefault(address.key, address)
            self.addresses = list(unique.values())
        self.states: list[ReactiveState] = []
        self._done = False  # committed or rolled back
        self._corrections: list[dict[str, Any]] | None = None  # once rolled back
        self._trackers: list[Tracker] = []
        self._shown: list[dict[str, Any]] = []
        # Stream fields: those of each instance, the element patches each one's
        # streams made so far (its live pages get them), and those of the last step.
        self._streams: list[list[Stream[Any]]] = []
        self._streamed: list[list[ElementPatch]] = []
        self._flushed: list[ElementPatch] = []
        #: Locks taken, in the global order, with their leases and keys.
        self._held: list[tuple[AbstractAsyncContextManager[Lease], Lease, str]] = []

    async def __aenter__(self) -> Transaction:
        runtime = self.runtime
        store = runtime.store
        addresses = self.addresses
        if len(addresses) == 1:  # the common event, in as few steps as it takes
            address = addresses[0]
            lock = store.lock(address.key)
            watch = self.watch  # inline: no call of its own on the common path
            lease = await (lock.__aenter__() if watch is None else watch.locked(lock))
            self._held.append((lock, lease, address.key))
            try:
                state = await load(runtime, address, lease)
            except BaseException as exc:
                await self._release(type(exc), exc, exc.__traceback__)
                raise
            self.states = [state]
            self._trackers = [begin_tracking(state)]
            self._shown = [{}]
            if stream_fields(type(state)):
                self._streams = [open_streams(state, address.namespace, address.protocol)]
                self._streamed = [[]]
            else:  # the usual class: no stream bookkeeping at all
                self._streams = _NO_STREAMS
                self._streamed = _NOTHING_STREAMED
            return self
        order = sorted(addresses, key=_by_key)
        try:
            for address in order:
                lock = store.lock(address.key)
                self._held.append((lock, await self._enter(lock), address.key))
            leases = {key: lease for _, lease, key in self._held}
            for address in addresses:
                self.states.append(await load(runtime, address, leases[address.key]))
        except BaseException as exc:
            await self._release(type(exc), exc, exc.__traceback__)
            raise
        self._trackers = [begin_tracking(state) for state in self.states]
        self._shown = [{} for _ in addresses]
        self._streams = [
            open_streams(state, address.namespace, address.protocol)
            for address, state in zip(addresses, self.states, strict=True)
        ]
        self._streamed = [[] for _ in addresses]
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
            if len(self._held) == 1:  # one lock: no coroutine of our own for it
                await self._held.pop()[0].__aexit__(exc_type, exc, traceback)
            else:
                await self._release(exc_type, exc, traceback)

    def _enter(self, lock: AbstractAsyncContextManager[Lease]) -> Awaitable[Lease]:
        """Taking ``lock``, timed when the event is watched (no coroutine of its own)."""
        if self.watch is None:
            return lock.__aenter__()
        return self.watch.locked(lock)

    def running(self) -> _Running:
        """Run code (the event's method, one step of it) as this transaction's own:
        ``mutate`` and ``use_state`` inside it join the transaction."""
        return _Running(self)

    def holding(self, key: str) -> ReactiveState | None:
        """The instance at ``key`` if this transaction holds it."""
        for address, state in zip(self.addresses, self.states, strict=True):
            if address.key == key:
                return state
        return None

    async def join(self, address: Address) -> ReactiveState:
        """Lock, load and track one more instance; it commits or rolls back with the rest.

        Locks are taken in one global order, so only a key after every held
        one can be waited for; any other raises ``OutOfOrder``.
        """
        if self._done:
            raise RuntimeError("this transaction has ended; it cannot take more instances")
        if any(address.key <= key for _, _, key in self._held):
            raise OutOfOrder(address)
        lock = self.runtime.store.lock(address.key)
        lease = await self._enter(lock)
        self._held.append((lock, lease, address.key))
        state = await load(self.runtime, address, lease)
        self.addresses.append(address)
        self.states.append(state)
        self._trackers.append(begin_tracking(state))
        self._shown.append({})
        if self._streams is _NO_STREAMS:  # the shared empty ones: lists of its own now
            self._streams, self._streamed = [[]], [[]]
        self._streams.append(open_streams(state, address.namespace, address.protocol))
        self._streamed.append([])
        return state

    def step(self) -> list[dict[str, Any]]:
        """What changed since the last step, per instance; tracking goes on."""
        patches = self.finish()
        for state, tracker in zip(self.states, self._trackers, strict=True):
            resume_tracking(state, tracker)
        return patches

    def streamed(self) -> list[ElementPatch]:
        """Element patches of what stream fields did in the last step (or since it,
        after ``finish``), every instance's: the caller's page applies them."""
        return self._flushed

    async def commit(
        self, elements: Sequence[ElementPatch] = (), origin: str | None = None
    ) -> None:
        """Save every instance, then tell live pages.

        An event answered with an error must have changed nothing anywhere,
        and one answered 200 must be in the store and, with ``auto_persist``,
        in the database.  So the database rows are written first, in one
        database transaction left open; then the store saves (version-checked);
        then the database commits.  A store save that fails rolls the database
        back; a database commit that fails after the store saved is undone in
        the store by saving the rolled-back instances again.

        Each instance's change carries the element patches of its stream
        fields; ``elements`` go to other pages with the first instance's change;
        ``origin`` names the page whose event this is (it has the change).
        Every save of a watched instance is published, one that changed
        nothing too, so pages see versions without gaps; they go out in
        order because the locks are still held.
        """
        runtime = self.runtime
        store = runtime.store
        self._check_leases()
        if len(self.addresses) == 1 and not self.addresses[0].registration.config.auto_persist:
            # The common event: one instance, no database.  The same steps as
            # below without the bookkeeping they need for several.
            # The store saves and publishes (a store sharing a server with the
            # broker does both, and releases the lock, in one round trip).
            address, state = self.addresses[0], self.states[0]
            broker = runtime.broker
            streamed = self._streamed[0]
            change = None
            if broker.reaches(address.key):
                version = stored_version(state) + 1  # the version this save makes
                shared = (*streamed, *elements) if streamed else tuple(elements)
                change = Change(address.key, version, self._shown[0], shared, origin=origin)
            ttl = runtime.ttl_for(address.registration.config)
            await store.save_and_publish(address.key, state, ttl, self._held[0][1], broker, change)
            self._done = True
            if streamed or self._streams[0]:
                close_streams(self._streams[0], keep=True)
            return
        ttls = [runtime.ttl_for(address.registration.config) for address in self.addresses]
        pending = await self._write_rows(ttls)
        saved: list[int] = []
        try:
            items = [
                (address.key, state, ttl)
                for address, state, ttl in zip(self.addresses, self.states, ttls, strict=True)
            ]
            outcomes = await store.save_many(items)
            saved = [position for position, failed in enumerate(outcomes) if failed is None]
            failure = next((failed for failed in outcomes if failed is not None), None)
            if failure is not None:
                raise failure
            if pending is not None:
                self._check_leases()
                await pending.commit()
        except BaseException:
            if pending is not None:
                pending.abandon()
            if saved:
                with CancelScope(shield=True):
                    await self._undo(saved, ttls)
            raise
        self._done = True
        for streams in self._streams:
            close_streams(streams, keep=True)
        broker = runtime.broker
        changes = []
        for position, (address, state) in enumerate(zip(self.addresses, self.states, strict=True)):
            if broker.reaches(address.key):
                streamed = self._streamed[position]
                shared = (*streamed, *elements) if position == 0 else tuple(streamed)
                version = stored_version(state)
                changes.append(
                    Change(address.key, version, self._shown[position], shared, origin=origin)
                )
        await broker.publish_many(changes)

    async def _write_rows(self, ttls: list[float | None]) -> OpenWrite | None:
        """The ``auto_persist`` instances written in one open database transaction."""
        persistence: SQLPersistence | None = None
        rows = []
        for address, state, ttl in zip(self.addresses, self.states, ttls, strict=True):
            found = persistence_for(self.runtime, address.registration)
            if found is not None:
                persistence = found
                rows.append((address.key, state, ttl))
        if persistence is None:
            return None
        return await persistence.write(rows, self._leases_held)

    async def _undo(self, saved: list[int], ttls: list[float | None]) -> None:
        """Put back in the store the instances saved before the commit failed."""
        self.rollback()
        store = self.runtime.store
        for position in saved:
            key = self.addresses[position].key
            try:
                # At a new version: a page may have read the undone one meanwhile.
                await store.save(key, self.states[position], ttls[position])
            except (StoreUnavailable, StaleState) as exc:
                logger.error(
                    "faststate: %s not put back; the store keeps a change answered as failed: %s",
                    key,
                    exc,
                )

    def _leases_held(self) -> bool:
        """Whether every lock is still held (asked from the database's thread too)."""
        return all(lease.held for _, lease, _ in self._held)

    def _check_leases(self) -> None:
        for _, lease, key in self._held:
            if not lease.held:
                raise StaleState(f"the lock of {key} was lost; nothing was written")

    def rollback(self) -> list[dict[str, Any]]:
        """Put every instance back as it was; returns, per instance, the patch that
        undoes on the page what earlier steps showed (the same again if already
        rolled back)."""
        if self._corrections is not None:
            return self._corrections
        corrections = []
        for state, tracker in zip(self.states, self._trackers, strict=True):
            end_tracking(state)
            rollback(state, tracker)
            corrections.append(diff_tracked(state, tracker, checkpoint=True))
        for streams in self._streams:
            close_streams(streams, keep=False)
        self._done = True
        self._corrections = corrections
        return corrections

    def restored(self) -> list[ElementPatch]:
        """After a rollback: patches rendering again, as they are now, the stream
        containers of instances whose stream changes a page may have been shown."""
        return [
            patch
            for address, state, streamed in zip(
                self.addresses, self.states, self._streamed, strict=True
            )
            if streamed
            for patch in stream_resets(state, address.namespace, address.protocol)
        ]

    def finish(self) -> list[dict[str, Any]]:
        """Stop tracking; what changed since the last step, per instance (and, in
        ``streamed()``, the element patches of what stream fields did)."""
        if self._streams is not _NO_STREAMS:
            self._flushed = []
            for position, streams in enumerate(self._streams):
                if streams:
                    flushed = flush_streams(streams)
                    self._streamed[position].extend(flushed)
                    self._flushed.extend(flushed)
        if len(self.states) == 1:
            state = self.states[0]
            end_tracking(state)
            patch = diff_tracked(state, self._trackers[0], checkpoint=True)
            if patch:
                shown = self._shown[0]
                self._shown[0] = compose_patches(shown, patch) if shown else patch
            return [patch]
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
