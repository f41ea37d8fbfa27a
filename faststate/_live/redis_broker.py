"""Redis pub/sub broker: changes reach the streams of every worker.

Each change of a watched instance is also added to a capped Redis Stream per
instance (the replay log), in the same script as its publication, so a page
on any worker can be sent what it missed.  An instance is watched while its
``watch`` key exists: every broker with a page of the instance sets it on
subscribing and refreshes it while the page is open, and it expires
``replay_window`` seconds after the last refresh; changes of unwatched
instances are neither logged nor published.  On a Redis Cluster the broker
uses sharded pub/sub, one connection per node that owns a watched instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.exceptions import AskError, MovedError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from faststate._live.broker import (
    REPLAY_SIZE,
    REPLAY_WINDOW,
    Broker,
    Change,
    Subscriber,
    ViewersChanged,
    message_from_json,
    missed,
)
from faststate._redis import (
    PUBLISH_LUA,
    Publication,
    RedisKeys,
    Router,
    Server,
    bounded,
    script_sha,
)

logger = logging.getLogger("faststate")

# KEYS: log, watch; ARGV: the publication (PUBLISH_LUA).
_PUBLISH = PUBLISH_LUA + "return publish(1, 1)\n"
_PUBLISH_SHA = script_sha(_PUBLISH)


class _Feed:
    """One subscription connection (to the server, or to one node of a cluster)."""

    __slots__ = ("client", "name", "pubsub", "reader")

    def __init__(self, name: str, client: Any) -> None:
        self.name = name
        self.client = client
        self.pubsub: Any = client.pubsub()
        self.reader: asyncio.Task[None] | None = None


class RedisBroker(Broker):
    """Redis pub/sub: one channel per instance key, one connection per process
    (per node of a cluster, with sharded pub/sub).

    Every delivery, this worker's own included, goes through Redis, so all
    pages see changes in the order Redis does.  A subscription counts once
    Redis confirmed it: a stream loads the instance only after that, so no
    change falls between its load and its first message.  When the
    subscription connection drops, every stream is told to resynchronise.

    The replay log of an instance keeps about ``replay_size`` changes and
    expires ``replay_window`` seconds after its last change.

    Publishing uses at most ``max_connections`` connections (the subscription
    takes one of them); beyond that a publish queues for up to
    ``pool_timeout`` seconds instead of failing.  ``socket_timeout`` bounds
    each round trip, so a publish to a stalled Redis cannot hold an event.

    A ``RedisStore`` gives the middleware one on its own URL; build one
    yourself only to use Redis for live pages with another store.

    Args:
        url: The Redis URL (``redis+cluster://`` for a Redis Cluster).
        prefix: Put before every channel and key name (no braces).
        cluster: True for a Redis Cluster (default: as the URL says).
        max_connections: Connections per process (per node of a cluster)
            for publishing.
        pool_timeout: Seconds a publish waits for a free connection.
        socket_timeout: Seconds Redis may take to answer one round trip.
        replay_size: About how many changes the replay log of an instance keeps.
        replay_window: Seconds the log lives after its last change, and
            after the last page watching the instance left.
    """


    def __init__(
        self,
        url: str,
        *,
        prefix: str = "faststate:",
        cluster: bool | None = None,
        max_connections: int = 50,
        pool_timeout: float = 5.0,
        socket_timeout: float = 5.0,
        replay_size: int = REPLAY_SIZE,
        replay_window: float = REPLAY_WINDOW,
    ) -> None:
        super().__init__()
        self.server = Server.of(url, cluster)
        self.url = url
        self.prefix = prefix
        self.keys = RedisKeys(prefix)
        self.replay_size = replay_size
        self.replay_window = replay_window
        self.socket_timeout = socket_timeout
        self.max_connections = max_connections
        self._router = Router(
            self.server,
            max_connections=max_connections,
            pool_timeout=pool_timeout,
            connect_timeout=socket_timeout,
        )
        self._command = "SPUBLISH" if self.server.cluster else "PUBLISH"
        self._feeds: dict[str, _Feed] = {}
        #: Per subscribed key: the feed it is subscribed on.
        self._feed_of: dict[str, _Feed] = {}
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        #: Per subscribed channel: set once Redis confirmed the subscription.
        self._confirmed: dict[str, asyncio.Event] = {}

    def _channel(self, key: str) -> str:
        return self.keys.channel(key)

    def _log(self, key: str) -> str:
        return self.keys.log(key)

    def shares(self, server: Server, keys: RedisKeys) -> bool:
        """Whether a store on ``server`` with ``keys`` may publish this broker's changes
        in its own scripts (same Redis, same key names)."""
        return server == self.server and keys.prefix == self.keys.prefix

    def publication(self, change: Change) -> Publication:
        """The publication of ``change`` as the store's save script makes it."""
        return Publication(
            change.to_json(),
            self._channel(change.key),
            max(0, self.replay_size),
            int(self.replay_window * 1000),
            self._command,
        )

    async def subscribe(self, key: str, subscriber: Subscriber) -> None:
        first = key not in self._subscribers
        await super().subscribe(key, subscriber)
        channel = self._channel(key)
        if first:
            confirmed = self._confirmed[channel] = asyncio.Event()
            try:
                # Watched before subscribed: every save from now on is published,
                # and the stream loads only once the subscription is confirmed.
                await bounded(self._watch([key]), self.socket_timeout)
            except (RedisError, OSError, TimeoutError) as exc:
                logger.warning("faststate: cannot watch %s: %s", key, exc)
            async with self._lock:
                feed: _Feed | None = None
                try:
                    feed = await bounded(self._feed_for(channel), self.socket_timeout)
                    self._feed_of[key] = feed
                    await bounded(self._subscribe(feed, channel), self.socket_timeout)
                except (RedisError, OSError, TimeoutError) as exc:
                    logger.warning("faststate: cannot subscribe to %s: %s", key, exc)
                if feed is not None and (feed.reader is None or feed.reader.done()):
                    # Started after the subscription: one coroutine at a time uses it.
                    feed.reader = asyncio.create_task(
                        self._read(feed), name="faststate-redis-broker"
                    )
                if self._watcher is None or self._watcher.done():
                    self._watcher = asyncio.create_task(
                        self._keep_watching(), name="faststate-redis-watch"
                    )
        confirmed = self._confirmed.get(channel) or asyncio.Event()
        try:
            async with asyncio.timeout(self.socket_timeout):
                await confirmed.wait()
        except TimeoutError:
            subscriber(None)  # not confirmed in time: what it missed, it reloads

    async def _feed_for(self, channel: str) -> _Feed:
        """The feed a channel is read from: the server's, or its node's on a cluster."""
        if not self.server.cluster:
            name, client = "", self._router.single
        else:
            name, host, port = await self._router.node_of(channel)
            if name in self._feeds:
                return self._feeds[name]
            client = self.server.node_client(host, port, connect_timeout=self.socket_timeout)
        feed = self._feeds.get(name)
        if feed is None:
            feed = self._feeds[name] = _Feed(name, client)
        return feed

    async def _subscribe(self, feed: _Feed, *channels: str) -> None:
        if self.server.cluster:
            for channel in channels:  # one SSUBSCRIBE per slot
                await feed.pubsub.ssubscribe(channel)
        elif channels:
            await feed.pubsub.subscribe(*channels)

    async def _watch(self, keys: list[str]) -> None:
        """Mark ``keys`` as watched for the next ``replay_window`` seconds."""
        window = max(1, int(self.replay_window * 1000))
        try:
            await self._watch_once(keys, window)
        except (MovedError, AskError):
            await self._router.refresh()  # a slot moved: once more, to its new node
            await self._watch_once(keys, window)

    async def _watch_once(self, keys: list[str], window: int) -> None:
        names = [self.keys.watch(key) for key in keys]
        for client, positions in await self._router.by_client(names):  # a pipeline per node
            async with client.pipeline(transaction=False) as pipe:
                for position in positions:
                    pipe.set(names[position], 1, px=window)
                await pipe.execute()

    async def _keep_watching(self) -> None:
        """Refresh the watch keys of every subscribed instance, a few times per window."""
        while self._subscribers:
            await asyncio.sleep(max(0.05, self.replay_window / 4))
            try:
                await bounded(self._watch(list(self._subscribers)), self.socket_timeout)
            except (RedisError, OSError, TimeoutError) as exc:
                logger.debug("faststate: watch refresh failed: %s", exc)

    async def unsubscribe(self, key: str, subscriber: Subscriber) -> None:
        await super().unsubscribe(key, subscriber)
        feed = self._feed_of.get(key)
        if key not in self._subscribers and feed is not None:
            # The watch key stays until it expires: a page reconnecting within
            # the replay window finds every change logged.
            del self._feed_of[key]
            channel = self._channel(key)
            self._confirmed.pop(channel, None)
            # A failure means the connection is gone, and with it every subscription.
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                if self.server.cluster:
                    await bounded(feed.pubsub.sunsubscribe(channel), self.socket_timeout)
                else:
                    await bounded(feed.pubsub.unsubscribe(channel), self.socket_timeout)

    async def publish(self, change: Change) -> None:
        try:
            await self._publish(change)
            return
        except (RedisConnectionError, RedisTimeoutError):
            # A pooled connection that died with a restarted Redis fails once;
            # a fresh one from the pool may well succeed.
            pass
        except (RedisError, TimeoutError) as exc:
            logger.warning("faststate: could not publish %s: %s", change.key, exc)
            return
        try:
            await self._publish(change)
        except (RedisError, TimeoutError) as exc:
            # The change is saved; pages catch up on their next message or reconnect.
            logger.warning("faststate: could not publish %s: %s", change.key, exc)

    async def publish_many(self, changes: list[Change]) -> None:
        """Every change in one pipeline; one by one again if that fails."""
        if len(changes) < 2:
            await super().publish_many(changes)
            return
        answers: list[Any]
        try:
            if self.server.cluster:  # no scripts in a cluster's pipelines: side by side
                answers = await bounded(
                    asyncio.gather(
                        *(self._publish(change) for change in changes), return_exceptions=True
                    ),
                    self.socket_timeout,
                )
            else:
                async with self._router.single.pipeline(transaction=False) as pipe:
                    for change in changes:
                        keys = [self._log(change.key), self.keys.watch(change.key)]
                        pipe.evalsha(_PUBLISH_SHA, 2, *keys, *self.publication(change).args())
                    answers = await bounded(
                        pipe.execute(raise_on_error=False), self.socket_timeout
                    )
        except (RedisError, OSError, TimeoutError):
            answers = [None] * len(changes)
        # A script unknown to a restarted Redis, or a dropped connection: those
        # one by one (each of another instance, so their order does not matter).
        for change, answer in zip(changes, answers, strict=True):
            if answer is None or isinstance(answer, Exception):
                await self.publish(change)

    async def publish_viewers(self, key: str) -> None:
        """Presence notices share the key's channel; a lost one is made up for
        by the next heartbeat's re-read."""
        message, channel = ViewersChanged(key).to_json(), self._channel(key)
        try:
            await bounded(
                self._router.call(
                    channel, lambda client: client.execute_command(self._command, channel, message)
                ),
                self.socket_timeout,
            )
        except (RedisError, TimeoutError) as exc:
            logger.warning("faststate: could not publish viewers of %s: %s", key, exc)

    async def _publish(self, change: Change) -> bool:
        keys = [self._log(change.key), self.keys.watch(change.key)]
        args = self.publication(change).args()
        await bounded(
            self._router.script(_PUBLISH, _PUBLISH_SHA, keys, args), self.socket_timeout
        )
        return True

    async def replay(self, key: str, after: int) -> list[Change] | None:
        if self.replay_size <= 0:
            return None
        log = self._log(key)
        try:
            entries: list[tuple[bytes, dict[bytes, bytes]]] = await bounded(
                self._router.call(log, lambda client: client.xrange(log)), self.socket_timeout
            )
        except (RedisError, TimeoutError) as exc:
            logger.warning("faststate: could not read the replay log of %s: %s", key, exc)
            return None
        return missed((Change.from_json(fields[b"c"]) for _, fields in entries), after)

    async def _read(self, feed: _Feed) -> None:
        while True:
            try:
                if not feed.pubsub.subscribed:
                    await self._resubscribe(feed)
                    if not feed.pubsub.subscribed:
                        await asyncio.sleep(0.2)
                        continue
                message = await feed.pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                kind = message.get("type")
                if kind in ("subscribe", "ssubscribe"):
                    confirmed = self._confirmed.get(message["channel"].decode())
                    if confirmed is not None:
                        confirmed.set()
                    continue
                if kind == "sunsubscribe":
                    await self._moved(feed, message["channel"].decode())
                    continue
                if kind not in ("message", "smessage"):
                    continue
                change = message_from_json(message["data"])
                if message["channel"].decode() == self._channel(change.key):
                    self._deliver(change)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                logger.warning("faststate: push connection lost (%s); reconnecting", exc)
                self._warn_all()
                await asyncio.sleep(0.5)
                await self._reset(feed)
            except (ValueError, KeyError, TypeError) as exc:
                logger.warning("faststate: ignored a malformed push message: %s", exc)

    async def _moved(self, feed: _Feed, channel: str) -> None:
        """A cluster node ended a subscription we still want: its slot moved to
        another node.  Subscribe there, and let the key's pages catch up."""
        key = next(
            (k for k, of in self._feed_of.items() if of is feed and self._channel(k) == channel),
            None,
        )
        if key is None:
            return  # our own unsubscribe
        try:
            await bounded(self._router.refresh(), self.socket_timeout)
            await bounded(self._follow(key), self.socket_timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            logger.warning("faststate: cannot follow %s to its new node: %s", key, exc)
        for subscriber in tuple(self._subscribers.get(key, ())):
            subscriber(None)

    async def _follow(self, key: str) -> None:
        """Subscribe ``key`` on the feed of the node that owns it now."""
        channel = self._channel(key)
        owner = await self._feed_for(channel)
        self._feed_of[key] = owner
        await self._subscribe(owner, channel)
        if owner.reader is None or owner.reader.done():
            owner.reader = asyncio.create_task(self._read(owner), name="faststate-redis-broker")

    async def _reset(self, feed: _Feed) -> None:
        with contextlib.suppress(RedisError, OSError):
            await feed.pubsub.aclose()
        feed.pubsub = feed.client.pubsub()

    async def _resubscribe(self, feed: _Feed) -> None:
        keys = [key for key, of in self._feed_of.items() if of is feed]
        if not keys:
            return
        try:
            # Watched again first: Redis may have come back without its data.
            await bounded(self._watch(keys), self.socket_timeout)
            if self.server.cluster:
                # Slots may have moved meanwhile: each key to the node owning it now.
                await bounded(self._router.refresh(), self.socket_timeout)
                for key in keys:
                    await bounded(self._follow(key), self.socket_timeout)
            else:
                await bounded(
                    self._subscribe(feed, *(self._channel(key) for key in keys)),
                    self.socket_timeout,
                )
        except (RedisError, OSError, TimeoutError) as exc:
            logger.debug("faststate: resubscribe failed: %s", exc)
            await self._reset(feed)
            return
        self._warn_all()  # whatever was published meanwhile is lost: resync

    async def aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        for feed in self._feeds.values():
            if feed.reader is not None:
                feed.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                    await feed.reader
            with contextlib.suppress(RedisError, OSError):
                await feed.pubsub.aclose()
            if feed.client is not self._router.single:
                await feed.client.aclose()
        await self._router.aclose()
