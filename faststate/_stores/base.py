"""The store interface: where instances live between events."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Final, TypeVar

from faststate._live.broker import Broker, Change, LocalBroker
from faststate._live.presence import LocalViewers, ViewerTable

if TYPE_CHECKING:
    from faststate._state import ReactiveState

S = TypeVar("S", bound="ReactiveState")


class Lease:
    """Exclusive access to one key, for as long as ``held`` is true.

    A lock that can expire (Redis) may be lost while an event runs; nothing
    is written for a lease no longer held.  An in-process lock never is.
    """

    __slots__ = ()

    @property
    def held(self) -> bool:
        return True


#: The lease of locks that cannot be lost.
HELD: Final = Lease()


class StoreUnavailable(Exception):
    """The store cannot be reached; the request is answered 503.

    Raised by stores (and ``SQLPersistence``) when Redis or the database
    refuses, stalls or times out; nothing of the event was kept.
    """


class StaleState(Exception):
    """A save found newer state than the event started from; nothing was written.

    Raised when a worker lost its lock mid-event (``RedisStore``); the
    request is answered 409.
    """


class StateStore(ABC):
    """Keeps instances by key, with expiry, and serialises events per key.

    An event runs as ``async with store.lock(key)``: ``load`` → run →
    ``save``.  ``add`` creates an instance only if the key is free and returns
    whichever instance the key holds afterwards, so concurrent first uses
    agree on one instance; an instance without a version (0, never stored)
    gets ``first_version()``, one loaded from the database keeps its own.
    ``ttl`` is in seconds; ``None`` keeps the instance until it is deleted or
    evicted.  Every ``save`` bumps the instance's version by one, which live
    pages use to notice a missed change.

    Subclass it for a store of your own; ``MemoryStore`` and ``RedisStore``
    are the two faststate ships.  Keys are faststate's internal instance keys
    (``session:Cls:<sid>``).
    """

    #: True when instances are shared with other processes (needs a fixed secret key).
    shared: bool = False

    @abstractmethod
    async def load(self, key: str, cls: type[S]) -> S | None:
        """The instance stored under ``key``, or None (absent or expired).

        Args:
            key: The instance key.
            cls: The state class to build it as.

        Raises:
            StoreUnavailable: The store cannot be reached.
        """

    @abstractmethod
    def load_sync(self, key: str, cls: type[S]) -> S | None:
        """``load`` for sync callers (``use_state`` in a sync handler).

        Args:
            key: The instance key.
            cls: The state class to build it as.
        """

    async def load_held(self, key: str, cls: type[S], lease: Lease) -> S | None:
        """``load`` by the holder of ``key``'s ``lease``: a store may have fetched
        the instance with the lock, in the same round trip."""
        return await self.load(key, cls)

    @abstractmethod
    async def add(self, key: str, state: S, ttl: float | None) -> S:
        """Store ``state`` under ``key`` unless the key holds one already.

        Args:
            key: The instance key.
            state: A new instance.
            ttl: Seconds of idleness before it expires; ``None``: no expiry.

        Returns:
            Whichever instance the key holds afterwards.
        """

    @abstractmethod
    def add_sync(self, key: str, state: S, ttl: float | None) -> S:
        """``add`` for sync callers.

        Args:
            key: The instance key.
            state: A new instance.
            ttl: Seconds of idleness before it expires; ``None``: no expiry.
        """


    @abstractmethod
    async def save(self, key: str, state: ReactiveState, ttl: float | None) -> None:
        """Store ``state`` under ``key`` (under its lock) and bump its version.

        Args:
            key: The instance key.
            state: The instance after the event.
            ttl: Seconds of idleness before it expires; ``None``: no expiry.

        Raises:
            StaleState: The stored version moved on since the load.
            StoreUnavailable: The store cannot be reached.
        """

    async def save_many(
        self, items: Sequence[tuple[str, ReactiveState, float | None]]
    ) -> list[Exception | None]:
        """Save several instances (one event's): per item, ``None`` once saved or
        the error that kept it from being saved.  Here one by one, and nothing
        more after a failure; a store that can saves them in one round trip.

        Args:
            items: ``(key, state, ttl)`` for each instance.

        Returns:
            One outcome per item, in order.
        """
        outcomes: list[Exception | None] = []
        failed: Exception | None = None
        for key, state, ttl in items:
            if failed is not None:
                outcomes.append(failed)
                continue
            try:
                await self.save(key, state, ttl)
            except (StaleState, StoreUnavailable) as exc:
                failed = exc
            outcomes.append(failed)
        return outcomes

    async def save_and_publish(
        self,
        key: str,
        state: ReactiveState,
        ttl: float | None,
        lease: Lease,
        broker: Broker,
        change: Change | None,
    ) -> None:
        """The last save of a transaction holding ``key`` alone: save, then
        publish ``change`` (None: nobody watches; its version is the one this
        save makes) through ``broker``.  A store that shares a server with the
        broker does both, and gives ``lease`` back, in one round trip; the
        lock's exit then has nothing left to do."""
        await self.save(key, state, ttl)
        if change is not None:
            await broker.publish(change)

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the instance under ``key`` (nothing if there is none).

        Args:
            key: The instance key.
        """

    @abstractmethod
    def lock(self, key: str) -> AbstractAsyncContextManager[Lease]:
        """Exclusive access to ``key`` for the length of one event.

        Args:
            key: The instance key.

        Returns:
            An async context manager giving the lease.
        """


    def instance_count(self) -> int | None:
        """How many instances this store keeps, when it can tell without a round
        trip (a gauge reads it); None when it cannot (the default)."""
        return None

    def viewer_table(self) -> ViewerTable:
        """Where presence keeps its seats: in process."""
        return LocalViewers()

    def default_broker(self) -> Broker:
        """How changes reach live pages when the app names no broker: in process."""
        return LocalBroker()

    async def aclose(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release connections; the default store holds none."""
