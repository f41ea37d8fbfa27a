"""Live pages under faults: a store that loses its data leaves no page stale."""

from __future__ import annotations

import asyncio
import re

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from faststate import RedisStore, SQLPersistence, StateScope, live, use_state
from tests.apps import state_app
from tests.faults.support import PrivateRedis
from tests.live import HEADERS, Board, Stream, make_app, open_page
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


def _persisted_board_app(store: RedisStore, database_url: str) -> Starlette:
    async def page(request: Request) -> JSONResponse:
        use_state(request, Board)
        ((_, expression),) = [(k, v) for k, v in live(request).items() if k != "data-signals"]
        url = re.search(r'"(/_faststate/live\?t=[^"]+)"', expression)
        assert url is not None
        return JSONResponse({"url": url.group(1)})

    return state_app(
        {Board: {"scope": StateScope.GLOBAL, "auto_persist": True}},
        routes=[Route("/page", page)],
        store=store,
        persistence=SQLPersistence(database_url),
    )


async def test_a_reload_from_the_database_keeps_versions_so_pages_just_go_on(
    private_redis: PrivateRedis, postgres_url: str
) -> None:
    """Redis loses its data; the instance comes back from the database with its
    version, so an open page gets the next change as a plain patch, not a resync."""
    store = RedisStore(private_redis.url, prefix="faststate-live-reload:")
    with run_server(_persisted_board_app(store, postgres_url)) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            for _ in range(3):
                await _bump(client)
            url = await open_page(client)
            async with client.stream("GET", url, headers={"Datastar-Request": "true"}) as response:
                stream = Stream(response)
                assert await _count_shown(stream, -1, within=1.0) in (None, 3)
                private_redis.restart()
                await asyncio.sleep(2.0)  # the broker is subscribed again by now
                await _bump(client)  # loaded from the database at count 3, now 4
                sse = await stream.next(10.0)
                while "count" not in (sse.signals or {}).get("Board", {}):
                    sse = await stream.next(10.0)
                assert sse.signals == {"Board": {"count": 4}}  # a patch, not the whole state
                assert sse.id is not None and int(sse.id) & 0xFFFFFFFF == 4  # the fourth save
