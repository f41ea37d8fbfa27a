"""Redis connections and key layout, shared by the Redis store, broker and presence.

Every Redis key and channel of one instance carries the instance key as a
hash tag (``{prefix}state:{<key>}``), so on a Redis Cluster they all live in
one hash slot: one script can lock, load, save, log and publish an instance
at once.  ``redis+cluster://`` (or ``rediss+cluster://``) URLs, or
``cluster=True``, connect to a cluster; there, changes travel by sharded
pub/sub (``SPUBLISH``/``SSUBSCRIBE``, Redis 7), each on the node that owns
the instance, and ``Router`` sends every command to the node that owns its
key (redis-py's asyncio ``RedisCluster`` only keeps the slot map: its own
pools fail past ``max_connections`` instead of queueing, and under load they
dropped connections in use).

The publication of a change is one Lua snippet, ``PUBLISH_LUA``, run by the
broker's own publish script and, when the store and broker share a Redis, as
the tail of the store's save script: the change goes to the instance's replay
log and channel only while some page watches the instance, which the
broker marks with the instance's ``watch`` key.
"""

from __future__ import annotations

import asyncio
import hashlib
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import hiredis
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.backoff
import redis.cluster
from redis.maint_notifications import MaintNotificationsConfig

T = TypeVar("T")

_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


@dataclass(frozen=True)
class Server:
    """Where Redis is: a plain URL, and whether it names a cluster."""

    url: str
    cluster: bool

    @classmethod
    def of(cls, url: str, cluster: bool | None = None) -> Server:
        scheme, sep, rest = url.partition("://")
        plain = _CLUSTER_SCHEMES.get(scheme.lower())
        if plain is not None:
            return cls(f"{plain}{sep}{rest}", True if cluster is None else cluster)
        return cls(url, bool(cluster))

    def async_client(
        self, *, max_connections: int, pool_timeout: float, connect_timeout: float
    ) -> Any:
        """The asyncio client of a single server (a cluster's: ``Router``).  No
        per-command socket timeout: callers bound their own waits (one deadline
        per round trip, see ``bounded``)."""
        return redis.asyncio.Redis.from_pool(
            redis.asyncio.BlockingConnectionPool.from_url(
                self.url,
                max_connections=max_connections,
                timeout=pool_timeout,
                socket_timeout=None,
                socket_connect_timeout=connect_timeout,
            )
        )

    def node_client(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float,
        max_connections: int = 1,
        pool_timeout: float = 5.0,
    ) -> Any:
        """A plain client of one node of the cluster, with the URL's credentials
        and TLS."""
        parts = urllib.parse.urlsplit(self.url)
        credentials, at, _ = parts.netloc.rpartition("@")
        netloc = f"{credentials}{at}{host}:{port}"
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        return Server(url, False).async_client(
            max_connections=max_connections,
            pool_timeout=pool_timeout,
            connect_timeout=connect_timeout,
        )

    def sync_client(self, *, socket_timeout: float) -> Any:
        """The blocking client of sync page handlers (a socket timeout costs nothing there)."""
        if self.cluster:
            return redis.cluster.RedisCluster.from_url(
                self.url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
            )
        return redis.Redis.from_url(
            self.url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )


class Router:
    """Sends each command to the connection pool of the server, or on a cluster
    to the pool of the node that owns the command's key.

    On a cluster, a ``RedisCluster`` client only keeps the map of slots to nodes;
    commands go through one plain client per node, whose pool queues commands
    beyond ``max_connections`` (for up to ``pool_timeout``) instead of failing.
    A node that answers MOVED or ASK did not run the command: the map is read
    again and the command sent once more to the new owner.
    """

    def __init__(
        self, server: Server, *, max_connections: int, pool_timeout: float, connect_timeout: float
    ) -> None:
        self.server = server
        self._options = {
            "max_connections": max_connections,
            "pool_timeout": pool_timeout,
            "connect_timeout": connect_timeout,
        }
        self._single: Any = None
        self._map: Any = None
        if server.cluster:
            self._map = redis.asyncio.cluster.RedisCluster.from_url(
                server.url,
                socket_timeout=None,
                socket_connect_timeout=connect_timeout,
                retry=redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 0),
                maint_notifications_config=MaintNotificationsConfig(enabled=False),
            )
        else:
            self._single = server.async_client(
                max_connections=max_connections,
                pool_timeout=pool_timeout,
                connect_timeout=connect_timeout,
            )
        self._nodes: dict[str, Any] = {}
        self._lanes: dict[str, Lane] = {}
        self._single_lane = (
            None
            if self._single is None
            else Lane(self._single.connection_pool, max_connections, pool_timeout)
        )

    @property
    def single(self) -> Any:
        """The one client of a single server (None on a cluster)."""
        return self._single

    async def node_of(self, key: str) -> tuple[str, str, int]:
        """(name, host, port) of the node that owns ``key`` (of the server, off a cluster)."""
        if self._map is None:
            return "", "", 0
        await self._map.initialize()
        node = self._map.get_node_from_key(key)
        return str(node.name), str(node.host), int(node.port)

    async def client(self, key: str) -> Any:
        """The client to send a command on ``key`` with."""
        if self._single is not None:
            return self._single
        name, host, port = await self.node_of(key)
        client = self._nodes.get(name)
        if client is None:
            client = self._nodes[name] = self.server.node_client(
                host,
                port,
                connect_timeout=self._options["connect_timeout"],
                max_connections=int(self._options["max_connections"]),
                pool_timeout=self._options["pool_timeout"],
            )
        return client

    async def lane(self, key: str) -> Lane:
        """The lane of the server (or node) that owns ``key``: where events send their commands."""
        if self._single_lane is not None:
            return self._single_lane
        name, _, _ = await self.node_of(key)
        lane = self._lanes.get(name)
        if lane is None:
            client = await self.client(key)
            lane = self._lanes[name] = Lane(
                client.connection_pool,
                int(self._options["max_connections"]),
                self._options["pool_timeout"],
            )
        return lane

    async def by_client(self, names: list[str]) -> list[tuple[Any, list[int]]]:
        """The positions of ``names`` grouped by the client to send them with
        (one pipeline per node)."""
        groups: dict[int, tuple[Any, list[int]]] = {}
        for position, name in enumerate(names):
            client = await self.client(name)
            groups.setdefault(id(client), (client, []))[1].append(position)
        return list(groups.values())

    async def refresh(self) -> None:
        """Read the map of slots again (a slot moved)."""
        if self._map is not None:
            await self._map.nodes_manager.initialize()

    async def call(self, key: str, command: Callable[[Any], Awaitable[T]]) -> T:
        """``command(client)`` on the client of ``key``; once more after MOVED or ASK."""
        try:
            return await command(await self.client(key))
        except (redis.exceptions.MovedError, redis.exceptions.AskError):
            await self.refresh()
            return await command(await self.client(key))

    async def script(self, script: str, sha: str, keys: list[str], args: list[Any]) -> Any:
        """Run a script whose keys share one slot, on the node that owns them."""
        lane = self._single_lane
        if lane is not None:  # one server: no slots to look up, no MOVED to follow
            return await lane.script(script, sha, keys, args)
        return await self.on_lane(keys[0], lambda lane: lane.script(script, sha, keys, args))

    async def execute(self, key: str, *command: Any) -> Any:
        """One command on ``key``, on the lane of the node that owns it."""
        lane = self._single_lane
        if lane is not None:
            return await lane.execute(*command)
        return await self.on_lane(key, lambda lane: lane.execute(*command))

    async def on_lane(self, key: str, command: Callable[[Lane], Awaitable[T]]) -> T:
        """``command(lane)`` on the lane of ``key``'s node; once more after MOVED or
        ASK (as ``call`` does on clients)."""
        try:
            return await command(await self.lane(key))
        except (redis.exceptions.MovedError, redis.exceptions.AskError):
            await self.refresh()
            return await command(await self.lane(key))

    async def aclose(self) -> None:
        for lane in (self._single_lane, *self._lanes.values()):
            if lane is not None:
                await lane.aclose()
        self._lanes.clear()
        for client in self._nodes.values():
            await client.aclose()
        self._nodes.clear()
        if self._single is not None:
            await self._single.aclose()
        if self._map is not None:
            await self._map.aclose()


class Lane:
    """Connections of one server that run an event's commands (scripts and
    loads), each kept here between two.

    They are most of what events send, and redis-py's pool is slow for
    them: handing a connection out goes through an ``asyncio.Condition`` and
    a check for unread data, and giving it back again, which costs as much
    CPU as the round trip itself.  A connection kept here goes straight to
    the next command.  redis-py closes a connection whose command was cut
    short (an error, a deadline, a cancellation), so no reply is ever read
    by the wrong command; one closed, by either side, connects again before
    it is used.  At most ``limit`` commands run at once; more wait their
    turn, for up to ``wait`` seconds.

    Args:
        pool: The pool whose connection options (URL, credentials, TLS) the
            lane's connections take; none of its connections is used.
        limit: The most connections, and commands running at once.
        wait: Seconds a command may wait for its turn (then ``ConnectionError``).
    """

    def __init__(self, pool: Any, limit: int, wait: float) -> None:
        self._pool = pool
        self._limit = limit
        self._wait = wait
        self._idle: list[Any] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._turns = _Turns(limit)

    async def script(self, script: str, sha: str, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA, or EVAL when the server does not know the script (yet, or after a restart)."""
        try:
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return await self.execute("EVAL", script, len(keys), *keys, *args)

    async def execute(self, *command: Any) -> Any:
        """One command and its reply (an error reply raised, as redis-py raises it)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._move_to(loop)
        turns = self._turns
        await turns.take(self._wait)
        try:
            connection = self._idle.pop() if self._idle else self._pool.make_connection()
            if _hung_up(connection):
                # Closed by the server (a restart, a proxy) while idle: a
                # command sent on it now would fail without having run.
                await connection.disconnect()
            try:
                await connection.send_packed_command(
                    _packed(connection, command), check_health=False
                )
                return await connection.read_response()
            finally:
                if self._loop is loop:
                    self._idle.append(connection)
                else:  # another loop took the lane over meanwhile: not for it
                    await connection.disconnect(nowait=True)
        finally:
            turns.give()

    def _move_to(self, loop: asyncio.AbstractEventLoop) -> None:
        """Served by another event loop (a test's, a thread's): connections and
        turns of the former one cannot be used from it."""
        self._loop = loop
        self._idle.clear()
        self._turns = _Turns(self._limit)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.disconnect()


class _Turns:
    """At most ``limit`` commands of a lane at once; the others wait in line, for
    up to ``wait`` seconds each, and a turn given back passes straight to the
    first in line.  (asyncio's ``Semaphore`` walks its waiters with a generator
    on every acquire, which each command of an event would pay twice.)"""

    __slots__ = ("_free", "_line")

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._line: deque[asyncio.Future[None]] = deque()

    async def take(self, wait: float) -> None:
        # While any turn is free nobody waits: ``give`` serves the line first.
        if self._free > 0:
            self._free -= 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._line.append(turn)
        try:
            async with asyncio.timeout(wait):
                await turn
        except BaseException as exc:
            if turn.done() and not turn.cancelled():
                self.give()  # handed over just as the wait ended: to the next one
            else:
                turn.cancel()  # left in the line, where ``give`` passes over it
            if isinstance(exc, TimeoutError):
                raise redis.exceptions.ConnectionError(
                    f"no free connection within {wait}s"
                ) from None
            raise

    def give(self) -> None:
        line = self._line
        while line:
            turn = line.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1


def _packed(connection: Any, command: tuple[Any, ...]) -> bytes:
    """``command`` in RESP, byte for byte as ``connection.pack_command`` writes it.

    hiredis packs it in C, at a third of the cost, whenever the connection
    encodes text as strict UTF-8 (redis-py's default) and every argument is a
    str, int, float, bytes or memoryview, which it writes as redis-py does;
    anything else goes through redis-py, which also refuses what Redis cannot
    take."""
    encoder = connection.encoder
    if encoder.encoding_errors == "strict" and encoder.encoding.lower() in _UTF8:
        try:
            packed: bytes = hiredis.pack_command(command)
            return packed
        except TypeError:  # another kind of argument (a bool, None, a bytearray)
            pass
    return b"".join(connection.pack_command(*command))


_UTF8 = frozenset(("utf-8", "utf8"))


def _hung_up(connection: Any) -> bool:
    """Whether the server closed ``connection`` while it sat idle, as asyncio
    noted when it happened (no system call, unlike redis-py's health check)."""
    reader = getattr(connection, "_reader", None)
    return reader is not None and (reader.at_eof() or reader.exception() is not None)


class RedisKeys:
    """The names of one app's keys and channels (``prefix``), each hash-tagged by instance."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("a Redis prefix must not contain braces (they make hash tags)")
        self.prefix = prefix

    def _name(self, kind: str, key: str) -> str:
        return f"{self.prefix}{kind}:{{{key}}}"

    def state(self, key: str) -> str:
        return self._name("state", key)

    def lock(self, key: str) -> str:
        return self._name("lock", key)

    def log(self, key: str) -> str:
        """The replay log: a capped Stream of the instance's recent changes."""
        return self._name("log", key)

    def watch(self, key: str) -> str:
        """Present while a page somewhere watches the instance (or did within the replay window)."""
        return self._name("watch", key)

    def channel(self, key: str) -> str:
        return self._name("push", key)

    def of_event(self, key: str) -> tuple[str, str, str, str]:
        """The state, lock, log and watch keys of one instance: all an event
        uses, named once for it."""
        name = self._name
        return name("state", key), name("lock", key), name("log", key), name("watch", key)

    def viewers(self, key: str) -> str:
        return self._name("viewers", key)


#: Appends a change to the replay log and publishes it, if the instance is watched.
#: Its KEYS and ARGV start at ``K`` and ``A``: KEYS[K] log, KEYS[K+1] watch;
#: ARGV[A] change json ('' none), ARGV[A+1] channel, ARGV[A+2] replay size,
#: ARGV[A+3] replay window ms, ARGV[A+4] 'PUBLISH' or 'SPUBLISH'.
PUBLISH_LUA = """
local function publish(K, A)
  if ARGV[A] == '' or redis.call('EXISTS', KEYS[K + 1]) == 0 then return 0 end
  if ARGV[A + 2] ~= '0' then
    redis.call('XADD', KEYS[K], 'MAXLEN', '~', ARGV[A + 2], '*', 'c', ARGV[A])
    redis.call('PEXPIRE', KEYS[K], ARGV[A + 3])
  end
  redis.call(ARGV[A + 4], ARGV[A + 1], ARGV[A])
  return 1
end
"""


@dataclass(frozen=True)
class Publication:
    """What ``PUBLISH_LUA`` needs for one change: its JSON and the broker's settings."""

    message: str
    channel: str
    replay_size: int
    replay_window_ms: int
    command: str

    def args(self) -> list[str | int]:
        return [self.message, self.channel, self.replay_size, self.replay_window_ms, self.command]


def script_sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


async def bounded(call: Awaitable[T], seconds: float | None) -> T:
    """``call``, given at most ``seconds``; a cut-off command closes its connection."""
    if seconds is None:
        return await call
    async with asyncio.timeout(seconds):
        return await call
