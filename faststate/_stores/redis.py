"""Redis store: instances shared by every worker, serialised across processes.

An instance is a hash ``{v: version, d: json}`` whose expiry is the scope's
``ttl``.  An event holds a Redis lock with a short lease that a watchdog
renews while the event runs (a fresh lock object per acquisition), and saves
only if the stored version is still the one it loaded.  A worker whose lock
was lost mid-event writes nothing: its lease reports it no longer held, and
should it save regardless, the version check fails with ``StaleState``.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

import redis
import redis.asyncio
from redis.asyncio.lock import Lock
from redis.exceptions import LockNotOwnedError, NoScriptError
from redis.exceptions import RedisError as _RedisError

from faststate._live.broker import Broker
from faststate._live.presence import ViewerTable
from faststate._live.redis_broker import RedisBroker
from faststate._live.redis_presence import RedisViewers
from faststate._state import ReactiveState, set_stored_version, stored_version
from faststate._stores.base import (
    Lease,
    S,
    StaleState,
    StateStore,
    StoreUnavailable,
)
from faststate._stores.codec import decode, encode
from faststate._stores.locks import KeyLocks
from faststate._versions import first_version

T = TypeVar("T")

_RELEASE_RETRY = 0.05  # seconds between attempts to release a lock Redis did not confirm

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

    An event holds the instance's Redis lock for as long as it runs: the lock
    lives ``lock_lease`` seconds and a watchdog renews it every third of that,
    so a worker that dies mid-event blocks the instance for at most
    ``lock_lease``, while a long event keeps its lock.

    - ``lock_lease`` (3 s): how long a dead worker can block an instance.
    - ``lock_timeout`` (30 s; ``None``: no limit): the longest one event may
      hold an instance.  Past it the lock is no longer renewed and the
      event's changes are refused (409), so a hung event cannot keep an
      instance forever.
    - ``lock_wait`` (30 s): the longest an event waits for the lock, queued in
      this process and polling Redis together, before it is answered 503.
    - ``socket_timeout`` (5 s): each Redis command and connection attempt.
    - ``max_connections`` (50): Redis connections per process for events and
      pages; live pages' pub/sub has a pool of the same size.  Commands beyond
      it queue for a free connection rather than fail.
    - ``pool_timeout`` (5 s): how long a command may queue for a connection
      before a 503.

    Needs a fixed secret key on the middleware (every worker must accept the
    same cookies); live pages then use ``RedisBroker`` on the same URL.

    Args:
        url: The Redis URL (``redis://host:6379/0``).
        prefix: Put before every Redis key faststate writes.
        lock_lease: Seconds a lock lives unless renewed.
        lock_timeout: Seconds one event may hold an instance; ``None``: no limit.
        lock_wait: Seconds an event waits for a lock before a 503.
        socket_timeout: Seconds for each Redis command and connection attempt.
        max_connections: Redis connections per process.
        pool_timeout: Seconds a command waits for a free connection before a 503.
    """


    shared = True

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "faststate:",
        lock_lease: float = 3.0,
        lock_timeout: float | None = 30.0,
        lock_wait: float = 30.0,
        socket_timeout: float = 5.0,
        max_connections: int = 50,
        pool_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.lock_timeout = lock_timeout
        # A lease longer than the limit would outlive it.
        self.lock_lease = lock_lease if lock_timeout is None else min(lock_lease, lock_timeout)
        self.lock_wait = lock_wait
        self.socket_timeout = socket_timeout
        self.max_connections = max_connections
        self.pool_timeout = pool_timeout
        options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
        }
        self._async = redis.asyncio.Redis.from_pool(
            redis.asyncio.BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=pool_timeout, **options
            )
        )
        self._sync = redis.Redis.from_url(url, **options)
        self._add_async = self._async.register_script(_ADD)
        self._save_async = self._async.register_script(_SAVE_IF_CURRENT)
        self._add_sync = self._sync.register_script(_ADD)
        self._save_sync = self._sync.register_script(_SAVE_IF_CURRENT)
        self._local = KeyLocks()
        self._releasing: set[asyncio.Task[None]] = set()

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

    async def save_many(
        self, items: Sequence[tuple[str, ReactiveState, float | None]]
    ) -> list[Exception | None]:
        """Every save of one event in one round trip: a pipeline, not a MULTI, as
        each save checks its own version and the keys may live on different nodes."""
        payloads = [encode(state) for _, state, _ in items]
        answers = await self._save_pipelined(items, payloads)
        if any(isinstance(answer, NoScriptError) for answer in answers):
            # Redis restarted (or flushed its scripts): nothing ran; load, once more.
            await _guard(self._async.script_load(_SAVE_IF_CURRENT))
            answers = await self._save_pipelined(items, payloads)
        outcomes: list[Exception | None] = []
        for (key, state, _), answer in zip(items, answers, strict=True):
            if isinstance(answer, Exception):
                outcomes.append(StoreUnavailable(f"redis: {answer}"))
            elif not answer:
                outcomes.append(StaleState(f"{key} changed since it was loaded"))
            else:
                set_stored_version(state, stored_version(state) + 1)
                outcomes.append(None)
        return outcomes

    async def _save_pipelined(
        self, items: Sequence[tuple[str, ReactiveState, float | None]], payloads: list[str]
    ) -> list[Any]:
        sha = self._save_async.sha
        async with self._async.pipeline(transaction=False) as pipe:
            for (key, state, ttl), payload in zip(items, payloads, strict=True):
                expected = stored_version(state)
                pipe.evalsha(sha, 1, self._key(key), expected, expected + 1, payload, _ms(ttl))
            answers: list[Any] = await _guard(pipe.execute(raise_on_error=False))
        return answers

    async def delete(self, key: str) -> None:
        await _guard(self._async.delete(self._key(key)))

    def lock(self, key: str) -> AbstractAsyncContextManager[Lease]:
        return self._locked(key)

    @asynccontextmanager
    async def _locked(self, key: str) -> AsyncIterator[Lease]:
        # One deadline for the queue in this process and for Redis: a waiter
        # behind others is answered within lock_wait, not after each of them.
        deadline = asyncio.get_running_loop().time() + self.lock_wait
        # Waiters of this process queue locally, so only one of them polls Redis.
        local = self._local.hold(key)
        try:
            async with asyncio.timeout_at(deadline):
                await local.__aenter__()
        except TimeoutError:
            raise StoreUnavailable(f"{key} stayed locked for {self.lock_wait}s") from None
        try:
            lease = await self._acquire(key, deadline)
            try:
                yield lease
            finally:
                await self._release(lease)
        finally:
            await local.__aexit__(None, None, None)

    async def _acquire(self, key: str, deadline: float) -> _RenewedLease:
        lock = self._async.lock(
            f"{self.prefix}lock:{key}", timeout=self.lock_lease, thread_local=False
        )
        token = uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        # The short jittered poll keeps hand-over between workers fast.
        poll = 0.002 + random.random() * 0.003
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    sent = loop.time()
                    if sent >= deadline:
                        # Checked here too: a cancellation that reached the
                        # client mid-command may have been swallowed by it.
                        raise TimeoutError
                    if await lock.acquire(blocking=False, token=token):
                        return _RenewedLease(self, lock, token.encode(), sent)
                    await asyncio.sleep(poll)
        except TimeoutError:
            # A SET cut short by the deadline may have taken the lock all the same.
            self._in_background(_release_token(lock, token.encode(), loop.time() + self.lock_lease))
            raise StoreUnavailable(f"{key} stayed locked for {self.lock_wait}s") from None
        except asyncio.CancelledError:
            self._in_background(_release_token(lock, token.encode(), loop.time() + self.lock_lease))
            raise
        except _RedisError as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    async def _release(self, lease: _RenewedLease) -> None:
        lease.stop()
        # Shielded: a request cancelled while releasing (its client went away)
        # must still free the instance instead of leaving it locked for a lease.
        await asyncio.shield(self._in_background(lease.release()))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)
        return task

    def viewer_table(self) -> ViewerTable:
        """Seats in Redis on this store's connections, so every worker sees them."""
        return RedisViewers(self._async, self._sync, self.prefix)

    def default_broker(self) -> Broker:
        """Redis pub/sub on the same server, so changes reach every worker's pages."""
        return RedisBroker(
            self.url,
            prefix=self.prefix,
            max_connections=self.max_connections,
            pool_timeout=self.pool_timeout,
            socket_timeout=self.socket_timeout,
        )

    async def aclose(self) -> None:
        if self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)
        await self._async.aclose()
        self._sync.close()


class _RenewedLease(Lease):
    """The Redis lock of one running event, renewed every third of its lease.

    ``held`` turns false, for good, when a renewal fails or finds the lock
    gone or taken, and when the lease runs out unrenewed (``lock_timeout``
    reached, or this process too busy to renew in time).
    """

    __slots__ = (
        "_limit",
        "_lock",
        "_loop",
        "_lost",
        "_store",
        "_token",
        "_valid_until",
        "_watchdog",
    )

    def __init__(self, store: RedisStore, lock: Lock, token: bytes, sent: float) -> None:
        self._store = store
        self._lock = lock
        self._token = token
        # Counted from when the SET was sent: Redis started the expiry later.
        self._valid_until = sent + store.lock_lease
        timeout = store.lock_timeout
        self._limit = float("inf") if timeout is None else sent + timeout
        self._lost = False
        # Kept: ``held`` is also asked from the database's worker thread, which
        # has no running loop (a loop's clock can be read from any thread).
        self._loop = asyncio.get_running_loop()
        self._watchdog = self._loop.create_task(self._renew())

    @property
    def held(self) -> bool:
        if not self._lost and self._loop.time() >= self._valid_until:
            # Lost stays lost: a caller may have acted on it before a late renewal.
            self._lost = True
        return not self._lost

    async def _renew(self) -> None:
        loop = asyncio.get_running_loop()
        lease = self._store.lock_lease
        while True:
            await asyncio.sleep(lease / 3)
            sent = loop.time()
            if sent >= self._valid_until:
                self._lost = True  # it may have expired and been taken meanwhile
                return
            extension = min(lease, self._limit - sent)
            if extension < 0.001:
                return  # lock_timeout reached: the lease runs out, held with it
            try:
                await self._lock.extend(extension, replace_ttl=True)
            except (_RedisError, OSError):
                self._lost = True  # not renewed, or owned by another holder by now
                return
            self._valid_until = sent + extension

    def stop(self) -> None:
        self._watchdog.cancel()

    async def release(self) -> None:
        await _release_token(self._lock, self._token, self._valid_until)


async def _release_token(lock: Lock, token: bytes, expires: float) -> None:
    """Delete the lock if ``token`` still holds it, retrying until it would
    have expired anyway: a lock is never left behind for want of a connection."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            await lock.do_release(token)
            return
        except LockNotOwnedError:
            return  # expired, or never taken: nothing of ours is left
        except (_RedisError, OSError):
            if loop.time() + _RELEASE_RETRY >= expires:
                return
            await asyncio.sleep(_RELEASE_RETRY)


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
