"""Deadlines on shared timers behave as ``asyncio.timeout_at`` does."""

from __future__ import annotations

import asyncio

import pytest

from faststate._deadlines import TICK, Alarms


async def test_a_deadline_that_passes_inside_the_block_raises_timeout_error() -> None:
    alarms = Alarms()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        async with alarms.deadline(started + 0.05):
            await asyncio.sleep(5)
    assert 0.05 <= loop.time() - started < 1  # not the 5 s the block would take


async def test_a_block_done_in_time_is_left_alone_afterwards() -> None:
    alarms = Alarms()
    loop = asyncio.get_running_loop()
    async with alarms.deadline(loop.time() + 0.05):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # past the deadline: no cancellation arrives


async def test_a_rescheduled_deadline_counts_from_its_new_time() -> None:
    alarms = Alarms()
    loop = asyncio.get_running_loop()
    async with alarms.deadline(loop.time() + 0.05) as limit:
        limit.reschedule(loop.time() + 5)
        await asyncio.sleep(0.15)  # past the first time, well before the new one
    with pytest.raises(TimeoutError):
        async with alarms.deadline(loop.time() + 5) as limit:
            limit.reschedule(loop.time() + 0.05)
            await asyncio.sleep(1)


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    alarms = Alarms()
    loop = asyncio.get_running_loop()

    async def guarded() -> None:
        async with alarms.deadline(loop.time() + 5):
            await asyncio.sleep(5)

    task = asyncio.create_task(guarded())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_nested_deadlines_raise_in_the_block_whose_time_passed() -> None:
    alarms = Alarms()
    loop = asyncio.get_running_loop()
    async with alarms.deadline(loop.time() + 5):
        with pytest.raises(TimeoutError):
            async with alarms.deadline(loop.time() + 0.03):
                await asyncio.sleep(1)
        await asyncio.sleep(0.05)  # the outer one is still running, untouched


async def test_alarms_ring_once_unless_cancelled_and_share_a_timer_per_tick() -> None:
    alarms = Alarms()
    loop = asyncio.get_running_loop()
    rung: list[int] = []
    when = loop.time() + 0.03
    kept = [alarms.call_at(when, lambda n=n: rung.append(n)) for n in range(100)]
    for alarm in kept[50:]:
        alarm.cancel()
    assert len(alarms._ticks) == 1  # a hundred alarms, one timer handle
    await asyncio.sleep(0.03 + 2 * TICK + 0.02)
    assert sorted(rung) == list(range(50))
    await asyncio.sleep(0.05)
    assert len(rung) == 50


def test_alarms_follow_the_loop_that_uses_them() -> None:
    """A store may serve one event loop after another (tests, threads)."""
    alarms = Alarms()

    async def times_out() -> bool:
        try:
            async with alarms.deadline(asyncio.get_running_loop().time() + 0.02):
                await asyncio.sleep(1)
        except TimeoutError:
            return True
        return False

    assert asyncio.run(times_out())
    assert asyncio.run(times_out())
