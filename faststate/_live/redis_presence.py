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
from collections.abc import Callable, Collection
from typing import Any

from faststate._live.presence import Seat, ViewerTable, labels_of
from faststate._redis import RedisKeys, bounded


class RedisViewers(ViewerTable):
    """Seats in Redis, on the store's own connection pools (a server's or a cluster's);
    each round trip given at most ``timeout`` seconds."""

    def __init__(
        self, client: Any, sync: Callable[[], Any], keys: RedisKeys, timeout: float
    ) -> None:
        self._redis = client
        self._sync = sync
        self._keys = keys
        self._timeout = timeout

    def _key(self, key: str) -> str:
        return self._keys.viewers(key)

    async def add(self, seat: Seat, ttl: float) -> None:
        await self.refresh((seat,), ttl)

    async def remove(self, seat: Seat) -> None:
        await bounded(self._redis.zrem(self._key(seat.key), _member(seat)), self._timeout)

    async def refresh(self, seats: Collection[Seat], ttl: float) -> None:
        if not seats:
            return
        expiry = _now_ms() + int(ttl * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in {seat.key for seat in seats}:
                mine = {_member(s): expiry for s in seats if s.key == key}
                pipe.zadd(self._key(key), mine)
                pipe.pexpire(self._key(key), int(ttl * 1000))
            await bounded(pipe.execute(), self._timeout)

    async def read(self, keys: Collection[str]) -> dict[str, list[str]]:
        now, ordered = _now_ms(), list(keys)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in ordered:
                pipe.zremrangebyscore(self._key(key), "-inf", now)
                pipe.zrange(self._key(key), 0, -1)
            answers = await bounded(pipe.execute(), self._timeout)
        return {key: _labels(answers[2 * i + 1]) for i, key in enumerate(ordered)}

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
