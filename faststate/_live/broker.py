"""Brokers carry committed changes of an instance to every stream showing it.

Every commit of a watched instance is published, even one that changed
nothing, so that versions reach pages without gaps.  Each broker keeps a
short log of recent changes per instance (``replay``): a stream that missed
some (a reconnect, a lost message) sends the page what it missed, elements
included, and reloads the instance's full state only when the log no longer
reaches back far enough.  ``LocalBroker`` serves one process; ``RedisBroker``
(Redis pub/sub and a capped Redis Stream per instance) reaches every worker.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from faststate._protocol import ElementPatch, dump_json
from faststate._versions import same_incarnation

#: Changes kept per instance for pages that reconnect or missed a message.
REPLAY_SIZE: Final = 64
#: How long after its last page left an instance's changes are still kept.
REPLAY_WINDOW: Final = 60.0


@dataclass(frozen=True)
class Change:
    """What one committed event or mutation did to one instance."""

    key: str
    version: int
    patch: dict[str, Any]
    elements: tuple[ElementPatch, ...] = field(default=())
    #: Elements pushed at an already saved version (``push``), not a new change.
    replay: bool = False
    #: The page whose event made the change: it has it from the event's answer.
    origin: str | None = None

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "k": self.key,
            "v": self.version,
            "p": self.patch,
            "e": [[e.html, e.selector, e.mode] for e in self.elements],
            "r": self.replay,
        }
        if self.origin is not None:
            data["o"] = self.origin
        return dump_json(data)

    @classmethod
    def from_json(cls, text: str | bytes) -> Change:
        data = json.loads(text)
        elements = tuple(ElementPatch(html, selector, mode) for html, selector, mode in data["e"])
        origin = data.get("o")
        return cls(
            data["k"],
            int(data["v"]),
            data["p"],
            elements,
            bool(data.get("r")),
            origin if isinstance(origin, str) else None,
        )


def missed(log: Iterable[Change], after: int) -> list[Change] | None:
    """The logged changes a page at version ``after`` has not seen, in order, or None
    when the log does not hold every one of them (trimmed, or another incarnation).

    Pushed elements at the version the page has may or may not have been shown;
    they are left out rather than shown twice.
    """
    changes: list[Change] = []
    expected = after + 1
    for change in log:
        if change.version <= after or not same_incarnation(change.version, after):
            continue
        if change.replay:
            if change.version < expected:  # pushed at a version the page will have
                changes.append(change)
            continue
        if change.version != expected:
            return None
        changes.append(change)
        expected += 1
    if changes and changes[0].replay is False and changes[0].version != after + 1:
        return None
    return changes


@dataclass(frozen=True)
class ViewersChanged:
    """A live page of ``key`` opened or closed somewhere (presence).

    Not a change of the instance: it has no version, and streams ignore it;
    each process's presence registry re-reads the viewers when it arrives.
    """

    key: str

    def to_json(self) -> str:
        return _VIEWERS_CHANGED + json.dumps(self.key) + "}"


# Checked by prefix, so a change is still parsed once: change JSON starts with '{"k":'.
_VIEWERS_CHANGED = '{"viewers":'


def message_from_json(text: str | bytes) -> Change | ViewersChanged:
    """A published message: a ``Change``, or a ``ViewersChanged`` notice."""
    raw = text.decode() if isinstance(text, bytes) else text
    if raw.startswith(_VIEWERS_CHANGED):
        return ViewersChanged(str(json.loads(raw)["viewers"]))
    return Change.from_json(raw)


Subscriber = Callable[[Change | ViewersChanged | None], None]
"""Called with each message of a subscribed key; ``None`` means "you may have missed some"."""


class Broker(ABC):
    """Publish changes by instance key; deliver them to local subscribers.

    The base of ``LocalBroker`` (one process) and ``RedisBroker`` (every
    worker, through Redis pub/sub).  Give one to the middleware as
    ``broker=``; by default the store picks it.
    """

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscriber]] = {}

    async def subscribe(self, key: str, subscriber: Subscriber) -> None:
        """Deliver the messages of ``key`` to ``subscriber`` from now on.

        Args:
            key: The instance key.
            subscriber: Called with each change, or ``None`` when some may
                have been missed.
        """
        self._subscribers.setdefault(key, set()).add(subscriber)

    async def unsubscribe(self, key: str, subscriber: Subscriber) -> None:
        """Stop delivering the messages of ``key`` to ``subscriber``.

        Args:
            key: The instance key.
            subscriber: As given to ``subscribe``.
        """
        subscribers = self._subscribers.get(key)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._subscribers[key]

    @abstractmethod
    async def publish(self, change: Change) -> None:
        """Send one committed change to every subscriber of its key.

        Args:
            change: The change: key, version, signal patch and element patches.
        """

    async def publish_many(self, changes: list[Change]) -> None:
        """Publish the changes of one transaction, in order (a broker that can,
        in one round trip)."""
        for change in changes:
            await self.publish(change)

    async def publish_viewers(self, key: str) -> None:
        """Tell every process that the viewers of ``key`` changed (in process here).

        Args:
            key: The instance key.
        """
        self._deliver(ViewersChanged(key))

    def reaches(self, key: str) -> bool:
        """Whether a change of ``key`` may have a subscriber anywhere, now or soon
        (a page reconnecting within the replay window).

        Args:
            key: The instance key.
        """
        return True

    async def replay(self, key: str, after: int) -> list[Change] | None:
        """The changes of ``key`` after version ``after`` still in the log, in
        order, or None if some are no longer there.

        Args:
            key: The instance key.
            after: The last version the page has.
        """
        return None

    def subscriber_count(self) -> int:
        """How many subscriptions this process holds."""
        return sum(len(s) for s in self._subscribers.values())

    def _deliver(self, change: Change | ViewersChanged) -> None:
        # Subscribers only enqueue; a slow page never delays a publisher.
        for subscriber in tuple(self._subscribers.get(change.key, ())):
            subscriber(change)

    def _warn_all(self) -> None:
        for subscribers in tuple(self._subscribers.values()):
            for subscriber in tuple(subscribers):
                subscriber(None)

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the local broker holds none."""


class LocalBroker(Broker):
    """Delivers within this process only; logs the changes of watched instances.

    An instance's log lives while a page watches it and ``replay_window``
    seconds after the last one left, at most ``replay_size`` changes long.

    Args:
        replay_size: Changes kept per watched instance for pages that
            reconnect (0: no log; they resync).
        replay_window: Seconds a log outlives the last page watching it.
    """


    def __init__(
        self, *, replay_size: int = REPLAY_SIZE, replay_window: float = REPLAY_WINDOW
    ) -> None:
        super().__init__()
        self.replay_size = replay_size
        self.replay_window = replay_window
        self._logs: dict[str, deque[Change]] = {}
        #: Keys nobody watches any more, with when their log goes (oldest first).
        self._leaving: OrderedDict[str, float] = OrderedDict()

    async def subscribe(self, key: str, subscriber: Subscriber) -> None:
        await super().subscribe(key, subscriber)
        self._leaving.pop(key, None)
        self._forget_expired()

    async def unsubscribe(self, key: str, subscriber: Subscriber) -> None:
        await super().unsubscribe(key, subscriber)
        if key not in self._subscribers and key in self._logs:
            self._leaving[key] = time.monotonic() + self.replay_window
        self._forget_expired()

    def reaches(self, key: str) -> bool:
        return key in self._subscribers or key in self._leaving

    async def publish(self, change: Change) -> None:
        if self.replay_size > 0:
            log = self._logs.get(change.key)
            if log is None:
                log = self._logs[change.key] = deque(maxlen=self.replay_size)
            log.append(change)
        self._deliver(change)

    async def replay(self, key: str, after: int) -> list[Change] | None:
        log = self._logs.get(key)
        return missed(log, after) if log is not None else None

    def _forget_expired(self) -> None:
        now = time.monotonic()
        while self._leaving:
            key, until = next(iter(self._leaving.items()))
            if until > now:
                return
            del self._leaving[key]
            self._logs.pop(key, None)
