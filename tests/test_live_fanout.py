"""Fan-out to many live streams of one process: every page gets every change once,
in order, with its id; the event that made the change does not wait for the
pages, and a slow page delays nobody and holds a bounded backlog; one
heartbeat timer keeps idle streams alive; streams that went away are dropped.

The streams are real ``LiveStream`` responses of the app in tests/live.py,
called in process with an ASGI ``send`` of their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette

from faststate import RedisStore, mutate
from faststate._live.broker import Change, LocalBroker
from faststate._live.fanout import Fanout, Outgoing
from faststate._live.streams import QUEUE_SIZE, LiveStream
from faststate._protocol import ElementPatch, get_protocol
from faststate._runtime import Runtime
from faststate.testing import SSEEvent, parse_sse

from .live import HEADERS, Board, make_app, open_page

COUNT_MASK = 0xFFFFFFFF  # the low bits of a version count the saves


class Page:
    """One page's live stream, called in process; ``send`` records what it writes."""

    def __init__(self, app: Starlette, url: str) -> None:
        self.app = app
        self.url = url
        self.raw = b""
        self.opened = asyncio.Event()
        self.wrote = asyncio.Event()
        self.leave = asyncio.Event()
        #: While set to an unset event, writes wait for it (a page that stopped reading).
        self.gate: asyncio.Event | None = None
        #: Raised by the next write (a connection that died without a word).
        self.broken: Exception | None = None
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        parts = urlsplit(self.url)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": parts.path,
            "raw_path": parts.path.encode(),
            "root_path": "",
            "query_string": parts.query.encode(),
            "headers": [(b"host", b"t"), (b"datastar-request", b"true")],
            "server": ("t", 80),
            "client": ("127.0.0.1", 1),
        }
        self.task = asyncio.create_task(self.app(scope, self.receive, self.send))

    async def receive(self) -> dict[str, Any]:
        await self.leave.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200
            self.opened.set()
            return
        if self.broken is not None:
            raise self.broken
        if self.gate is not None:
            await self.gate.wait()
        self.raw += message.get("body", b"")
        self.wrote.set()

    def events(self) -> list[SSEEvent]:
        return parse_sse(self.raw.decode())

    def counts(self) -> list[int]:
        return [e.signals["Board"]["count"] for e in self.events() if e.signals]

    async def until(self, done: Callable[[Page], bool], wait: float = 10.0) -> None:
        async with asyncio.timeout(wait):
            while not done(self):
                self.wrote.clear()
                await self.wrote.wait()


@asynccontextmanager
async def pages(app: Starlette, count: int) -> AsyncIterator[tuple[httpx.AsyncClient, list[Page]]]:
    """``count`` open pages showing the global ``Board``, and a client for events."""
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        url = await open_page(client)
        opened = [Page(app, url) for _ in range(count)]
        for page in opened:
            page.start()
        async with asyncio.timeout(10):
            for page in opened:
                await page.opened.wait()
        try:
            yield client, opened
        finally:
            for page in opened:
                page.leave.set()
                if page.gate is not None:
                    page.gate.set()
            await asyncio.gather(*(p.task for p in opened if p.task is not None))


def _runtime(app: Starlette) -> Runtime:
    runtime: Runtime = app.state.faststate_registry.runtime
    return runtime


async def bump(client: httpx.AsyncClient) -> httpx.Response:
    response = await client.post("/Board/bump", headers=HEADERS, content="{}")
    assert response.status_code == 200
    return response


def assert_once_in_order(page: Page, expected: list[int]) -> None:
    events = [e for e in page.events() if e.signals]
    assert [e.signals["Board"]["count"] for e in events] == expected
    # Each patch carries the version it brings the page to.
    assert [int(e.id or 0) & COUNT_MASK for e in events] == expected


async def test_two_hundred_pages_get_every_change_once_in_order_with_its_id() -> None:
    app = make_app()
    async with pages(app, 200) as (client, opened):
        for _ in range(5):
            await bump(client)
        for page in opened:
            await page.until(lambda p: len(p.counts()) >= 5)
        await asyncio.sleep(0.05)  # nothing more comes
        for page in opened:
            assert_once_in_order(page, [1, 2, 3, 4, 5])
        # One text for every page: the same bytes, formatted once.
        assert len({page.raw for page in opened}) == 1


async def test_through_redis_every_page_gets_every_change_once_in_order(
    redis_url: str, redis_prefix: str
) -> None:
    app = make_app(store=RedisStore(redis_url, prefix=redis_prefix))
    try:
        async with pages(app, 50) as (client, opened):
            await asyncio.gather(*(bump(client) for _ in range(10)))
            for page in opened:
                await page.until(lambda p: len(p.counts()) >= 10)
            await asyncio.sleep(0.05)
            for page in opened:
                assert_once_in_order(page, list(range(1, 11)))
    finally:
        runtime = _runtime(app)
        await runtime.broker.aclose()
        await runtime.store.aclose()


async def test_a_burst_of_fifty_changes_arrives_in_order() -> None:
    app = make_app()
    async with pages(app, 20) as (client, opened):
        await asyncio.gather(*(bump(client) for _ in range(50)))
        for page in opened:
            await page.until(lambda p: len(p.counts()) >= 50)
        await asyncio.sleep(0.05)
        for page in opened:
            assert_once_in_order(page, list(range(1, 51)))


async def test_the_event_answers_before_a_stuck_page_and_the_others_do_not_wait() -> None:
    app = make_app()
    async with pages(app, 21) as (client, opened):
        stuck, others = opened[0], opened[1:]
        stuck.gate = asyncio.Event()  # its writes block, as a page that stopped reading
        started = time.perf_counter()
        await bump(client)
        answered = time.perf_counter() - started
        for page in others:
            await page.until(lambda p: p.counts() == [1])
        assert answered < 5  # not a benchmark: it did not wait for the stuck page
        # Far more changes than a stream holds: the stuck page's backlog stays bounded.
        changes = QUEUE_SIZE + 20
        for _ in range(changes):
            async with mutate(app, Board) as board:
                board.count += 1
            streams = _runtime(app).streams.streams
            assert all(len(s.inbox) <= QUEUE_SIZE for s in streams if isinstance(s, LiveStream))
        final = changes + 1
        for page in others:
            await page.until(lambda p: len(p.counts()) >= final)
            assert_once_in_order(page, list(range(1, final + 1)))
        assert stuck.raw == b""
        stuck.gate.set()
        # It lost its backlog and is sent the whole state instead, then goes on.
        await stuck.until(lambda p: bool(p.counts()) and p.counts()[-1] == final)
        events = [e for e in stuck.events() if e.signals]
        assert events[-1].signals["Board"]["count"] == final
        assert int(events[-1].id or 0) & COUNT_MASK == final
        assert "id" in events[-1].signals["Board"]  # the whole public state
        counts = stuck.counts()
        assert counts == sorted(set(counts))  # never backwards, never twice
        async with mutate(app, Board) as board:
            board.count += 1
        await stuck.until(lambda p: p.counts()[-1] == final + 1)
        assert [e for e in stuck.events() if e.signals][-1].signals == {
            "Board": {"count": final + 1}
        }


async def test_idle_streams_get_heartbeats_and_streams_that_left_are_dropped() -> None:
    app = make_app(heartbeat=0.2)
    async with pages(app, 30) as (client, opened):
        runtime = _runtime(app)
        await asyncio.sleep(1.05)
        for page in opened:
            # One comment per heartbeat (0.2 s) without a write: about five.
            assert 2 <= page.raw.count(b": heartbeat") <= 8, page.raw
        # A stream that writes more often than a heartbeat needs no comment.
        busy = opened[0]
        for _ in range(8):
            await bump(client)
            await asyncio.sleep(0.02)
        await busy.until(lambda p: len(p.counts()) >= 8)
        assert b": heartbeat" not in busy.raw[busy.raw.index(b"event:") :]
        # Ten pages close (the server hears of it), ten lose their connection silently.
        for page in opened[:10]:
            page.leave.set()
        for page in opened[10:20]:
            page.broken = OSError("connection reset")
        for _ in range(250):  # the next heartbeat finds the broken ones
            if len(runtime.streams) == 10 and runtime.fanout.stream_count() == 10:
                break
            await asyncio.sleep(0.02)
        assert len(runtime.streams) == 10 and runtime.fanout.stream_count() == 10
        assert runtime.broker.subscriber_count() == 1  # the fan-out's one subscription
    assert len(runtime.streams) == 0 and runtime.fanout.stream_count() == 0
    assert runtime.broker.subscriber_count() == 0


# The parts, without an app.


def test_a_shared_text_is_what_each_stream_formatted_for_itself() -> None:
    elements = (
        ElementPatch('<li id="a">one\ntwo</li>', "#list", "append"),
        ElementPatch("", "#gone", "remove"),
        ElementPatch("<p id='p'>x</p>"),
    )
    change = Change("global:Board", 7, {"count": 3, "tags": ["a", None]}, elements)
    for name in ("v1", "beta"):
        dialect = get_protocol(name)
        outgoing = Outgoing(change)
        for event_id in ("7", "7.12", "7"):
            expected = dialect.format_elements(elements, event_id) + dialect.patch_signals(
                {"Board": change.patch}, event_id
            )
            assert outgoing.text(dialect, "Board", event_id) == expected.encode()
        nothing = Outgoing(Change("global:Board", 8, {}))
        assert nothing.text(dialect, "Board", "8") == b""


class Recorder:
    """A stream as the fan-out sees it."""

    def __init__(self) -> None:
        self.items: list[Outgoing | None] = []
        self.ticks = 0

    def deliver(self, item: Outgoing | None) -> None:
        self.items.append(item)

    def tick(self) -> None:
        self.ticks += 1


async def test_publishing_only_queues_and_an_outrun_outbox_becomes_resyncs() -> None:
    broker = LocalBroker()
    fanout = Fanout(broker, heartbeat=60, outbox_size=10)
    streams = [Recorder() for _ in range(3)]
    for stream in streams:
        await fanout.join(stream, ["global:Board"])
    assert broker.subscriber_count() == 1
    await broker.publish(Change("global:Board", 1, {"count": 1}))
    assert all(not s.items for s in streams)  # the publisher did not deliver
    await asyncio.sleep(0.01)
    assert [[i.change.version for i in s.items if i] for s in streams] == [[1]] * 3
    # A publisher that never lets the delivery task run: beyond the outbox's
    # size, what is queued folds into "you may have missed some".
    for version in range(2, 30):
        await broker.publish(Change("global:Board", version, {"count": version}))
    await asyncio.sleep(0.01)
    for stream in streams:
        items = stream.items[1:]
        assert None in items
        # After the last notice, the changes queued since, in order, up to the last.
        after = [i.change.version for i in items[len(items) - items[::-1].index(None) :] if i]
        assert after == list(range(30 - len(after), 30)) and after
    # Every stream got the very same object: one text per change.
    assert len({id(s.items[-1]) for s in streams}) == 1
    for stream in streams:
        await fanout.leave(stream, ["global:Board"])
    assert broker.subscriber_count() == 0 and fanout.stream_count() == 0
