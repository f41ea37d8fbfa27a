"""Presence: who has a live page of an instance open right now.

Only classes registered with ``presence=True`` take part.  Each live stream
of such a class takes a ``Seat`` per instance when it opens and gives it back
when it ends.  A viewer is one session: several tabs of it count once.

The seats are kept in a ``ViewerTable`` chosen by the store: in process for
``MemoryStore``, a Redis sorted set per instance for ``RedisStore`` (scores
are expiry times, so the seats of a killed worker fall out by themselves).
One keeper task per process refreshes its own seats every heartbeat and
re-reads the lists that a join or a leave (a ``ViewersChanged`` notice from
any process) or the heartbeat made due, then hands each page its new list.
Reads are per process, not per page, so a join costs one read per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from faststate._live.broker import Broker, Change, Subscriber, ViewersChanged

logger = logging.getLogger("faststate")

#: The label of a viewer who is not logged in.
GUEST: Final = "guest"


@dataclass(frozen=True, slots=True)
class Seat:
    """One page's place among the viewers of one instance."""

    key: str
    #: Who views: the session id (or the page's own id when it has no session).
    viewer: str
    #: What the other pages show: the user id, or ``"guest"``.
    label: str
    #: This page, so that two tabs of one session leave one at a time.
    page: str


def labels_of(seats: Iterable[tuple[str, str]]) -> list[str]:
    """One label per viewer, sorted: ``(viewer, label)`` pairs of several tabs count once."""
    by_viewer: dict[str, set[str]] = {}
    for viewer, label in seats:
        by_viewer.setdefault(viewer, set()).add(label)
    # A session whose tabs disagree (one opened before logging in) shows its name.
    return sorted(min(labels - {GUEST}, default=GUEST) for labels in by_viewer.values())


class ViewerTable(ABC):
    """Where the seats of every process are kept."""

    @abstractmethod
    async def add(self, seat: Seat, ttl: float) -> None: ...

    @abstractmethod
    async def remove(self, seat: Seat) -> None: ...

    @abstractmethod
    async def refresh(self, seats: Collection[Seat], ttl: float) -> None:
        """Keep this process's seats alive for another ``ttl`` seconds."""

    @abstractmethod
    async def read(self, keys: Collection[str]) -> dict[str, list[str]]:
        """The viewers of each key (``labels_of``), dropping expired seats."""

    @abstractmethod
    def read_sync(self, key: str) -> list[str]: ...


class LocalViewers(ViewerTable):
    """Seats of this process only: a stream that ends always gives its seat back."""

    def __init__(self) -> None:
        self._seats: dict[str, dict[str, tuple[str, str]]] = {}

    async def add(self, seat: Seat, ttl: float) -> None:
        self._seats.setdefault(seat.key, {})[seat.page] = (seat.viewer, seat.label)

    async def remove(self, seat: Seat) -> None:
        seats = self._seats.get(seat.key)
        if seats is not None:
            seats.pop(seat.page, None)
            if not seats:
                del self._seats[seat.key]

    async def refresh(self, seats: Collection[Seat], ttl: float) -> None:
        pass  # nothing expires in process

    async def read(self, keys: Collection[str]) -> dict[str, list[str]]:
        return {key: self.read_sync(key) for key in keys}

    def read_sync(self, key: str) -> list[str]:
        return labels_of(self._seats.get(key, {}).values())


class Page(Protocol):
    """A live stream, as presence sees it."""

    def show_viewers(self, key: str, labels: list[str]) -> None:
        """Send ``labels`` to the page soon; never blocks."""


class Presence:
    """The seats of this process's pages, kept alive and turned into viewer lists."""

    def __init__(self, table: ViewerTable, broker: Broker, heartbeat: float) -> None:
        self.table = table
        self.broker = broker
        self.heartbeat = heartbeat
        self._pages: dict[str, dict[Page, Seat]] = {}
        self._listeners: dict[str, Subscriber] = {}
        self._shown: dict[str, list[str]] = {}
        self._due: set[str] = set()
        #: (page, key) pairs that have had no list yet: they get one even if it is unchanged.
        self._fresh: set[tuple[Page, str]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None

    @property
    def ttl(self) -> float:
        # Refreshed every heartbeat: one late refresh does not drop a live seat.
        return 2 * self.heartbeat

    async def join(self, page: Page, seats: Sequence[Seat]) -> None:
        """Seat ``page``; every page of these instances, in every process, learns of it."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # an app served again by a new loop (tests do that)
            self._loop, self._wake, self._keeper = loop, asyncio.Event(), None
        for seat in seats:
            first = seat.key not in self._pages
            self._pages.setdefault(seat.key, {})[page] = seat
            self._fresh.add((page, seat.key))
            if first:
                listener = functools.partial(self._heard, seat.key)
                self._listeners[seat.key] = listener
                await self.broker.subscribe(seat.key, listener)
        try:
            for seat in seats:
                await self.table.add(seat, self.ttl)
            for seat in seats:
                await self.broker.publish_viewers(seat.key)
        except Exception as exc:  # presence must never cost a page its stream
            logger.warning("faststate: could not record viewers: %s", exc)
        self._make_due(seat.key for seat in seats)
        if self._keeper is None or self._keeper.done():
            self._keeper = loop.create_task(self._keep(), name="faststate-presence")

    async def leave(self, page: Page) -> None:
        """Give back every seat of ``page`` (an ended stream)."""
        left: list[Seat] = []
        for key in tuple(self._pages):
            pages = self._pages[key]
            seat = pages.pop(page, None)
            if seat is None:
                continue
            left.append(seat)
            self._fresh.discard((page, key))
            if not pages:
                del self._pages[key]
                self._shown.pop(key, None)
                self._due.discard(key)
                await self.broker.unsubscribe(key, self._listeners.pop(key))
        try:
            for seat in left:
                await self.table.remove(seat)
            for seat in left:
                await self.broker.publish_viewers(seat.key)
        except Exception as exc:  # the seat expires by itself
            logger.warning("faststate: could not remove a viewer: %s", exc)

    def _heard(self, key: str, message: Change | ViewersChanged | None) -> None:
        # None: the broker may have lost notices, so read again.
        if message is None or isinstance(message, ViewersChanged):
            self._make_due((key,))

    def _make_due(self, keys: Iterable[str]) -> None:
        self._due.update(keys)
        self._wake.set()

    async def _keep(self) -> None:
        """While this process has seated pages: refresh, re-read, hand out lists."""
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + self.heartbeat
        while self._pages:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(next_beat):
                    await self._wake.wait()
            self._wake.clear()
            try:
                if loop.time() >= next_beat:
                    next_beat = loop.time() + self.heartbeat
                    seats = [s for pages in self._pages.values() for s in pages.values()]
                    await self.table.refresh(seats, self.ttl)
                    # Another worker's seats may have expired: nobody announces that.
                    self._due.update(self._pages)
                await self._read_due()
            except Exception as exc:
                logger.warning("faststate: presence update failed: %s", exc)

    async def _read_due(self) -> None:
        keys = self._due & self._pages.keys()
        self._due.clear()
        if not keys:
            return
        try:
            lists = await self.table.read(keys)
        except Exception:
            self._due.update(keys)  # again at the next heartbeat
            raise
        for key, labels in lists.items():
            changed = self._shown.get(key) != labels
            self._shown[key] = labels
            for page in tuple(self._pages.get(key, ())):
                if changed or (page, key) in self._fresh:
                    self._fresh.discard((page, key))
                    page.show_viewers(key, labels)

    async def aclose(self) -> None:
        if self._keeper is not None and self._loop is asyncio.get_running_loop():
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
