"""Redis store: instances shared by every worker, serialised across processes.

An instance is a hash ``{v: version, d: json}`` whose expiry is the scope's
``ttl``.  An event holds a Redis lock with an expiry (a fresh lock object per
acquisition) and saves only if the stored version is still the one it
loaded: a worker whose lock expired mid-event can never overwrite newer
state; its save fails with ``StaleState`` and nothing is written.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

import redis
import redis.asyncio
from redis.exceptions import LockError, LockNotOwnedError
from redis.exceptions import RedisError as _RedisError

from faststate._live.broker import Broker
from faststate._live.redis_broker import RedisBroker
from faststate._state import ReactiveState, set_stored_version, stored_version
from faststate._stores.base import (
    HELD,
    Lease,
    S,
    StaleState,
    StateStore,
    StoreUnavailable,
    first_version,
)
from faststate._stores.codec import decode, encode
from faststate._stores.locks import KeyLocks

T = TypeVar("T")

# KEYS[1] state; ARGV: version, json, ttl ms (0: none).  Creates only when absent
# and answers what the key holds afterwards.
_ADD = """
local found = redis.call('HMGET', KEYS[1], 'v', 'd')
if found[1] then return found end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
if ARGV[3] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return {ARGV[1], ARGV[2]}
"""

# KEYS[1] state; ARGV: expected version, new version, json, ttl ms (0: none).
_SAVE_IF_CURRENT = """
local current = redis.call('HGET', KEYS[1], 'v') or '0'
if current ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[3])
if ARGV[4] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
else
  redis.call('PERSIST', KEYS[1])
end
return 1
"""


class RedisStore(StateStore):
    """Instances in Redis (redis-py), for apps running on several workers.

    ``lock_timeout`` bounds how long a crashed worker can block an instance;
    ``lock_wait`` how long an event waits for the lock before a 503.
    """

    shared = True

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "faststate:",
        lock_timeout: float = 30.0,
        lock_wait: float = 30.0,
        socket_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.lock_timeout = lock_timeout
        self.lock_wait = lock_wait
        options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
        }
        self._async = redis.asyncio.Redis.from_url(url, **options)
        self._sync = redis.Redis.from_url(url, **options)
        self._add_async = self._async.register_script(_ADD)
        self._save_async = self._async.register_script(_SAVE_IF_CURRENT)
        self._add_sync = self._sync.register_script(_ADD)
        self._save_sync = self._sync.register_script(_SAVE_IF_CURRENT)
        self._local = KeyLocks()

    def _key(self, key: str) -> str:
        return f"{self.prefix}state:{key}"

    async def load(self, key: str, cls: type[S]) -> S | None:
        found = await _guard(self._async.hmget(self._key(key), "v", "d"))
        return _instance(cls, found)

    def load_sync(self, key: str, cls: type[S]) -> S | None:
        try:
            found = self._sync.hmget(self._key(key), "v", "d")
        except _RedisError as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        return _instance(cls, found)

    async def add(self, key: str, state: S, ttl: float | None) -> S:
        payload = encode(state)
        version = stored_version(state) or first_version()
        found = await _guard(
            self._add_async(keys=[self._key(key)], args=[version, payload, _ms(ttl)])
        )
        settled = _settled(state, version, payload, found)
        if settled is not None:
            return settled
        set_stored_version(state, int(found[0]))
        await self.save(key, state, ttl)
        return state

    def add_sync(self, key: str, state: S, ttl: float | None) -> S:
        payload = encode(state)
        version = stored_version(state) or first_version()
        try:
            found = self._add_sync(keys=[self._key(key)], args=[version, payload, _ms(ttl)])
            settled = _settled(state, version, payload, found)
            if settled is not None:
                return settled
            version = int(found[0])
            self._save_sync(keys=[self._key(key)], args=[version, version + 1, payload, _ms(ttl)])
        except _RedisError as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        set_stored_version(state, version + 1)
        return state

    async def save(self, key: str, state: ReactiveState, ttl: float | None) -> None:
        expected = stored_version(state)
        saved = await _guard(
            self._save_async(
                keys=[self._key(key)], args=[expected, expected + 1, encode(state), _ms(ttl)]
            )
        )
        if not saved:
            raise StaleState(f"{key} changed since version {expected} was loaded")
        set_stored_version(state, expected + 1)

    async def delete(self, key: str) -> None:
        await _guard(self._async.delete(self._key(key)))

    def lock(self, key: str) -> AbstractAsyncContextManager[Lease]:
        return self._locked(key)

    @asynccontextmanager
    async def _locked(self, key: str) -> AsyncIterator[Lease]:
        # Waiters of this process queue locally, so only one of them polls
        # Redis; the short jittered poll keeps hand-over between workers fast.
        async with self._local.hold(key):
            lock = self._async.lock(
                f"{self.prefix}lock:{key}",
                timeout=self.lock_timeout,
                sleep=0.002 + random.random() * 0.003,
                blocking_timeout=self.lock_wait,
                thread_local=False,
            )
            acquired = await _guard(lock.acquire())
            if not acquired:
                raise StoreUnavailable(f"{key} stayed locked for {self.lock_wait}s")
            try:
                yield HELD
            finally:
                try:
                    await lock.release()
                except LockNotOwnedError:
                    pass  # expired while held: the version check guarded the save
                except (LockError, _RedisError):
                    pass  # Redis gone: the lock expires by itself

    def default_broker(self) -> Broker:
        """Redis pub/sub on the same server, so changes reach every worker's pages."""
        return RedisBroker(self.url, prefix=self.prefix)

    async def aclose(self) -> None:
        await self._async.aclose()
        self._sync.close()


def _ms(ttl: float | None) -> int:
    return 0 if ttl is None else max(1, int(ttl * 1000))


def _settled(state: S, version: int, payload: str, found: Any) -> S | None:
    """The instance an add ends with; None when the stored record no longer fits
    the class and must be replaced (or the page would be stuck on it)."""
    if _created(found, version, payload):
        set_stored_version(state, version)
        return state
    return _instance(type(state), found)


def _created(found: Any, version: int, payload: str) -> bool:
    stored, data = found
    return bool(
        int(stored) == version and (data.decode() if isinstance(data, bytes) else data) == payload
    )


def _instance(cls: type[S], found: Any) -> S | None:
    if not found or found[0] is None or found[1] is None:
        return None
    state = decode(cls, found[1])
    if state is not None:
        set_stored_version(state, int(found[0]))
    return state


async def _guard(call: Awaitable[T]) -> T:
    try:
        return await call
    except _RedisError as exc:
        raise StoreUnavailable(f"redis: {exc}") from exc
