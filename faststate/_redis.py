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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

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
        return await self.call(
            keys[0], lambda client: run_script(client, script, sha, keys, args)
        )

    async def aclose(self) -> None:
        for client in self._nodes.values():
            await client.aclose()
        self._nodes.clear()
        if self._single is not None:
            await self._single.aclose()
        if self._map is not None:
            await self._map.aclose()


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


async def run_script(client: Any, script: str, sha: str, keys: list[str], args: list[Any]) -> Any:
    """EVALSHA, or EVAL when the server does not know the script (yet, or after a restart)."""
    try:
        return await client.evalsha(sha, len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        return await client.eval(script, len(keys), *keys, *args)


def script_sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


async def bounded(call: Awaitable[T], seconds: float | None) -> T:
    """``call``, given at most ``seconds``; a cut-off command closes its connection."""
    if seconds is None:
        return await call
    async with asyncio.timeout(seconds):
        return await call
