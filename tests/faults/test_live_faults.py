"""Live pages under faults: a store that loses its data leaves no page stale."""

from __future__ import annotations

import asyncio

import httpx

from faststate import RedisStore
from tests.faults.support import PrivateRedis
from tests.live import HEADERS, Stream, make_app, open_page
from tests.support import run_server


async def _bump(client: httpx.AsyncClient) -> httpx.Response:
    """One event, retried while the app reconnects to Redis (bounded)."""
    for _ in range(50):
        response = await client.post("/Board/bump", headers=HEADERS, content="{}")
        if response.status_code == 200:
            return response
        await asyncio.sleep(0.1)
    raise AssertionError(f"the event kept failing: {response.status_code} {response.text}")


async def _count_shown(stream: Stream, wanted: int, within: float = 10.0) -> int | None:
    """The last count the page was sent once it reached ``wanted``, or what it showed last."""
    shown: int | None = None
    try:
        async with asyncio.timeout(within):
            while shown != wanted:
                sse = await stream.next(within)
                if sse.signals and "count" in sse.signals.get("Board", {}):
                    shown = sse.signals["Board"]["count"]
    except TimeoutError:
        pass
    return shown


async def test_open_pages_converge_after_redis_loses_its_data(private_redis: PrivateRedis) -> None:
    """Versions start again after a reset; the page must notice and take the new state."""
    store = RedisStore(private_redis.url, prefix="faststate-live-reset:")
    with run_server(make_app(store=store)) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            for _ in range(5):
                await _bump(client)
            url = await open_page(client)
            async with client.stream("GET", url, headers={"Datastar-Request": "true"}) as response:
                stream = Stream(response)
                # The page shows count 5 already (a resync on subscribing may repeat it).
                assert await _count_shown(stream, -1, within=1.0) in (None, 5)
                private_redis.restart()  # every key gone: the board starts again at 0
                await asyncio.sleep(2.0)  # the broker is subscribed again by now
                await _bump(client)  # count 1, at a version far below the page's
                assert await _count_shown(stream, 1) == 1
                await _bump(client)
                assert await _count_shown(stream, 2) == 2
