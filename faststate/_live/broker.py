"""Brokers carry committed changes of an instance to every stream showing it.

A message is a wake-up, not the truth: a stream that misses one (a dropped
connection, a restarted worker, a full queue) notices by the version numbers
and reloads the instance's full state.  ``LocalBroker`` serves one process;
``RedisBroker`` (Redis pub/sub, in ``redis_broker``) reaches every worker.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from faststate._protocol import ElementPatch


@dataclass(frozen=True)
class Change:
    """What one committed event or mutation did to one instance."""

    key: str
    version: int
    patch: dict[str, Any]
    elements: tuple[ElementPatch, ...] = field(default=())
    #: Elements pushed at an already saved version (``push``), not a new change.
    replay: bool = False

    def to_json(self) -> str:
        return json.dumps(
            {
                "k": self.key,
                "v": self.version,
                "p": self.patch,
                "e": [[e.html, e.selector, e.mode] for e in self.elements],
                "r": self.replay,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Change:
        data = json.loads(text)
        elements = tuple(ElementPatch(html, selector, mode) for html, selector, mode in data["e"])
        return cls(data["k"], int(data["v"]), data["p"], elements, bool(data.get("r")))


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
    """Publish changes by instance key; deliver them to local subscribers."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscriber]] = {}

    async def subscribe(self, key: str, subscriber: Subscriber) -> None:
        self._subscribers.setdefault(key, set()).add(subscriber)

    async def unsubscribe(self, key: str, subscriber: Subscriber) -> None:
        subscribers = self._subscribers.get(key)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._subscribers[key]

    @abstractmethod
    async def publish(self, change: Change) -> None: ...

    async def publish_viewers(self, key: str) -> None:
        """Tell every process that the viewers of ``key`` changed (in process here)."""
        self._deliver(ViewersChanged(key))

    def reaches(self, key: str) -> bool:
        """Whether a change of ``key`` may have a subscriber anywhere."""
        return True

    def subscriber_count(self) -> int:
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
    """Delivers within this process only."""

    def reaches(self, key: str) -> bool:
        return key in self._subscribers

    async def publish(self, change: Change) -> None:
        self._deliver(change)
