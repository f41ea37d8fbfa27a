"""Redis pub/sub broker: changes reach the streams of every worker."""

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
    Broker,
    Change,
    Subscriber,
    ViewersChanged,
    message_from_json,
)

logger = logging.getLogger("faststate")


class RedisBroker(Broker):
    """Redis pub/sub: one channel per instance key, one connection per process.

    Every delivery, this worker's own included, goes through Redis, so all
    pages see changes in the order Redis does.  When the subscription
    connection drops, every stream is told to resynchronise.

    Publishing uses at most ``max_connections`` connections (the subscription
    takes one of them); beyond that a publish queues for up to
    ``pool_timeout`` seconds instead of failing.  ``socket_timeout`` bounds
    each command, so a publish to a stalled Redis cannot hold an event.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "faststate:",
        max_connections: int = 50,
        pool_timeout: float = 5.0,
        socket_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self.url = url
        self.prefix = prefix
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

    def _channel(self, key: str) -> str:
        return f"{self.prefix}push:{key}"

    async def subscribe(self, key: str, subscriber: Subscriber) -> None:
        first = key not in self._subscribers
        await super().subscribe(key, subscriber)
        if first:
            async with self._lock:
                await self._ensure_reader()
                try:
                    await self._pubsub.subscribe(self._channel(key))
                except RedisError as exc:
                    logger.warning("faststate: cannot subscribe to %s: %s", key, exc)

    async def unsubscribe(self, key: str, subscriber: Subscriber) -> None:
        await super().unsubscribe(key, subscriber)
        if key not in self._subscribers and self._pubsub is not None:
            # A failure means the connection is gone, and with it every subscription.
            with contextlib.suppress(RedisError):
                await self._pubsub.unsubscribe(self._channel(key))

    async def publish(self, change: Change) -> None:
        channel, message = self._channel(change.key), change.to_json()
        try:
            await self._redis.publish(channel, message)
            return
        except (RedisConnectionError, RedisTimeoutError):
            # A pooled connection that died with a restarted Redis fails once;
            # a fresh one from the pool may well succeed.
            pass
        except RedisError as exc:
            logger.warning("faststate: could not publish %s: %s", change.key, exc)
            return
        try:
            await self._redis.publish(channel, message)
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

    async def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            self._reader = asyncio.create_task(self._read(), name="faststate-redis-broker")

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
                if message is None or message.get("type") != "message":
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
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)

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
