"""The apps the benchmarks compare: faststate against the smallest hand-written twin."""

from __future__ import annotations

from typing import Annotated, Any

from datastar_py import ServerSentEventGenerator
from datastar_py.consts import ElementPatchMode
from datastar_py.starlette import read_signals
from fasthtml.common import Li, to_xml
from itsdangerous import BadSignature, TimestampSigner
from pydantic import BaseModel, PrivateAttr
from sqlmodel import Field
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from faststate import (
    FastStateMiddleware,
    MemoryStore,
    ReactiveState,
    StateScope,
    StateStore,
    Stream,
    Upload,
    event,
    register_state,
    stream,
    use_state,
)

SECRET = "bench-secret"
SSE = {"Cache-Control": "no-cache", "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}


class CounterState(ReactiveState):
    count: int = 0

    @event
    async def increment(self, amount: int = 1) -> None:
        self.count += amount


class BigState(ReactiveState):
    count: int = 0
    items: list[int] = Field(default_factory=lambda: list(range(10_000)))

    @event
    async def increment(self, amount: int = 1) -> None:
        self.count += amount


class SmallState(ReactiveState):
    count: int = 0

    @event
    async def increment(self, amount: int = 1) -> None:
        self.count += amount


LIST_SIZE = 100_000


class ListState(ReactiveState):
    """A plain collection field of 100,000 items, one appended per event."""

    items: list[int] = Field(default_factory=lambda: list(range(LIST_SIZE)))

    @event
    async def append(self, amount: int = 1) -> None:
        self.items.append(amount)


class DictState(ReactiveState):
    """A plain dict field of 100,000 keys, one key changed per event."""

    counts: dict[str, int] = Field(default_factory=lambda: {f"k{i}": 0 for i in range(LIST_SIZE)})

    @event
    async def increment(self, amount: int = 1) -> None:
        self.counts["k5"] += amount


class IdleState(ReactiveState):
    """Three fields, as an idle visitor's session holds them."""

    count: int = 0
    name: str = ""
    active: bool = False


class FeedItem(BaseModel):
    id: int
    text: str


def render_feed_item(item: FeedItem) -> Any:
    return Li(item.text)


class FeedState(ReactiveState):
    """A feed whose server keeps its last 100 items, however many were appended."""

    items: Stream[FeedItem] = stream(render_feed_item, key="id", limit=100)
    _made: int = PrivateAttr(default=0)

    @event
    async def add(self) -> None:
        self._made += 1
        self.items.append(FeedItem(id=self._made, text=f"item {self._made}"))


def feed_app() -> Starlette:
    async def page(request: Request) -> Response:
        use_state(request, FeedState)
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", page)])
    app.add_middleware(FastStateMiddleware, secret_key=SECRET, store=MemoryStore())
    register_state(app, FeedState, scope=StateScope.SESSION)
    return app


class UploadState(ReactiveState):
    received: int = 0

    @event
    async def store(self, file: Annotated[UploadFile, Upload(max_size=64 * 2**20)]) -> None:
        # Read through, as an app storing the file elsewhere would.
        while chunk := await file.read(2**16):
            self.received += len(chunk)


def upload_app() -> Starlette:
    async def page(request: Request) -> Response:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", page)])
    app.add_middleware(FastStateMiddleware, secret_key=SECRET)
    register_state(app, UploadState, scope=StateScope.SESSION)
    return app


def faststate_app(store: StateStore | None = None) -> Starlette:
    async def page(request: Request) -> Response:
        use_state(request, CounterState)
        use_state(request, BigState)
        use_state(request, SmallState)
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", page)])
    app.add_middleware(FastStateMiddleware, secret_key=SECRET, store=store or MemoryStore())
    register_state(app, CounterState, scope=StateScope.SESSION)
    register_state(app, BigState, scope=StateScope.SESSION)
    register_state(app, SmallState, scope=StateScope.SESSION)
    return app


def faststate_collections_app() -> Starlette:
    """The collection benchmarks on their own, so the other figures' pages stay small."""

    async def page(request: Request) -> Response:
        use_state(request, ListState)
        use_state(request, DictState)
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", page)])
    app.add_middleware(FastStateMiddleware, secret_key=SECRET, store=MemoryStore())
    register_state(app, ListState, scope=StateScope.SESSION)
    register_state(app, DictState, scope=StateScope.SESSION)
    return app


def handwritten_app(reading: bool = False) -> Starlette:
    """What a careful developer writes by hand with datastar-py: the baseline.

    ``reading``: the counter also reads the signals the page sent, with
    datastar-py's ``read_signals``, as an endpoint of a page with inputs must
    (faststate always does).
    """
    signer = TimestampSigner(SECRET, salt="bench.session")
    sessions: dict[str, dict[str, Any]] = {}

    async def increment(request: Request) -> Response:
        try:
            sid = signer.unsign(request.cookies.get("session", "")).decode()
        except BadSignature:
            return PlainTextResponse("no session", 403)
        if reading and await read_signals(request) is None:
            return PlainTextResponse("not a Datastar request", 400)
        session = sessions.setdefault(sid, {"count": 0})
        session["count"] += int(request.query_params.get("amount", "1"))
        body = ServerSentEventGenerator.patch_signals({"CounterState": {"count": session["count"]}})
        return Response(body, headers=SSE)

    async def add(request: Request) -> Response:
        """One ``<li>`` appended to the feed, as datastar-py writes it.

        The item is rendered with FastHTML's ``Li``, as the stream's render
        function does: the figure compares what faststate adds around the
        rendering, not two ways of writing HTML.
        """
        try:
            sid = signer.unsign(request.cookies.get("session", "")).decode()
        except BadSignature:
            return PlainTextResponse("no session", 403)
        session = sessions.setdefault(sid, {"count": 0})
        session["count"] += 1
        made = session["count"]
        body = ServerSentEventGenerator.patch_elements(
            to_xml(Li(f"item {made}", id=f"FeedState-items-{made}")),
            selector="#FeedState-items",
            mode=ElementPatchMode.APPEND,
        )
        return Response(body, headers=SSE)

    return Starlette(
        routes=[
            Route("/CounterState/increment", increment, methods=["POST"]),
            Route("/FeedState/add", add, methods=["POST"]),
        ]
    )


def handwritten_cookie() -> str:
    return "session=" + TimestampSigner(SECRET, salt="bench.session").sign("bench").decode()


def handwritten_list_app() -> Starlette:
    """The list append by hand: the whole list goes back, as faststate's merge patch has it."""
    signer = TimestampSigner(SECRET, salt="bench.session")
    sessions: dict[str, list[int]] = {}

    async def append(request: Request) -> Response:
        try:
            sid = signer.unsign(request.cookies.get("session", "")).decode()
        except BadSignature:
            return PlainTextResponse("no session", 403)
        items = sessions.setdefault(sid, list(range(LIST_SIZE)))
        items.append(int(request.query_params.get("amount", "1")))
        body = ServerSentEventGenerator.patch_signals({"ListState": {"items": items}})
        return Response(body, headers=SSE)

    return Starlette(routes=[Route("/ListState/append", append, methods=["POST"])])
