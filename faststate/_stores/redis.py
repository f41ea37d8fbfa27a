"""Redis store: instances shared by every worker, serialised across processes.

An instance is a hash ``{v: version, d: json}`` whose expiry is the scope's
``ttl``.  An event holds a Redis lock with a short lease that a watchdog
renews while the event runs, and saves only if the stored version is still
the one it loaded.  A worker whose lock was lost mid-event writes nothing:
its lease reports it no longer held, and should it save regardless, the
version check fails with ``StaleState``.

A single-instance event takes two round trips: one script takes the lock
and reads the instance (``_LOCK_LOAD``); another saves it if its version is
still current, appends the change to the replay log and publishes it if a
page watches the instance (when the broker shares this Redis), and releases
the lock (``_COMMIT``).  Each round trip has one deadline (``socket_timeout``)
instead of a timeout per command inside the client, and the deadlines and
lease renewals of all events share a few timers (``_deadlines``).  The instances this
process saved last are kept: while the version in Redis is the kept one, the
first script leaves the instance out and nothing is decoded.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, TypeVar

from redis.exceptions import NoScriptError
from redis.exceptions import RedisError as _RedisError

from faststate._deadlines import Alarm, Alarms
from faststate._live.broker import Broker, Change
from faststate._live.presence import ViewerTable
from faststate._live.redis_broker import RedisBroker
from faststate._live.redis_presence import RedisViewers
from faststate._redis import PUBLISH_LUA, RedisKeys, Router, Server, bounded, script_sha
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

logger = logging.getLogger("faststate")

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

# Saves the state at KEYS[1] if its version is ARGV[1]: ARGV[2] the new version,
# ARGV[3] the json, ARGV[4] the ttl in ms (0: none).  1 if saved, else 0.
_SAVE_LUA = """
local function save()
  if (redis.call('HGET', KEYS[1], 'v') or '0') ~= ARGV[1] then return 0 end
  redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[3])
  if ARGV[4] ~= '0' then
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
  else
    redis.call('PERSIST', KEYS[1])
  end
  return 1
end
"""

# KEYS[1] state; ARGV: expected version, new version, json, ttl ms (0: none).
_SAVE_IF_CURRENT = _SAVE_LUA + "return save()\n"

# KEYS[1] lock, KEYS[2] state, KEYS[3] watch; ARGV: token, lease ms, the version
# this process keeps a copy of ('' none).  Takes the lock if free and answers
# {1, watched, version, json} (watched: 1 if a page watches the instance; nil,
# nil: no instance; the json left out when the kept version is current), else 0.
_LOCK_LOAD = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local watched = redis.call('EXISTS', KEYS[3])
  local version = redis.call('HGET', KEYS[2], 'v')
  if version and version == ARGV[3] then return {1, watched, version} end
  return {1, watched, version, redis.call('HGET', KEYS[2], 'd')}
end
return 0
"""

#: How many instances, as this process last saved them, a store keeps: an event
#: on one of them whose version is still current skips reading and decoding it.
_KEPT = 1024

# KEYS[1] lock; ARGV: token, lease ms.  Renews the lock if the token still holds it.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1] lock; ARGV[1] token.  Deletes the lock if the token still holds it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: state, lock, log, watch; ARGV: expected version, new version, json, ttl ms
# (0: none), lock token, then the publication (PUBLISH_LUA, from ARGV[6]).  Saves if
# the version is current and then publishes; releases the lock either way and
# answers 1 (saved) or 0, except for a publication of '?' (nobody watched when the
# lock was taken, so the caller did not make one): if a page watches by now, it
# saves, keeps the lock and answers 2, and the caller publishes and releases
# (_PUBLISH_RELEASE), so that the page still sees the change, in order.
_COMMIT = PUBLISH_LUA + _SAVE_LUA + """
local saved = save()
if saved == 1 then
  if ARGV[6] ~= '?' then
    publish(3, 6)
  elseif redis.call('EXISTS', KEYS[4]) == 1 then
    return 2
  end
end
if redis.call('GET', KEYS[2]) == ARGV[5] then redis.call('DEL', KEYS[2]) end
return saved
"""

# KEYS: log, watch, lock; ARGV: the publication (PUBLISH_LUA), then the lock token.
_PUBLISH_RELEASE = PUBLISH_LUA + """
publish(1, 1)
if redis.call('GET', KEYS[3]) == ARGV[6] then redis.call('DEL', KEYS[3]) end
return 1
"""

_SCRIPTS = (_ADD, _SAVE_IF_CURRENT, _LOCK_LOAD, _EXTEND, _RELEASE, _COMMIT, _PUBLISH_RELEASE)
_SHA = {script: script_sha(script) for script in _SCRIPTS}
_NO_PUBLICATION: list[str | int] = ["", "", 0, 0, "PUBLISH"]
#: Nobody watched at the lock: publish only if a page watches by the commit.
_IF_WATCHED: list[str | int] = ["?", "", 0, 0, "PUBLISH"]
_SAVED_STILL_LOCKED = 2


class RedisStore(StateStore):
    """Instances in Redis (redis-py), for apps running on several workers.

    ``url`` is a ``redis://`` URL, or ``redis+cluster://`` for a Redis Cluster
    (or pass ``cluster=True``): every key of one instance shares a hash slot,
    and live pages use sharded pub/sub there.

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
    - ``socket_timeout`` (5 s): how long Redis may take to answer one round
      trip (and to accept a connection).
    - ``max_connections`` (50): Redis connections per process (per node of a
      cluster) for events and page loads, kept between commands; as many
      again in a pool for rarer commands, and for live pages' pub/sub.
      Commands beyond it queue for a free connection rather than fail.
      Lease renewals have up to four connections of their own.
    - ``pool_timeout`` (5 s): how long a command may queue for a connection
      before a 503.

    Needs a fixed secret key on the middleware (every worker must accept the
    same cookies); live pages then use ``RedisBroker`` on the same URL.

    Args:
        url: The Redis URL (``redis://host:6379/0``), or
            ``redis+cluster://host:port`` for a Redis Cluster.
        prefix: Put before every Redis key faststate writes (no braces).
        cluster: True for a Redis Cluster (default: as the URL says).
        lock_lease: Seconds a lock lives unless renewed.
        lock_timeout: Seconds one event may hold an instance; ``None``: no limit.
        lock_wait: Seconds an event waits for a lock before a 503.
        socket_timeout: Seconds Redis may take to answer one round trip, and
            each connection attempt.
        max_connections: Redis connections per process (per node of a cluster).
        pool_timeout: Seconds a command waits for a free connection before a 503.
    """


    shared = True

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "faststate:",
        cluster: bool | None = None,
        lock_lease: float = 3.0,
        lock_timeout: float | None = 30.0,
        lock_wait: float = 30.0,
        socket_timeout: float = 5.0,
        max_connections: int = 50,
        pool_timeout: float = 5.0,
    ) -> None:
        self.server = Server.of(url, cluster)
        self.url = url
        self.cluster = self.server.cluster
        self.prefix = prefix
        self.keys = RedisKeys(prefix)
        self.lock_timeout = lock_timeout
        # A lease longer than the limit would outlive it.
        self.lock_lease = lock_lease if lock_timeout is None else min(lock_lease, lock_timeout)
        self.lock_wait = lock_wait
        self.socket_timeout = socket_timeout
        self.max_connections = max_connections
        self.pool_timeout = pool_timeout
        self._router = Router(
            self.server,
            max_connections=max_connections,
            pool_timeout=pool_timeout,
            connect_timeout=socket_timeout,
        )
        # Renewals of the leases of long events on connections of their own, so
        # that a queue of commands for the pool can never starve them (and lose
        # a lock held by a healthy event).
        self._renewer = Router(
            self.server,
            max_connections=4,
            pool_timeout=socket_timeout,
            connect_timeout=socket_timeout,
        )
        # Made on first use: a cluster's client connects as it is made.
        self._sync_client: Any = None
        self._local = KeyLocks()
        self._kept: OrderedDict[str, ReactiveState] = OrderedDict()
        self._releasing: set[asyncio.Task[None]] = set()
        self._publisher: tuple[Broker, bool] | None = None
        # The event's round-trip deadlines and lease renewals, on shared timers.
        self._alarms = Alarms()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        """``RedisStore(url, **options)``; ``redis+cluster://`` names a cluster."""
        return cls(url, **options)

    def _key(self, key: str) -> str:
        return self.keys.state(key)

    def _sync(self) -> Any:
        """The blocking client of sync page handlers."""
        if self._sync_client is None:
            self._sync_client = self.server.sync_client(socket_timeout=self.socket_timeout)
        return self._sync_client

    async def _call(self, call: Awaitable[T]) -> T:
        """One round trip, bounded by ``socket_timeout``; failures are ``StoreUnavailable``."""
        deadline = asyncio.get_running_loop().time() + self.socket_timeout
        try:
            async with self._alarms.deadline(deadline):
                return await call
        except _RedisError as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        except TimeoutError:
            raise StoreUnavailable(
                f"redis: no answer within {self.socket_timeout}s"
            ) from None

    async def _script(self, script: str, keys: list[str], args: list[Any]) -> Any:
        return await self._router.script(script, _SHA[script], keys, args)

    async def load(self, key: str, cls: type[S]) -> S | None:
        name = self._key(key)
        found = await self._call(self._router.execute(name, "HMGET", name, "v", "d"))
        return _instance(cls, found)

    async def load_held(self, key: str, cls: type[S], lease: Lease) -> S | None:
        if isinstance(lease, _RenewedLease) and lease.store is self and lease.record is not None:
            found, lease.record = lease.record, None
            kept, lease.kept = lease.kept, None
            if len(found) == 1:  # the kept copy is current
                if type(kept) is cls:
                    return kept
                return await self.load(key, cls)
            return _instance(cls, found)
        return await self.load(key, cls)

    def _keep(self, key: str, state: ReactiveState) -> None:
        """Keep ``state`` as just saved (never one an event may have left half changed:
        it is taken out of here while an event holds it)."""
        kept = self._kept
        kept[key] = state
        if len(kept) > _KEPT:
            kept.popitem(last=False)

    def load_sync(self, key: str, cls: type[S]) -> S | None:
        try:
            found = self._sync().hmget(self._key(key), "v", "d")
        except _RedisError as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        return _instance(cls, found)

    async def add(self, key: str, state: S, ttl: float | None) -> S:
        payload = encode(state)
        version = stored_version(state) or first_version()
        found = await self._call(
            self._script(_ADD, [self._key(key)], [version, payload, _ms(ttl)])
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
            client = self._sync()
            found = client.eval(_ADD, 1, self._key(key), version, payload, _ms(ttl))
            settled = _settled(state, version, payload, found)
            if settled is not None:
                return settled
            version = int(found[0])
            client.eval(
                _SAVE_IF_CURRENT, 1, self._key(key), version, version + 1, payload, _ms(ttl)
            )
        except _RedisError as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        set_stored_version(state, version + 1)
        return state

    async def save(self, key: str, state: ReactiveState, ttl: float | None) -> None:
        expected = stored_version(state)
        saved = await self._call(
            self._script(
                _SAVE_IF_CURRENT,
                [self._key(key)],
                [expected, expected + 1, encode(state), _ms(ttl)],
            )
        )
        if not saved:
            raise StaleState(f"{key} changed since version {expected} was loaded")
        set_stored_version(state, expected + 1)

    async def save_and_publish(
        self,
        key: str,
        state: ReactiveState,
        ttl: float | None,
        lease: Lease,
        broker: Broker,
        change: Change | None,
    ) -> None:
        """Save, publish and release in one script (``_COMMIT``) when the lease is
        this store's and the broker shares this Redis; the Redis checks whether
        any page watches the instance, so an unwatched one publishes nothing."""
        if not isinstance(lease, _RenewedLease) or lease.store is not self:
            await super().save_and_publish(key, state, ttl, lease, broker, change)
            return
        together = self._publishes_with(broker)
        publication = _NO_PUBLICATION
        if change is not None and together and isinstance(broker, RedisBroker):
            # An unwatched instance's change is not even encoded.
            publication = broker.publication(change).args() if lease.watched else _IF_WATCHED
        expected = stored_version(state)
        lease.stop()
        saved = await self._call(
            self._script(
                _COMMIT,
                list(lease.names),
                [expected, expected + 1, encode(state), _ms(ttl), lease.token, *publication],
            )
        )
        if not saved:
            lease.released = True  # the script gave the lock back
            raise StaleState(f"{key} changed since version {expected} was loaded")
        set_stored_version(state, expected + 1)
        self._keep(key, state)
        if saved == _SAVED_STILL_LOCKED and change is not None and isinstance(broker, RedisBroker):
            # A page started watching during the event: a third round trip.
            publication = broker.publication(change).args()
            lease.released = await self._publish_and_release(lease, publication)
            return
        lease.released = True
        if change is not None and not together:
            await broker.publish(change)

    def _publishes_with(self, broker: Broker) -> bool:
        """Whether this store's commit script publishes ``broker``'s changes
        (same Redis, same key names); worked out once per broker."""
        known = self._publisher
        if known is not None and known[0] is broker:
            return known[1]
        together = isinstance(broker, RedisBroker) and broker.shares(self.server, self.keys)
        self._publisher = (broker, together)
        return together

    async def _publish_and_release(
        self, lease: _RenewedLease, publication: list[str | int]
    ) -> bool:
        """Publish a saved change, then give the lock back; whether that was done.
        The change is saved whatever happens here: a failure is logged (the lock's
        exit gives the lock back), and the watching page catches up when its
        stream reconnects."""
        _, lock_key, log_key, watch_key = lease.names
        try:
            await self._call(
                self._script(
                    _PUBLISH_RELEASE,
                    [log_key, watch_key, lock_key],
                    [*publication, lease.token],
                )
            )
        except StoreUnavailable as exc:
            logger.warning("faststate: %s was saved but not published: %s", lease.key, exc)
            return False
        return True

    async def save_many(
        self, items: Sequence[tuple[str, ReactiveState, float | None]]
    ) -> list[Exception | None]:
        """Every save of one event in one round trip: a pipeline, not a MULTI, as
        each save checks its own version (on a cluster, where pipelines run no
        scripts, the saves go out side by side)."""
        payloads = [encode(state) for _, state, _ in items]
        answers = await self._save_pipelined(items, payloads)
        if any(isinstance(answer, NoScriptError) for answer in answers):
            # Redis restarted (or flushed its scripts): nothing ran; load, once more.
            await self._call(self._router.single.script_load(_SAVE_IF_CURRENT))
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
        if self.cluster:  # no scripts in a cluster's pipelines: side by side instead
            return await self._call(
                asyncio.gather(
                    *(
                        self._script(
                            _SAVE_IF_CURRENT,
                            [self._key(key)],
                            [stored_version(state), stored_version(state) + 1, payload, _ms(ttl)],
                        )
                        for (key, state, ttl), payload in zip(items, payloads, strict=True)
                    ),
                    return_exceptions=True,
                )
            )
        sha = _SHA[_SAVE_IF_CURRENT]
        async with self._router.single.pipeline(transaction=False) as pipe:
            for (key, state, ttl), payload in zip(items, payloads, strict=True):
                expected = stored_version(state)
                pipe.evalsha(sha, 1, self._key(key), expected, expected + 1, payload, _ms(ttl))
            answers: list[Any] = await self._call(pipe.execute(raise_on_error=False))
        return answers

    async def delete(self, key: str) -> None:
        self._kept.pop(key, None)
        name = self._key(key)
        await self._call(self._router.call(name, lambda c: c.delete(name)))

    def lock(self, key: str) -> AbstractAsyncContextManager[Lease]:
        return _Locked(self, key)

    async def _acquire(self, key: str, deadline: float) -> _RenewedLease:
        """Take the lock and read the instance with it, polling while another holds it.

        One deadline bounds the whole wait: ``lock_wait``, and ``socket_timeout``
        after Redis last answered (it moves on with every answer)."""
        names = self.keys.of_event(key)
        state_key, lock_key, _, watch_key = names
        keys = [lock_key, state_key, watch_key]
        # Only unique, never secret: the module's generator (seeded from the OS,
        # and again in a forked worker) costs no system call, as uuid4 does.
        token = f"{random.getrandbits(128):032x}"
        kept = self._kept.pop(key, None)
        version = "" if kept is None else stored_version(kept)
        args = [token, max(1, int(self.lock_lease * 1000)), version]
        loop = asyncio.get_running_loop()
        # The short jittered poll keeps hand-over between workers fast.
        poll = 0.002 + random.random() * 0.003
        try:
            first = min(deadline, loop.time() + self.socket_timeout)
            async with self._alarms.deadline(first) as limit:
                while True:
                    sent = loop.time()
                    if sent >= deadline:
                        # Checked here too: a cancellation that reached the
                        # client mid-command may have been swallowed by it.
                        raise TimeoutError
                    taken = await self._script(_LOCK_LOAD, keys, args)
                    if taken:
                        lease = _RenewedLease(self, key, names, token, sent, taken[2:])
                        lease.watched = taken[1] == 1
                        lease.kept = kept
                        return lease
                    limit.reschedule(min(deadline, loop.time() + self.socket_timeout))
                    await asyncio.sleep(poll)
        except TimeoutError:
            # A SET cut short by the deadline may have taken the lock all the same.
            self._in_background(self._release_token(key, token, loop.time() + self.lock_lease))
            if loop.time() >= deadline:
                raise StoreUnavailable(f"{key} stayed locked for {self.lock_wait}s") from None
            raise StoreUnavailable(f"redis: no answer within {self.socket_timeout}s") from None
        except asyncio.CancelledError:
            self._in_background(self._release_token(key, token, loop.time() + self.lock_lease))
            raise
        except _RedisError as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    async def _release(self, lease: _RenewedLease) -> None:
        lease.stop()
        if lease.released:
            return
        # Shielded: a request cancelled while releasing (its client went away)
        # must still free the instance instead of leaving it locked for a lease.
        await asyncio.shield(
            self._in_background(self._release_token(lease.key, lease.token, lease.valid_until))
        )

    async def _extend(self, key: str, token: str, seconds: float) -> bool:
        """Renew a lock this process holds; False if it is no longer ours."""
        ms = max(1, int(seconds * 1000))
        renewed = await bounded(
            self._renewer.script(_EXTEND, _SHA[_EXTEND], [self.keys.lock(key)], [token, ms]),
            self.socket_timeout,
        )
        return bool(renewed)

    async def _release_token(self, key: str, token: str, expires: float) -> None:
        """Delete the lock if ``token`` still holds it, retrying until it would
        have expired anyway: a lock is never left behind for want of a connection."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                await bounded(
                    self._script(_RELEASE, [self.keys.lock(key)], [token]), self.socket_timeout
                )
                return
            except (_RedisError, OSError, TimeoutError):
                if loop.time() + _RELEASE_RETRY >= expires:
                    return
                await asyncio.sleep(_RELEASE_RETRY)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)
        return task

    def viewer_table(self) -> ViewerTable:
        """Seats in Redis on this store's connections, so every worker sees them."""
        return RedisViewers(self._router, self._sync, self.keys, self.socket_timeout)

    def default_broker(self) -> Broker:
        """Redis pub/sub on the same server, so changes reach every worker's pages
        (and are published by the save of the change itself)."""
        return RedisBroker(
            self.url,
            prefix=self.prefix,
            cluster=self.cluster,
            max_connections=self.max_connections,
            pool_timeout=self.pool_timeout,
            socket_timeout=self.socket_timeout,
        )

    async def aclose(self) -> None:
        if self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)
        await self._router.aclose()
        await self._renewer.aclose()
        if self._sync_client is not None:
            self._sync_client.close()


class _Locked:
    """``async with store.lock(key)``: the instance's lock in this process, then
    in Redis.  A class of its own, not an ``asynccontextmanager``: every event
    enters one, and a generator-based one costs it a few microseconds more."""

    __slots__ = ("_key", "_lease", "_local", "_store")

    def __init__(self, store: RedisStore, key: str) -> None:
        self._store = store
        self._key = key
        self._local = store._local.hold(key)
        self._lease: _RenewedLease | None = None

    async def __aenter__(self) -> Lease:
        store, key, local = self._store, self._key, self._local
        # One deadline for the queue in this process and for Redis: a waiter
        # behind others is answered within lock_wait, not after each of them.
        deadline = asyncio.get_running_loop().time() + store.lock_wait
        # Waiters of this process queue locally, so only one of them polls Redis.
        if key in store._local:  # others of this process hold it or wait: queue
            try:
                async with asyncio.timeout_at(deadline):
                    await local.__aenter__()
            except TimeoutError:
                raise StoreUnavailable(f"{key} stayed locked for {store.lock_wait}s") from None
        else:
            await local.__aenter__()  # free: taken at once
        try:
            self._lease = await store._acquire(key, deadline)
        except BaseException:
            await local.__aexit__(None, None, None)
            raise
        return self._lease

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._lease is not None:
                await self._store._release(self._lease)
        finally:
            await self._local.__aexit__(None, None, None)


class _RenewedLease(Lease):
    """The Redis lock of one running event, renewed every third of its lease.

    ``held`` turns false, for good, when a renewal fails or finds the lock
    gone or taken, and when the lease runs out unrenewed (``lock_timeout``
    reached, or this process too busy to renew in time).  ``record`` is the
    instance as read with the lock, until the holder loads it.
    """

    __slots__ = (
        "_limit",
        "_loop",
        "_lost",
        "_watchdog",
        "kept",
        "key",
        "names",
        "record",
        "released",
        "store",
        "token",
        "valid_until",
        "watched",
    )

    def __init__(
        self,
        store: RedisStore,
        key: str,
        names: tuple[str, str, str, str],
        token: str,
        sent: float,
        record: Any,
    ) -> None:
        self.store = store
        self.key = key
        #: The instance's state, lock, log and watch keys (``RedisKeys.of_event``).
        self.names = names
        self.token = token
        self.record: Any = record
        self.kept: ReactiveState | None = None
        #: Whether a page watched the instance when the lock was taken.
        self.watched = True
        self.released = False
        # Counted from when the SET was sent: Redis started the expiry later.
        self.valid_until = sent + store.lock_lease
        timeout = store.lock_timeout
        self._limit = float("inf") if timeout is None else sent + timeout
        self._lost = False
        # Kept: ``held`` is also asked from the database's worker thread, which
        # has no running loop (a loop's clock can be read from any thread).
        self._loop = asyncio.get_running_loop()
        # The watchdog starts at the first renewal: most events end before it.
        self._watchdog: Alarm | asyncio.Task[None] = store._alarms.call_at(
            self._loop.time() + store.lock_lease / 3, self._start_renewing
        )

    @property
    def held(self) -> bool:
        if not self._lost and self._loop.time() >= self.valid_until:
            # Lost stays lost: a caller may have acted on it before a late renewal.
            self._lost = True
        return not self._lost

    def _start_renewing(self) -> None:
        self._watchdog = self._loop.create_task(self._renew())

    async def _renew(self) -> None:
        loop = asyncio.get_running_loop()
        lease = self.store.lock_lease
        while True:
            sent = loop.time()
            if sent >= self.valid_until:
                self._lost = True  # it may have expired and been taken meanwhile
                return
            extension = min(lease, self._limit - sent)
            if extension < 0.001:
                return  # lock_timeout reached: the lease runs out, held with it
            try:
                renewed = await self.store._extend(self.key, self.token, extension)
            except (_RedisError, OSError, TimeoutError):
                renewed = False
            if not renewed:
                self._lost = True  # not renewed, or owned by another holder by now
                return
            self.valid_until = sent + extension
            await asyncio.sleep(lease / 3)

    def stop(self) -> None:
        self._watchdog.cancel()


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
