"""Deadlines and alarms of many coroutines on a few shared timers.

An event on Redis bounds each of its two round trips by ``socket_timeout``
and arms its lock's renewal a third of ``lock_lease`` ahead.
``asyncio.timeout`` and ``loop.call_later`` give each of those a timer
handle of its own, pushed on and cancelled off the loop's heap: 4-7 µs
apiece, as much as the store's own code around a round trip.  Here the
alarms due in the same tick (``TICK`` seconds) share one timer handle, and
arming or disarming one is a set insert or removal.  An alarm rings up to a
tick late, which no deadline of seconds notices.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Final

#: The granularity of alarms, in seconds.
TICK: Final = 0.01


class Alarm:
    """One callback, rung once by its ``Alarms`` unless cancelled first."""

    __slots__ = ("_due", "callback")

    def __init__(self, callback: Callable[[], object]) -> None:
        self.callback = callback
        self._due: set[Alarm] | None = None

    def cancel(self) -> None:
        due = self._due
        if due is not None:
            due.discard(self)
            self._due = None


class Alarms:
    """The alarms of one event loop, by tick; one timer handle per tick that has any.

    Used from another loop (a test's, a thread's), it starts afresh: the
    former loop's alarms could not ring in it anyway.
    """

    __slots__ = ("_loop", "_ticks")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ticks: dict[int, set[Alarm]] = {}

    def arm(self, alarm: Alarm, when: float) -> None:
        """Ring ``alarm`` at loop time ``when`` (at most a tick later), replacing
        any time it was armed for."""
        alarm.cancel()
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._ticks = loop, {}
        tick = int(when / TICK) + 1
        due = self._ticks.get(tick)
        if due is None:
            due = self._ticks[tick] = set()
            loop.call_at(tick * TICK, self._ring, tick)
        due.add(alarm)
        alarm._due = due

    def call_at(self, when: float, callback: Callable[[], object]) -> Alarm:
        """``callback()`` at loop time ``when``, unless the alarm returned is cancelled."""
        alarm = Alarm(callback)
        self.arm(alarm, when)
        return alarm

    def deadline(self, when: float) -> Deadline:
        """``async with alarms.deadline(when)``: as ``asyncio.timeout_at(when)``."""
        return Deadline(self, when)

    def _ring(self, tick: int) -> None:
        due = self._ticks.pop(tick, None)
        if not due:
            return
        for alarm in list(due):
            alarm._due = None
            alarm.callback()


class Deadline:
    """``asyncio.timeout_at`` on shared timers: the task is cancelled when
    ``when`` passes inside the block, and the block raises ``TimeoutError``."""

    __slots__ = ("_alarm", "_alarms", "_cancelling", "_expired", "_task", "_when")

    def __init__(self, alarms: Alarms, when: float) -> None:
        self._alarms = alarms
        self._when = when
        self._alarm = Alarm(self._expire)
        self._expired = False
        self._cancelling = 0
        self._task: asyncio.Task[object] | None = None

    async def __aenter__(self) -> Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a Deadline must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._alarms.arm(self._alarm, self._when)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._alarm.cancel()
        if self._expired:
            assert self._task is not None
            # As asyncio.Timeout: only a cancellation of its own becomes a
            # TimeoutError; one from outside as well goes on as it is.
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    def reschedule(self, when: float) -> None:
        """Move the deadline (not once it has passed)."""
        if not self._expired:
            self._when = when
            self._alarms.arm(self._alarm, when)

    def _expire(self) -> None:
        self._expired = True
        assert self._task is not None
        self._task.cancel()
