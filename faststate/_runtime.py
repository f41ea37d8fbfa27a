"""What every request of one middleware shares: store, broker, settings, open streams."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from itsdangerous import URLSafeTimedSerializer
from starlette.requests import HTTPConnection

from faststate._guards import SlowBodies
from faststate._live.broker import Broker
from faststate._live.fanout import Fanout
from faststate._live.presence import Presence
from faststate._observe import Observer
from faststate._protocol import Dialect
from faststate._scopes import SESSION_BOUND, StateConfig
from faststate._stores.base import StateStore

if TYPE_CHECKING:
    from faststate._persistence import SQLPersistence

UserKey = Callable[[HTTPConnection], "str | None"]


class Endable(Protocol):
    def end(self, shutdown: bool = False) -> None: ...


@dataclass
class OpenStreams:
    """The live streams open in this process: caps, and ending them all at shutdown."""

    max_streams: int
    max_per_session: int
    streams: set[Endable] = field(default_factory=set)
    by_session: dict[str, int] = field(default_factory=dict)
    shutting_down: bool = False

    def __len__(self) -> int:
        return len(self.streams)

    def full(self, session: str | None) -> bool:
        return len(self.streams) >= self.max_streams or (
            session is not None and self.by_session.get(session, 0) >= self.max_per_session
        )

    def add(self, stream: Endable, session: str | None) -> None:
        self.streams.add(stream)
        if session is not None:
            self.by_session[session] = self.by_session.get(session, 0) + 1
        if self.shutting_down:
            stream.end(shutdown=True)

    def discard(self, stream: Endable, session: str | None) -> None:
        if stream not in self.streams:
            return
        self.streams.discard(stream)
        if session is not None:
            left = self.by_session.get(session, 1) - 1
            if left > 0:
                self.by_session[session] = left
            else:
                self.by_session.pop(session, None)

    def end_all(self) -> None:
        """Shutdown: every open stream ends now, so the server need not wait for them."""
        self.shutting_down = True
        for stream in tuple(self.streams):
            stream.end(shutdown=True)


@dataclass
class Runtime:
    """What every request of one middleware shares."""

    store: StateStore
    persistence: SQLPersistence | None
    broker: Broker
    protocol: Dialect
    user_key: UserKey | None
    max_body_size: int
    #: Answers 408 to event requests whose body takes too long (a slow sender holds a connection).
    slow_bodies: SlowBodies
    #: The same for bodies of events with upload parameters, which may take far longer.
    slow_uploads: SlowBodies
    trusted_origins: frozenset[str]
    live_signer: URLSafeTimedSerializer
    live_max_age: int
    heartbeat: float
    streams: OpenStreams
    #: Who has a live page of a ``presence`` class open.
    presence: Presence
    #: Expiry of SESSION and COMPONENT instances registered without a ``ttl``: the
    #: session cookie's lifetime, after which nobody can reach them any more.
    session_ttl: float | None = None
    #: The ``on_event`` hooks; it decides per event whether to watch it.
    observer: Observer = field(default_factory=Observer)
    #: This process's live streams: the broker's changes reach them through it.
    fanout: Fanout = field(init=False)

    def __post_init__(self) -> None:
        self.fanout = Fanout(self.broker, self.heartbeat)

    def ttl_for(self, config: StateConfig) -> float | None:
        """How long an idle instance of a class registered with ``config`` is kept (seconds)."""
        if config.ttl is None and config.scope in SESSION_BOUND:
            return self.session_ttl
        return config.ttl
