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
from faststate._versions import first_version

DEFAULT_MAX_INSTANCES = 100_000


class _Entry:
    __slots__ = ("deadline", "protected", "state", "ttl")

    def __init__(self, state: ReactiveState, ttl: float | None, now: float) -> None:
        self.state = state
        self.ttl = ttl
        self.deadline = now + ttl if ttl is not None else None
        self.protected = False


class MemoryStore(StateStore):
    """Instances in this process's memory.

    Expiry slides: every load or save restarts an instance's ``ttl``.  At
    most ``max_instances`` are kept.  Eviction is a segmented LRU: a new
    instance is on probation until it is used again by a later load, which
    moves it to the protected segment; the least recently used instance on
    probation goes first.  So a flood of one-off instances (cookieless
    visitors, random record ids) only ever evicts other one-off instances,
    never the state of sessions that came back.  The protected segment holds
    at most four fifths of the cap; beyond that its least recently used
    instance goes back on probation.

    Args:
        max_instances: The most instances kept in the process.
        clock: A monotonic clock in seconds (tests pass a fake one).

    Raises:
        ValueError: ``max_instances`` is less than 1.
    """


    def __init__(
        self,
        max_instances: int = DEFAULT_MAX_INSTANCES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_instances < 1:
            raise ValueError("max_instances must be at least 1")
        self.max_instances = max_instances
        self.max_protected = max_instances - max(1, max_instances // 5)
        self._clock = clock
        self._probation: OrderedDict[str, _Entry] = OrderedDict()
        self._protected: OrderedDict[str, _Entry] = OrderedDict()
        self._mutex = threading.Lock()
        self._locks = KeyLocks()
        self._inserts_since_sweep = 0

    def __len__(self) -> int:
        return len(self._probation) + len(self._protected)

    def instance_count(self) -> int:
        """The instances held, counting expired ones not swept yet."""
        return len(self)

    async def load(self, key: str, cls: type[S]) -> S | None:
        return self.load_sync(key, cls)

    def load_sync(self, key: str, cls: type[S]) -> S | None:
        now = self._clock()
        with self._mutex:
            entry = self._find(key)
            if entry is None:
                return None
            if entry.deadline is not None and entry.deadline <= now:
                self._remove(key, entry)
                return None
            if not isinstance(entry.state, cls):
                return None
            if entry.protected:
                self._touch(key, entry, now)
            else:
                self._promote(key, entry, now)
            return entry.state

    async def add(self, key: str, state: S, ttl: float | None) -> S:
        return self.add_sync(key, state, ttl)

    def add_sync(self, key: str, state: S, ttl: float | None) -> S:
        now = self._clock()
        with self._mutex:
            entry = self._find(key)
            if entry is not None and (entry.deadline is None or entry.deadline > now):
                self._touch(key, entry, now)
                existing: S = entry.state  # type: ignore[assignment]
                return existing
            if not stored_version(state):
                set_stored_version(state, first_version())
            self._insert(key, _Entry(state, ttl, now), now)
            return state

    async def save(self, key: str, state: ReactiveState, ttl: float | None) -> None:
        now = self._clock()
        set_stored_version(state, stored_version(state) + 1)
        with self._mutex:
            entry = self._find(key)
            if entry is not None and entry.state is state:
                entry.ttl = ttl
                self._touch(key, entry, now)
            else:
                if entry is not None:
                    self._remove(key, entry)
                self._insert(key, _Entry(state, ttl, now), now)

    async def delete(self, key: str) -> None:
        with self._mutex:
            entry = self._find(key)
            if entry is not None:
                self._remove(key, entry)

    def lock(self, key: str) -> AbstractAsyncContextManager[Lease]:
        return self._locks.hold(key)

    def _find(self, key: str) -> _Entry | None:
        entry = self._protected.get(key)
        return entry if entry is not None else self._probation.get(key)

    def _segment(self, entry: _Entry) -> OrderedDict[str, _Entry]:
        return self._protected if entry.protected else self._probation

    def _remove(self, key: str, entry: _Entry) -> None:
        del self._segment(entry)[key]

    def _touch(self, key: str, entry: _Entry, now: float) -> None:
        if entry.ttl is not None:
            entry.deadline = now + entry.ttl
        (self._protected if entry.protected else self._probation).move_to_end(key)

    def _promote(self, key: str, entry: _Entry, now: float) -> None:
        del self._probation[key]
        entry.protected = True
        self._protected[key] = entry
        if entry.ttl is not None:
            entry.deadline = now + entry.ttl
        while len(self._protected) > self.max_protected:
            demoted_key, demoted = self._protected.popitem(last=False)
            demoted.protected = False
            self._probation[demoted_key] = demoted

    def _insert(self, key: str, entry: _Entry, now: float) -> None:
        self._probation[key] = entry
        self._inserts_since_sweep += 1
        # A full sweep after as many inserts as half the table keeps the
        # cost per insert constant while no expired entry lingers for long.
        if self._inserts_since_sweep > max(1024, len(self) // 2):
            self._sweep(now)
        while len(self) > self.max_instances:
            (self._probation or self._protected).popitem(last=False)

    def _sweep(self, now: float) -> None:
        self._inserts_since_sweep = 0
        for segment in (self._probation, self._protected):
            expired = [
                key
                for key, entry in segment.items()
                if entry.deadline is not None and entry.deadline <= now
            ]
            for key in expired:
                del segment[key]
