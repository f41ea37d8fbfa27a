"""In-process store: live instances in an LRU table with expiry and a cap."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from faststate._state import ReactiveState, set_stored_version, stored_version
from faststate._stores.base import Lease, S, StateStore
from faststate._stores.locks import KeyLocks

DEFAULT_MAX_INSTANCES = 100_000


class _Entry:
    __slots__ = ("deadline", "state", "ttl")

    def __init__(self, state: ReactiveState, ttl: float | None, now: float) -> None:
        self.state = state
        self.ttl = ttl
        self.deadline = now + ttl if ttl is not None else None


class MemoryStore(StateStore):
    """Instances in this process's memory.

    Expiry slides: every load or save restarts an instance's ``ttl``.  When
    ``max_instances`` is reached, the least recently used instance is
    evicted, so a flood of cookieless visitors cannot exhaust memory.
    """

    def __init__(
        self,
        max_instances: int = DEFAULT_MAX_INSTANCES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_instances < 1:
            raise ValueError("max_instances must be at least 1")
        self.max_instances = max_instances
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._mutex = threading.Lock()
        self._locks = KeyLocks()
        self._inserts_since_sweep = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def load(self, key: str, cls: type[S]) -> S | None:
        return self.load_sync(key, cls)

    def load_sync(self, key: str, cls: type[S]) -> S | None:
        now = self._clock()
        with self._mutex:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.deadline is not None and entry.deadline <= now:
                del self._entries[key]
                return None
            if not isinstance(entry.state, cls):
                return None
            self._touch(key, entry, now)
            return entry.state

    async def add(self, key: str, state: S, ttl: float | None) -> S:
        return self.add_sync(key, state, ttl)

    def add_sync(self, key: str, state: S, ttl: float | None) -> S:
        now = self._clock()
        with self._mutex:
            entry = self._entries.get(key)
            if entry is not None and (entry.deadline is None or entry.deadline > now):
                self._touch(key, entry, now)
                existing: S = entry.state  # type: ignore[assignment]
                return existing
            self._insert(key, _Entry(state, ttl, now), now)
            return state

    async def save(self, key: str, state: ReactiveState, ttl: float | None) -> None:
        now = self._clock()
        set_stored_version(state, stored_version(state) + 1)
        with self._mutex:
            entry = self._entries.get(key)
            if entry is not None and entry.state is state:
                entry.ttl = ttl
                self._touch(key, entry, now)
            else:
                self._insert(key, _Entry(state, ttl, now), now)

    async def delete(self, key: str) -> None:
        with self._mutex:
            self._entries.pop(key, None)

    def lock(self, key: str) -> AbstractAsyncContextManager[Lease]:
        return self._locks.hold(key)

    def _touch(self, key: str, entry: _Entry, now: float) -> None:
        if entry.ttl is not None:
            entry.deadline = now + entry.ttl
        self._entries.move_to_end(key)

    def _insert(self, key: str, entry: _Entry, now: float) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        self._inserts_since_sweep += 1
        # A full sweep after as many inserts as half the table keeps the
        # cost per insert constant while no expired entry lingers for long.
        if self._inserts_since_sweep > max(1024, len(self._entries) // 2):
            self._sweep(now)
        while len(self._entries) > self.max_instances:
            self._entries.popitem(last=False)

    def _sweep(self, now: float) -> None:
        self._inserts_since_sweep = 0
        expired = [
            key
            for key, entry in self._entries.items()
            if entry.deadline is not None and entry.deadline <= now
        ]
        for key in expired:
            del self._entries[key]
