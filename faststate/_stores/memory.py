"""In-process store: live instances in an LRU table with expiry and a cap."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Final

from faststate._state import (
    DEADLINE_SLOT,
    KEY_SLOT,
    NEWER_SLOT,
    OLDER_SLOT,
    TTL_SLOT,
    ReactiveState,
    set_stored_version,
    stored_version,
)
from faststate._stores.base import Lease, S, StateStore
from faststate._stores.locks import KeyLocks
from faststate._versions import first_version

DEFAULT_MAX_INSTANCES = 100_000

_get_key: Final = KEY_SLOT.__get__
_set_key: Final = KEY_SLOT.__set__
_get_ttl: Final = TTL_SLOT.__get__
_set_ttl: Final = TTL_SLOT.__set__
_get_deadline: Final = DEADLINE_SLOT.__get__
_set_deadline: Final = DEADLINE_SLOT.__set__
_get_older: Final = OLDER_SLOT.__get__
_set_older: Final = OLDER_SLOT.__set__
_get_newer: Final = NEWER_SLOT.__get__
_set_newer: Final = NEWER_SLOT.__set__


def _slide(state: ReactiveState, now: float) -> None:
    """Restart the instance's ttl (expiry slides with every use)."""
    ttl: float | None = _get_ttl(state)
    if ttl is not None:
        _set_deadline(state, now + ttl)


def _has_expired(state: ReactiveState, now: float) -> bool:
    deadline: float | None = _get_deadline(state)
    return deadline is not None and deadline <= now


class _Segment:
    """Instances by key, in the order of their use: a doubly linked list
    threaded through the instances' own slots, oldest first.

    The list lives in the instances rather than in an ``OrderedDict`` of
    entries because an idle session's memory is mostly bookkeeping: an entry
    object and an ordered-dict node cost 117 bytes per instance, two slots 16.
    """

    __slots__ = ("by_key", "newest", "oldest")

    def __init__(self) -> None:
        self.by_key: dict[str, ReactiveState] = {}
        self.oldest: ReactiveState | None = None
        self.newest: ReactiveState | None = None

    def __len__(self) -> int:
        return len(self.by_key)

    def append(self, key: str, state: ReactiveState) -> None:
        """Add ``state`` under ``key`` as the most recently used."""
        self.by_key[key] = state
        self._link_newest(state)

    def remove(self, key: str, state: ReactiveState) -> None:
        del self.by_key[key]
        self._unlink(state)
        # A removed instance may live on in a request; it must not keep its
        # former neighbours alive.
        _set_older(state, None)
        _set_newer(state, None)

    def use(self, state: ReactiveState) -> None:
        """Make ``state``, not the newest, the most recently used."""
        self._unlink(state)
        self._link_newest(state)

    def oldest_entry(self) -> tuple[str, ReactiveState]:
        oldest = self.oldest
        assert oldest is not None, "an empty segment has no oldest instance"
        return _get_key(oldest), oldest

    def _link_newest(self, state: ReactiveState) -> None:
        newest = self.newest
        _set_older(state, newest)
        _set_newer(state, None)
        if newest is None:
            self.oldest = state
        else:
            _set_newer(newest, state)
        self.newest = state

    def _unlink(self, state: ReactiveState) -> None:
        older: ReactiveState | None = _get_older(state)
        newer: ReactiveState | None = _get_newer(state)
        if older is None:
            self.oldest = newer
        else:
            _set_newer(older, newer)
        if newer is None:
            self.newest = older
        else:
            _set_older(newer, older)


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

    An instance is held under one key: adding it under another moves it.

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
        self._probation = _Segment()
        self._protected = _Segment()
        self._mutex = threading.Lock()
        self._locks = KeyLocks()
        self._inserts_since_sweep = 0
        # New instances share one first version (one int, not one each)
        # until an instance leaves the store: only then could a key get a
        # new copy, and a new copy must not share its predecessor's
        # incarnation, or a page of the old one would take it for a later save.
        self._first_version = 0

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
            protected = self._protected
            state = protected.by_key.get(key)
            if state is not None:
                # The path of nearly every event, written out (``_has_expired``,
                # ``_touch``): a call each is a good part of its cost.
                deadline: float | None = _get_deadline(state)
                if deadline is not None and deadline <= now:
                    self._remove(protected, key, state)
                    return None
                if not isinstance(state, cls):
                    return None
                ttl: float | None = _get_ttl(state)
                if ttl is not None:
                    _set_deadline(state, now + ttl)
                if state is not protected.newest:
                    protected.use(state)
                return state
            state = self._probation.by_key.get(key)
            if state is None:
                return None
            if _has_expired(state, now):
                self._remove(self._probation, key, state)
                return None
            if not isinstance(state, cls):
                return None
            self._promote(key, state, now)
            return state

    async def add(self, key: str, state: S, ttl: float | None) -> S:
        return self.add_sync(key, state, ttl)

    def add_sync(self, key: str, state: S, ttl: float | None) -> S:
        now = self._clock()
        with self._mutex:
            segment, existing = self._find(key)
            if existing is not None:
                if not _has_expired(existing, now):
                    self._touch(segment, existing, now)
                    return existing  # type: ignore[return-value]
                self._remove(segment, key, existing)
            if not stored_version(state):
                if not self._first_version:
                    self._first_version = first_version()
                set_stored_version(state, self._first_version)
            self._insert(key, state, ttl, now)
            return state

    async def save(self, key: str, state: ReactiveState, ttl: float | None) -> None:
        now = self._clock()
        set_stored_version(state, stored_version(state) + 1)
        with self._mutex:
            segment, existing = self._find(key)
            if existing is state:
                _set_ttl(state, ttl)
                self._touch(segment, state, now)
                return
            if existing is not None:
                self._remove(segment, key, existing)
            self._insert(key, state, ttl, now)

    async def delete(self, key: str) -> None:
        with self._mutex:
            segment, existing = self._find(key)
            if existing is not None:
                self._remove(segment, key, existing)

    def lock(self, key: str) -> AbstractAsyncContextManager[Lease]:
        return self._locks.hold(key)

    def _find(self, key: str) -> tuple[_Segment, ReactiveState | None]:
        state = self._protected.by_key.get(key)
        if state is not None:
            return self._protected, state
        return self._probation, self._probation.by_key.get(key)

    def _remove(self, segment: _Segment, key: str, state: ReactiveState) -> None:
        segment.remove(key, state)
        self._first_version = 0

    @staticmethod
    def _touch(segment: _Segment, state: ReactiveState, now: float) -> None:
        _slide(state, now)
        if state is not segment.newest:
            segment.use(state)

    def _promote(self, key: str, state: ReactiveState, now: float) -> None:
        self._probation.remove(key, state)
        self._protected.append(key, state)
        _slide(state, now)
        while len(self._protected) > self.max_protected:
            demoted_key, demoted = self._protected.oldest_entry()
            self._protected.remove(demoted_key, demoted)
            self._probation.append(demoted_key, demoted)

    def _insert(self, key: str, state: ReactiveState, ttl: float | None, now: float) -> None:
        self._release(state)
        _set_key(state, key)
        _set_ttl(state, ttl)
        _set_deadline(state, None if ttl is None else now + ttl)
        self._probation.append(key, state)
        self._inserts_since_sweep += 1
        # A full sweep after as many inserts as half the table keeps the
        # cost per insert constant while no expired entry lingers for long.
        if self._inserts_since_sweep > max(1024, len(self) // 2):
            self._sweep(now)
        while len(self) > self.max_instances:
            segment = self._probation if self._probation else self._protected
            self._remove(segment, *segment.oldest_entry())

    def _release(self, state: ReactiveState) -> None:
        """Take ``state`` out of the key it is held under, if this store holds it
        (a session's instance handed to its new key at login)."""
        try:
            held_under: str = _get_key(state)
        except AttributeError:
            return
        segment, held = self._find(held_under)
        if held is state:
            self._remove(segment, held_under, state)

    def _sweep(self, now: float) -> None:
        self._inserts_since_sweep = 0
        for segment in (self._probation, self._protected):
            expired = [
                (key, state)
                for key, state in segment.by_key.items()
                if _has_expired(state, now)
            ]
            for key, state in expired:
                self._remove(segment, key, state)
