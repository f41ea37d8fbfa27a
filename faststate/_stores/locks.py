"""Per-key locks for one process, with nothing kept for keys nobody holds.

An uncontended acquire costs a dict insert; waiters queue in order and the
lock passes straight to the next one on release.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType

from faststate._stores.base import HELD, Lease


class KeyLocks:
    """``async with locks.hold(key)``: one holder per key in this process."""

    def __init__(self) -> None:
        # key → its waiters; None while held without contention
        self._held: dict[str, deque[asyncio.Future[None]] | None] = {}

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, key: str) -> bool:
        """Whether ``key`` is held (so a ``hold`` of it would wait)."""
        return key in self._held

    def hold(self, key: str) -> _Held:
        return _Held(self, key)

    async def _wait(self, key: str) -> None:
        waiters = self._held[key]
        if waiters is None:
            waiters = self._held[key] = deque()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(key)  # the lock was handed over just as we gave up
            elif future in waiters:
                waiters.remove(future)
            raise

    def release(self, key: str) -> None:
        waiters = self._held[key]
        while waiters:
            future = waiters.popleft()
            if not future.done():
                future.set_result(None)  # ownership passes to this waiter
                return
        del self._held[key]


class _Held:
    __slots__ = ("key", "locks")

    def __init__(self, locks: KeyLocks, key: str) -> None:
        self.locks = locks
        self.key = key

    async def __aenter__(self) -> Lease:
        held = self.locks._held
        if self.key not in held:  # the common case, without another coroutine
            held[self.key] = None
            return HELD
        await self.locks._wait(self.key)
        return HELD

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        held = self.locks._held
        if held[self.key]:
            self.locks.release(self.key)
        else:  # nobody waits, the common case: no call to hand the lock over
            del held[self.key]
