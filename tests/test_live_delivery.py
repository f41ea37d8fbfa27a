"""Live pages see every change exactly once, in order, elements included: the page
that fired an event is not sent it again, changes that show nothing leave no
gap, and a page reconnecting within the replay window gets what it missed.

Over a real uvicorn server, with the in-process broker and with Redis.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fasthtml.common import Li
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from faststate import ReactiveState, StateScope, event, live, use_state
from faststate.testing import parse_sse

from .apps import SECRET, state_app
from .live import HEADERS, Stream
from .support import free_port, run_server, start_example


class Feed(ReactiveState):
    count: int = 0

    @event(broadcast=True, selector="#posts", mode="append")
    def post(self, text: str) -> Any:
        self.count += 1
        return Li(text, id=f"post-{self.count}")

    @event(selector="#mine", mode="inner")
    def peek(self) -> Any:
        return Li("for this page only")  # changes nothing, sent to the caller only

    @event
    def nothing(self) -> None:
        pass


def feed_app(**options: Any) -> Any:
    async def page(request: Request) -> JSONResponse:
        use_state(request, Feed)
        attributes = live(request)
        stream = next(v for k, v in attributes.items() if k != "data-signals")
        url = re.search(r'"(/_faststate/live\?t=[^"]+)"', stream)
        assert url is not None
        page_id = json.loads(attributes["data-signals"])["_faststatePage"]
        return JSONResponse({"url": url.group(1), "page": page_id})

    return state_app({Feed: StateScope.GLOBAL}, routes=[Route("/page", page)], **options)


@pytest.fixture(params=["memory", "redis"])
def base(request: pytest.FixtureRequest) -> Iterator[str]:
    options: dict[str, Any] = {}
    if request.param == "redis":
        from faststate import RedisStore

        url = request.getfixturevalue("redis_url")
        options["store"] = RedisStore(url, prefix=request.getfixturevalue("redis_prefix"))
    with run_server(feed_app(**options)) as url:
        yield url


class Page:
    """One open page: its id and its live stream."""

    def __init__(self, client: httpx.AsyncClient, page: dict[str, str], stream: Stream) -> None:
        self.client = client
        self.id = page["page"]
        self.url = page["url"]
        self.stream = stream

    async def fire(self, name: str, **params: str) -> httpx.Response:
        body = json.dumps({"_faststatePage": self.id, **params})
        return await self.client.post(f"/Feed/{name}", headers=HEADERS, content=body)

    def last_id(self) -> str:
        ids = re.findall(r"^id: (\S+)$", self.stream.raw, flags=re.M)
        assert ids, self.stream.raw
        return str(ids[-1])


async def open_page(client: httpx.AsyncClient, **headers: str) -> AsyncIterator[Page]:
    page = (await client.get("/page")).json()
    request_headers = {"Datastar-Request": "true", **headers}
    async with client.stream("GET", page["url"], headers=request_headers) as response:
        assert response.status_code == 200
        stream = Stream(response)
        await stream.nothing_within(0.2)  # the page already shows what the stream has
        yield Page(client, page, stream)
        stream.reader.cancel()


async def test_a_broadcast_reaches_every_other_page_once_and_not_its_own(base: str) -> None:
    async with httpx.AsyncClient(base_url=base) as a, httpx.AsyncClient(base_url=base) as b:
        async for alice in open_page(a):
            async for bob in open_page(b):
                answer = await alice.fire("post", text="hello")
                events = parse_sse(answer.text)
                assert [e.type for e in events] == [
                    "datastar-patch-elements",
                    "datastar-patch-signals",
                ]
                got = [await bob.stream.next(), await bob.stream.next()]
                assert got[0].html == '<li id="post-1">hello</li>'
                assert got[1].signals == {"Feed": {"count": 1}}
                assert await bob.stream.nothing_within(0.3)
                # Alice's page had it from the answer: her stream moves its id on only.
                assert await alice.stream.nothing_within(0.3)
                assert alice.last_id() == bob.last_id()


async def test_changes_that_show_nothing_leave_no_gap(base: str) -> None:
    async with httpx.AsyncClient(base_url=base) as a, httpx.AsyncClient(base_url=base) as b:
        async for alice in open_page(a):
            async for bob in open_page(b):
                assert (await alice.fire("nothing")).status_code == 204
                assert (await alice.fire("peek")).status_code == 200
                await alice.fire("post", text="after")
                got = [await bob.stream.next(), await bob.stream.next()]
                # The element itself, not a resync of the state that drops it.
                assert got[0].html == '<li id="post-1">after</li>'
                assert got[1].signals == {"Feed": {"count": 1}}
                assert await bob.stream.nothing_within(0.3)


async def test_a_page_reconnecting_within_the_window_gets_what_it_missed(base: str) -> None:
    async with httpx.AsyncClient(base_url=base) as a, httpx.AsyncClient(base_url=base) as b:
        async for alice in open_page(a):
            async for bob in open_page(b):
                await alice.fire("post", text="seen")
                await bob.stream.next()
                await bob.stream.next()
                left_at = bob.last_id()
            # Bob's stream is closed: these happen while he is away.
            await alice.fire("post", text="missed 1")
            await alice.fire("nothing")
            await alice.fire("post", text="missed 2")
            async with b.stream(
                "GET", bob.url, headers={"Datastar-Request": "true", "Last-Event-ID": left_at}
            ) as response:
                stream = Stream(response)
                got = [await stream.next() for _ in range(4)]
                assert [e.html for e in got if e.type == "datastar-patch-elements"] == [
                    '<li id="post-2">missed 1</li>',
                    '<li id="post-3">missed 2</li>',
                ]
                assert [e.signals for e in got if e.signals] == [
                    {"Feed": {"count": 2}},
                    {"Feed": {"count": 3}},
                ]
                assert await stream.nothing_within(0.3)
                stream.reader.cancel()


def _stream_url(page: str) -> str:
    match = re.search(r"/_faststate/live\?t=[^&\"'\\]+", page.replace("&quot;", '"'))
    assert match, page[:400]
    return match.group(0)


async def test_a_change_on_one_worker_reaches_a_page_opened_at_that_moment_on_another(
    redis_url: str,
) -> None:
    """Repeated: a stream must be subscribed before it loads what it shows, on every
    worker, or a change made in between never reaches the page."""
    import redis

    redis.Redis.from_url(redis_url).delete("faststate:state:{global:Poll}")
    env = {"FASTSTATE_SECRET_KEY": SECRET, "FASTSTATE_REDIS_URL": redis_url}
    port_a, port_b = free_port(), free_port()
    workers = [start_example("global_board", port, env) for port in (port_a, port_b)]
    try:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port_a}") as a,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port_b}") as b,
        ):
            for round_ in range(12):
                url = _stream_url((await a.get("/")).text)
                async with a.stream("GET", url, headers={"Datastar-Request": "true"}) as response:
                    stream = Stream(response)
                    # The vote races the stream's subscription and first load.
                    vote = await b.post(
                        "/Poll/vote?choice=water", headers=HEADERS, content="{}"
                    )
                    total = json.loads(parse_sse(vote.text)[0].data["signals"][0])["Poll"]["total"]
                    seen = 0
                    async with asyncio.timeout(3):
                        while seen < total:
                            sse = await stream.next(3)
                            seen = sse.signals.get("Poll", {}).get("total", seen)
                    assert seen == total == round_ + 1
                    stream.reader.cancel()
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(10)
        redis.Redis.from_url(redis_url).delete("faststate:state:{global:Poll}")


ENTERED, RELEASE = threading.Event(), threading.Event()


class Slow(ReactiveState):
    count: int = 0

    @event
    async def bump(self) -> None:
        ENTERED.set()
        await asyncio.to_thread(RELEASE.wait, 5)
        self.count += 1


async def test_a_page_that_starts_watching_mid_event_still_gets_the_change(
    redis_url: str, redis_prefix: str
) -> None:
    """Redis publishes only changes of watched instances, and the event asks
    whether a page watches when it takes the lock.  A page whose stream opens
    while the event runs is not missed: the save sees it and publishes."""
    from faststate import RedisStore

    ENTERED.clear()
    RELEASE.clear()

    async def page(request: Request) -> JSONResponse:
        use_state(request, Slow)
        stream = next(v for k, v in live(request).items() if k != "data-signals")
        url = re.search(r'"(/_faststate/live\?t=[^"]+)"', stream)
        assert url is not None
        return JSONResponse({"url": url.group(1)})

    store = RedisStore(redis_url, prefix=redis_prefix)
    app = state_app({Slow: StateScope.GLOBAL}, routes=[Route("/page", page)], store=store)
    with run_server(app) as base:
        async with httpx.AsyncClient(base_url=base) as a, httpx.AsyncClient(base_url=base) as b:
            url = (await b.get("/page")).json()["url"]
            bump = asyncio.create_task(a.post("/Slow/bump", headers=HEADERS, content="{}"))
            assert await asyncio.to_thread(ENTERED.wait, 5)  # the event holds the lock
            async with b.stream("GET", url, headers={"Datastar-Request": "true"}) as response:
                stream = Stream(response)
                assert await stream.nothing_within(0.3)  # watching, showing count 0
                RELEASE.set()
                assert (await bump).status_code == 200
                assert (await stream.next(3)).signals == {"Slow": {"count": 1}}
                # The lock was given back: the next event runs at once.
                answer = await a.post("/Slow/bump", headers=HEADERS, content="{}")
                assert answer.status_code == 200
                assert (await stream.next(3)).signals == {"Slow": {"count": 2}}
                stream.reader.cancel()
