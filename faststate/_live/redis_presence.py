"""Presence in Redis: a sorted set of seats per instance, scored by expiry time.

A member is ``[viewer, label, page]`` as JSON.  Every process refreshes its
own seats each heartbeat and every read first drops the expired ones, so the
seats of a killed worker vanish within two heartbeats; the set itself expires
with its last seat.  Expiry times come from each worker's clock, which must
agree with the others' to well within a heartbeat.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from redis.exceptions import AskError, MovedError

from faststate._live.presence import Seat, ViewerTable, labels_of
from faststate._redis import RedisKeys, Router, bounded


class RedisViewers(ViewerTable):
    """Seats in Redis, on the store's own connections (a server's, or each node's
    of a cluster); each round trip given at most ``timeout`` seconds."""

    def __init__(
        self, router: Router, sync: Callable[[], Any], keys: RedisKeys, timeout: float
    ) -> None:
        self._router = router
        self._sync = sync
        self._keys = keys
        self._timeout = timeout

    def _key(self, key: str) -> str:
        return self._keys.viewers(key)

    async def add(self, seat: Seat, ttl: float) -> None:
        await self.refresh((seat,), ttl)

    async def remove(self, seat: Seat) -> None:
        name, member = self._key(seat.key), _member(seat)
        await bounded(self._router.call(name, lambda c: c.zrem(name, member)), self._timeout)

    async def refresh(self, seats: Collection[Seat], ttl: float) -> None:
        if not seats:
            return
        expiry, ms = _now_ms() + int(ttl * 1000), int(ttl * 1000)
        keys = sorted({seat.key for seat in seats})
        names = [self._key(key) for key in keys]

        async def send() -> None:
            for client, positions in await self._router.by_client(names):
                async with client.pipeline(transaction=False) as pipe:
                    for position in positions:
                        mine = {_member(s): expiry for s in seats if s.key == keys[position]}
                        pipe.zadd(names[position], mine)
                        pipe.pexpire(names[position], ms)
                    await pipe.execute()

        await bounded(self._moving(send), self._timeout)

    async def read(self, keys: Collection[str]) -> dict[str, list[str]]:
        now, ordered = _now_ms(), list(keys)
        names = [self._key(key) for key in ordered]
        labels: dict[str, list[str]] = {}

        async def send() -> None:
            for client, positions in await self._router.by_client(names):
                async with client.pipeline(transaction=False) as pipe:
                    for position in positions:
                        pipe.zremrangebyscore(names[position], "-inf", now)
                        pipe.zrange(names[position], 0, -1)
                    answers = await pipe.execute()
                for index, position in enumerate(positions):
                    labels[ordered[position]] = _labels(answers[2 * index + 1])

        await bounded(self._moving(send), self._timeout)
        return labels

    async def _moving(self, send: Callable[[], Awaitable[None]]) -> None:
        """``send()``, once more after reading the cluster's map again if a slot moved."""
        try:
            await send()
        except (MovedError, AskError):
            await self._router.refresh()
            await send()

    def read_sync(self, key: str) -> list[str]:
        return _labels(self._sync().zrangebyscore(self._key(key), _now_ms(), "+inf"))


def _member(seat: Seat) -> str:
    return json.dumps([seat.viewer, seat.label, seat.page], separators=(",", ":"))


def _labels(members: Any) -> list[str]:
    seats = []
    for member in members:
        viewer, label, _ = json.loads(member)
        seats.append((str(viewer), str(label)))
    return labels_of(seats)


def _now_ms() -> int:
    return int(time.time() * 1000)
