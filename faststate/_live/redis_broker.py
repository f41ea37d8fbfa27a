"""Redis pub/sub broker: changes reach the streams of every worker.

Each change is also added to a capped Redis Stream per instance (the replay
log), in the same round trip as its publication, so a page on any worker can
be sent what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
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

logger = logging.getLogger("faststate")


class RedisBroker(Broker):
    """Redis pub/sub: one channel per instance key, one connection per process.

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
    each command, so a publish to a stalled Redis cannot hold an event.

    A ``RedisStore`` gives the middleware one on its own URL; build one
    yourself only to use Redis for live pages with another store.

    Args:
        url: The Redis URL.
        prefix: Put before every channel and key name.
        max_connections: Connections per process for publishing.
        pool_timeout: Seconds a publish waits for a free connection.
        socket_timeout: Seconds for each Redis command.
        replay_size: About how many changes the replay log of an instance keeps.
        replay_window: Seconds the log lives after its last change.
    """


    def __init__(
        self,
        url: str,
        *,
        prefix: str = "faststate:",
        max_connections: int = 50,
        pool_timeout: float = 5.0,
        socket_timeout: float = 5.0,
        replay_size: int = REPLAY_SIZE,
        replay_window: float = REPLAY_WINDOW,
    ) -> None:
        super().__init__()
        self.url = url
        self.prefix = prefix
        self.replay_size = replay_size
        self.replay_window = replay_window
        self.socket_timeout = socket_timeout
        self._redis = redis.asyncio.Redis.from_pool(
            redis.asyncio.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=pool_timeout,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
            )
        )
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        #: Per subscribed channel: set once Redis confirmed the subscription.
        self._confirmed: dict[str, asyncio.Event] = {}

    def _channel(self, key: str) -> str:
        return f"{self.prefix}push:{key}"

    def _log(self, key: str) -> str:
        return f"{self.prefix}log:{key}"

    async def subscribe(self, key: str, subscriber: Subscriber) -> None:
        first = key not in self._subscribers
        await super().subscribe(key, subscriber)
        channel = self._channel(key)
        if first:
            confirmed = self._confirmed[channel] = asyncio.Event()
            async with self._lock:
                if self._pubsub is None:
                    self._pubsub = self._redis.pubsub()
                try:
                    await self._pubsub.subscribe(channel)
                except RedisError as exc:
                    logger.warning("faststate: cannot subscribe to %s: %s", key, exc)
                if self._reader is None or self._reader.done():
                    self._reader = asyncio.create_task(self._read(), name="faststate-redis-broker")
        confirmed = self._confirmed.get(channel) or asyncio.Event()
        try:
            async with asyncio.timeout(self.socket_timeout):
                await confirmed.wait()
        except TimeoutError:
            subscriber(None)  # not confirmed in time: what it missed, it reloads

    async def unsubscribe(self, key: str, subscriber: Subscriber) -> None:
        await super().unsubscribe(key, subscriber)
        if key not in self._subscribers and self._pubsub is not None:
            self._confirmed.pop(self._channel(key), None)
            # A failure means the connection is gone, and with it every subscription.
            with contextlib.suppress(RedisError):
                await self._pubsub.unsubscribe(self._channel(key))

    async def publish(self, change: Change) -> None:
        try:
            await self._publish(change)
            return
        except (RedisConnectionError, RedisTimeoutError):
            # A pooled connection that died with a restarted Redis fails once;
            # a fresh one from the pool may well succeed.
            pass
        except RedisError as exc:
            logger.warning("faststate: could not publish %s: %s", change.key, exc)
            return
        try:
            await self._publish(change)
        except RedisError as exc:
            # The change is saved; pages catch up on their next message or reconnect.
            logger.warning("faststate: could not publish %s: %s", change.key, exc)

    async def publish_viewers(self, key: str) -> None:
        """Presence notices share the key's channel; a lost one is made up for
        by the next heartbeat's re-read."""
        try:
            await self._redis.publish(self._channel(key), ViewersChanged(key).to_json())
        except RedisError as exc:
            logger.warning("faststate: could not publish viewers of %s: %s", key, exc)

    async def _publish(self, change: Change) -> None:
        message, log = change.to_json(), self._log(change.key)
        async with self._redis.pipeline(transaction=False) as pipe:
            if self.replay_size > 0:
                pipe.xadd(log, {"c": message}, maxlen=self.replay_size, approximate=True)
                pipe.pexpire(log, int(self.replay_window * 1000))
            pipe.publish(self._channel(change.key), message)
            await pipe.execute()

    async def replay(self, key: str, after: int) -> list[Change] | None:
        if self.replay_size <= 0:
            return None
        try:
            entries: list[tuple[bytes, dict[bytes, bytes]]] = await self._redis.xrange(
                self._log(key)
            )  # type: ignore[assignment]
        except RedisError as exc:
            logger.warning("faststate: could not read the replay log of %s: %s", key, exc)
            return None
        return missed((Change.from_json(fields[b"c"]) for _, fields in entries), after)

    async def _read(self) -> None:
        prefix_length = len(self._channel(""))
        while True:
            try:
                if not self._pubsub.subscribed:
                    await self._resubscribe()
                    if not self._pubsub.subscribed:
                        await asyncio.sleep(0.2)
                        continue
                message = await self._pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                if message.get("type") == "subscribe":
                    confirmed = self._confirmed.get(message["channel"].decode())
                    if confirmed is not None:
                        confirmed.set()
                    continue
                if message.get("type") != "message":
                    continue
                change = message_from_json(message["data"])
                if change.key == message["channel"].decode()[prefix_length:]:
                    self._deliver(change)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                logger.warning("faststate: push connection lost (%s); reconnecting", exc)
                self._warn_all()
                await asyncio.sleep(0.5)
                await self._reset()
            except (ValueError, KeyError, TypeError) as exc:
                logger.warning("faststate: ignored a malformed push message: %s", exc)

    async def _reset(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()
        self._pubsub = self._redis.pubsub()

    async def _resubscribe(self) -> None:
        channels = [self._channel(key) for key in self._subscribers]
        if not channels:
            return
        try:
            await self._pubsub.subscribe(*channels)
        except (RedisError, OSError) as exc:
            logger.debug("faststate: resubscribe failed: %s", exc)
            await self._reset()
            return
        self._warn_all()  # whatever was published meanwhile is lost: resync

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await self._reader
        if self._pubsub is not None:
            await self._pubsub.aclose()
        await self._redis.aclose()
