"""Fan-out: each change of an instance, formatted once, to every live stream of this
process that shows it, off the publisher's path.

Streams join the runtime's ``Fanout`` rather than the broker: it subscribes
to the broker once per instance key, so publishing (an event's commit, a
``mutate``, the Redis reader) only appends the message to an outbox and
returns.  One delivery task takes the messages in the order they were
published and hands each to every stream of its key, wrapped in one
``Outgoing`` whose SSE text is formatted once and shared; each stream adds
its own ``id:`` line.  One heartbeat timer serves every stream.

Memory stays bounded: each stream's inbox is capped (a full one is dropped
and the page resynchronised), and an outbox that grows past ``OUTBOX_SIZE``
(publishers that never yield) is folded into one "you may have missed some"
notice per instance, which makes its streams catch up from the replay log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from typing import Final, Protocol

from faststate._live.broker import Broker, Change, ViewersChanged
from faststate._protocol import Dialect, event_id_template

#: Messages waiting for the delivery task before they are folded into resyncs.
OUTBOX_SIZE: Final = 10_000
#: Texts with distinct ids kept per change and namespace (streams watching
#: several instances have ids of their own; most share one).
_TEXTS_KEPT: Final = 32


class Outgoing:
    """One change on its way to many streams: its events formatted once per
    dialect and namespace, and the finished bytes once per event id."""

    __slots__ = ("_templates", "change")

    def __init__(self, change: Change) -> None:
        self.change = change
        self._templates: dict[tuple[str, str], tuple[list[bytes], dict[str, bytes]]] = {}

    def text(self, dialect: Dialect, namespace: str, event_id: str) -> bytes:
        """The change's element and signal patches for one page.

        Args:
            dialect: The page's Datastar dialect.
            namespace: The instance's namespace on the page.
            event_id: The page's SSE id once it has this change (its versions).

        Returns:
            The SSE events, each carrying ``event_id``; empty when there is
            nothing to show.
        """
        found = self._templates.get((dialect.name, namespace))
        if found is None:
            change = self.change
            events = [dialect.patch_elements(e.html, e.selector, e.mode) for e in change.elements]
            if change.patch:
                events.append(dialect.patch_signals({namespace: change.patch}))
            found = self._templates[(dialect.name, namespace)] = (
                event_id_template(events),
                {},
            )
        pieces, texts = found
        text = texts.get(event_id)
        if text is None:
            text = (b"\nid: " + event_id.encode()).join(pieces)
            if len(texts) < _TEXTS_KEPT:
                texts[event_id] = text
        return text


class Receiver(Protocol):
    """A live stream, as the fan-out sees it; neither method blocks."""

    def deliver(self, item: Outgoing | None) -> None:
        """The next change of a watched instance, or None: "you may have missed some"."""

    def tick(self) -> None:
        """One beat of the heartbeat timer (twice per heartbeat)."""


class _Topic:
    """The streams of this process showing one instance."""

    __slots__ = ("fanout", "key", "ready", "streams")

    def __init__(self, fanout: Fanout, key: str, ready: asyncio.Future[None]) -> None:
        self.fanout = fanout
        self.key = key
        self.streams: set[Receiver] = set()
        #: Done once the broker confirmed the subscription.
        self.ready = ready

    def __call__(self, message: Change | ViewersChanged | None) -> None:
        """The broker's subscriber: only queues, whatever the number of streams."""
        if not isinstance(message, ViewersChanged):  # presence reads those itself
            self.fanout.post(self, message)


class Fanout:
    """The live streams of one runtime: broker subscriptions, delivery, heartbeat."""

    def __init__(
        self, broker: Broker, heartbeat: float, *, outbox_size: int = OUTBOX_SIZE
    ) -> None:
        self.broker = broker
        self.heartbeat = heartbeat
        self.outbox_size = outbox_size
        self._topics: dict[str, _Topic] = {}
        self._streams: set[Receiver] = set()
        self._outbox: deque[tuple[_Topic, Change | None]] = deque()
        self._waiting: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._delivery: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None

    async def join(self, stream: Receiver, keys: Sequence[str]) -> None:
        """Deliver the changes of ``keys`` to ``stream`` from now on, and beat its heartbeat.

        Returns once the broker confirmed each subscription, so the stream
        may load what it shows after it.

        Args:
            stream: The live stream.
            keys: The instance keys it shows.
        """
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # an app served again by a new loop (tests do that)
            self._loop, self._waiting, self._delivery, self._timer = loop, None, None, None
            self._topics = {k: t for k, t in self._topics.items() if t.ready.done()}
        self._streams.add(stream)
        self._start(loop)
        for key in keys:
            topic = self._topics.get(key)
            if topic is None:
                topic = self._topics[key] = _Topic(self, key, loop.create_future())
                topic.streams.add(stream)
                try:
                    await self.broker.subscribe(key, topic)
                finally:
                    topic.ready.set_result(None)
            else:
                topic.streams.add(stream)
                if not topic.ready.done():
                    await asyncio.shield(topic.ready)

    async def leave(self, stream: Receiver, keys: Sequence[str]) -> None:
        """Stop delivering to ``stream``; the last stream of a key unsubscribes it.

        Args:
            stream: As given to ``join``.
            keys: As given to ``join``.
        """
        self._streams.discard(stream)
        for key in keys:
            topic = self._topics.get(key)
            if topic is None or stream not in topic.streams:
                continue
            topic.streams.discard(stream)
            if not topic.streams:
                del self._topics[key]
                if not topic.ready.done():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(topic.ready)
                await self.broker.unsubscribe(key, topic)

    def post(self, topic: _Topic, message: Change | None) -> None:
        """Queue a message for the streams of ``topic``; the delivery task hands it on.

        Args:
            topic: The streams of one instance.
            message: Its next change, or None: "you may have missed some".
        """
        outbox = self._outbox
        if len(outbox) >= self.outbox_size:
            # Publishers outran delivery: each instance's streams catch up instead.
            topics = dict.fromkeys(t for t, _ in outbox)
            outbox.clear()
            outbox.extend((t, None) for t in topics)
        outbox.append((topic, message))
        waiting = self._waiting
        if waiting is not None and not waiting.done():
            waiting.set_result(None)
        if self._loop is not None and (self._delivery is None or self._delivery.done()):
            self._start(self._loop)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._delivery is None or self._delivery.done():
            self._delivery = loop.create_task(self._deliver(), name="faststate-fanout")
        if self._timer is None or self._timer.done():
            self._timer = loop.create_task(self._beat(), name="faststate-heartbeat")

    async def _deliver(self) -> None:
        """Hand each message, in order, to every stream of its key."""
        loop = asyncio.get_running_loop()
        outbox = self._outbox
        while True:
            if not outbox:
                if not self._topics:
                    return  # started again by the next join
                self._waiting = loop.create_future()
                await self._waiting
                continue
            topic, message = outbox.popleft()
            item = Outgoing(message) if message is not None else None
            for stream in tuple(topic.streams):
                stream.deliver(item)
            if outbox:
                await asyncio.sleep(0)  # let the streams write between two changes

    async def _beat(self) -> None:
        """Twice per heartbeat, every stream counts one beat (it writes a comment
        when a whole heartbeat passed without writing anything)."""
        while self._streams:
            await asyncio.sleep(self.heartbeat / 2)
            for stream in tuple(self._streams):
                stream.tick()

    def stream_count(self) -> int:
        """How many streams of this process receive changes."""
        return len(self._streams)

    async def aclose(self) -> None:
        """Stop the tasks (shutdown); streams that are left end by themselves."""
        for task in (self._delivery, self._timer):
            if task is not None and self._loop is asyncio.get_running_loop():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
