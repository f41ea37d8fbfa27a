"""Event endpoints: ``POST /<Class>/<event>`` from request to SSE response.

The path of one event, in order: guards → body → instance address →
authorize → parameters → lock → load → run (tracked, rolled back on error)
→ diff → save → SSE.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from functools import partial
from typing import Any, ClassVar

from anyio import to_thread
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from faststate.broker import ElementPatch
from faststate.context import RequestContext, context_of
from faststate.events import EventSpec, FormFields
from faststate.guards import (
    Refusal,
    check_event_request,
    media_type,
    parse_signals,
    scope_header,
)
from faststate.instances import address_for, authorize, commit, ensure_bound, load_or_create
from faststate.middleware import BODY_KEY, GUARDED_KEY, SIGNALS_KEY
from faststate.protocol import SSE_HEADERS, Protocol
from faststate.registry import Registration
from faststate.scopes import InstanceAddress
from faststate.state import (
    ReactiveState,
    begin_tracking,
    diff_tracked,
    end_tracking,
    resume_tracking,
    rollback,
)
from faststate.stores.base import StaleState, StoreUnavailable

logger = logging.getLogger("faststate")


_STOP = object()


def mount_events(app: Starlette, registration: Registration) -> None:
    """Add one POST route per event, through FastHTML's routing when it is one."""
    for spec in registration.events.values():
        path = registration.event_path(spec)
        route_name = f"faststate:{registration.name}.{spec.name}"
        if _is_fasthtml(app):
            endpoint = _endpoint(registration, spec)
            app.route(path, methods=[spec.method], name=route_name)(endpoint)  # type: ignore[attr-defined]
        else:
            # A plain ASGI endpoint: Starlette's request/response wrapper
            # would only add a layer to every event.
            app.router.routes.append(
                Route(
                    path,
                    EventEndpoint(registration, spec),
                    methods=[spec.method.upper()],
                    name=route_name,
                )
            )


def mount_live(app: Starlette) -> None:
    """The live stream endpoint, through the app's routing so beforeware runs."""
    from faststate.streams import LIVE_PATH, live_endpoint

    if _is_fasthtml(app):

        async def faststate_live(req: Request) -> Response:
            return await live_endpoint(req)

        app.route(LIVE_PATH, methods=["get"], name="faststate:live")(faststate_live)  # type: ignore[attr-defined]
    else:
        app.router.routes.append(
            Route(LIVE_PATH, live_endpoint, methods=["GET"], name="faststate:live")
        )


def _is_fasthtml(app: Any) -> bool:
    try:
        from fasthtml.core import FastHTML
    except ImportError:  # pragma: no cover - fasthtml is a dependency
        return False
    return isinstance(app, FastHTML)


def _endpoint(registration: Registration, spec: EventSpec) -> Any:
    # FastHTML fills a handler's parameters by name from the request: the
    # endpoint takes only ``req``.
    async def endpoint(req: Request) -> Response:
        return await handle_event(req, registration, spec)

    endpoint.__name__ = f"{registration.name}_{spec.name}"
    return endpoint


class EventEndpoint:
    """The ASGI app of one event route on a Starlette app."""

    def __init__(self, registration: Registration, spec: EventSpec) -> None:
        self.registration = registration
        self.spec = spec

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await handle_event(request, self.registration, self.spec)
        await response(scope, receive, send)


async def handle_event(request: Request, registration: Registration, spec: EventSpec) -> Response:
    context = context_of(request)
    runtime = context.runtime
    if not request.scope.get(GUARDED_KEY):
        refusal = check_event_request(
            request.headers,
            request.headers.get("host"),
            runtime.trusted_origins,
            runtime.max_body_size,
        )
        if refusal is not None:
            return PlainTextResponse(refusal.reason, refusal.status)
    body = await _read_body(request, runtime.max_body_size)
    if isinstance(body, Response):
        return body
    address = address_for(request, context, registration)
    if registration.config.authorize is not None:
        await authorize(request, registration, address.key)
    kwargs, errors = spec.bind(request, body)
    if errors:
        return JSONResponse(
            {"detail": "invalid event parameters", "errors": [e.as_dict() for e in errors]},
            status_code=422,
        )
    run = EventRun(request, context, registration, spec, address, kwargs)
    if spec.kind in ("generator", "async_generator"):
        return StreamingResponse(run.stream(), headers=SSE_HEADERS)
    try:
        return await run.once()
    except StoreUnavailable as exc:
        logger.error("faststate: store unavailable during %s: %s", run.label, exc)
        return PlainTextResponse("state store unavailable, try again", 503)
    except StaleState as exc:
        logger.warning("faststate: %s not saved: %s", run.label, exc)
        return PlainTextResponse("state changed concurrently, try again", 409)


async def _read_body(request: Request, limit: int) -> dict[str, Any] | Response:
    """The top-level values the client sent: Datastar's JSON signals or form fields."""
    parsed: dict[str, Any] | None = request.scope.get(SIGNALS_KEY)
    if parsed is not None:  # JSON read, bounded, parsed and checked by the middleware
        return parsed
    content_type = media_type(scope_header(request.scope, b"content-type"))
    raw: bytes | None = request.scope.get(BODY_KEY)  # read and bounded by the middleware
    try:
        if raw is None:
            raw = await _read_limited(request, limit)
    except RuntimeError:
        # FastHTML parses multipart bodies itself before the handler runs;
        # the middleware has already bounded them.
        return _form_fields(await request.form())
    if raw is None:
        return PlainTextResponse(f"request body over {limit} bytes", 413)
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        parser_class = FormParser if content_type.startswith("application/") else MultiPartParser

        async def replay() -> AsyncGenerator[bytes, None]:
            yield raw

        try:
            form = await parser_class(request.headers, replay()).parse()
        except MultiPartException as exc:
            return PlainTextResponse(f"invalid form body: {exc.message}", 400)
        return _form_fields(form)
    if content_type == "text/plain":
        return {}
    signals = parse_signals(raw)
    if isinstance(signals, Refusal):
        return PlainTextResponse(signals.reason, signals.status)
    return signals


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it grows past ``limit``."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _form_fields(form: FormData) -> FormFields:
    # Uploaded files are not event parameters; only text fields are kept.
    return FormFields(
        (name, [value for value in form.getlist(name) if isinstance(value, str)]) for name in form
    )


class EventRun:
    """One event on one instance: run under the instance lock, diff, commit."""

    def __init__(
        self,
        request: Request,
        context: RequestContext,
        registration: Registration,
        spec: EventSpec,
        address: InstanceAddress,
        kwargs: dict[str, Any],
    ) -> None:
        self.request = request
        self.runtime = context.runtime
        self.registration = registration
        self.spec = spec
        self.address = address
        self.kwargs = kwargs
        self.protocol: Protocol = context.runtime.protocol
        self.label = f"{registration.name}.{spec.name} on {address.key}"

    async def _load(self) -> ReactiveState:
        state = await load_or_create(
            self.runtime, self.registration, self.address.key, self.registration.cls
        )
        root_path = self.request.scope.get("root_path", "")
        ensure_bound(state, self.runtime, self.registration, self.address, root_path)
        return state

    async def _commit(
        self, state: ReactiveState, patch: dict[str, Any], elements: list[ElementPatch]
    ) -> None:
        shared = tuple(elements) if self.spec.broadcast else ()
        await commit(self.runtime, self.registration, self.address.key, state, patch, shared)

    async def once(self) -> Response:
        async with self.runtime.store.lock(self.address.key):
            state = await self._load()
            tracker = begin_tracking(state)
            try:
                if self.spec.kind == "async":
                    result = await self.spec.func(state, **self.kwargs)
                elif self.spec.thread:
                    result = await to_thread.run_sync(partial(self.spec.func, state, **self.kwargs))
                else:
                    result = self.spec.func(state, **self.kwargs)
                elements = [] if isinstance(result, Response) else self._elements(result)
                end_tracking(state)
                patch = diff_tracked(state, tracker)
                # Written before the commit: what cannot be sent is not kept.
                response = result if isinstance(result, Response) else self._answer(elements, patch)
                await self._commit(state, patch, elements)
            except BaseException as exc:
                end_tracking(state)
                rollback(state, tracker)
                if isinstance(exc, HTTPException | StoreUnavailable | StaleState):
                    raise
                if not isinstance(exc, Exception):
                    raise
                logger.exception("faststate: event %s failed; state rolled back", self.label)
                return PlainTextResponse("event failed", 500)
        return response

    def _answer(self, elements: list[ElementPatch], patch: dict[str, Any]) -> Response:
        chunks = [self._format(element) for element in elements]
        if patch:
            chunks.append(self.protocol.patch_signals({self.address.namespace: patch}))
        if not chunks:
            return Response(status_code=204)
        return SSEResponse("".join(chunks))

    async def stream(self) -> AsyncIterator[bytes]:
        try:
            async with self.runtime.store.lock(self.address.key):
                state = await self._load()
                tracker = begin_tracking(state)
                shown: dict[str, Any] = {}  # everything flushed so far, for other pages
                elements: list[ElementPatch] = []
                try:
                    async for item in self._steps(state):
                        end_tracking(state)
                        step_elements = self._elements(item)
                        patch = diff_tracked(state, tracker, checkpoint=True)
                        resume_tracking(state, tracker)
                        shown = compose_patches(shown, patch)
                        elements.extend(step_elements)
                        chunks = [self._format(element) for element in step_elements]
                        if patch:
                            chunks.append(
                                self.protocol.patch_signals({self.address.namespace: patch})
                            )
                        if chunks:
                            yield "".join(chunks).encode()
                    end_tracking(state)
                    patch = diff_tracked(state, tracker, checkpoint=True)
                    last = (
                        self.protocol.patch_signals({self.address.namespace: patch}).encode()
                        if patch
                        else b""
                    )
                    await self._commit(state, compose_patches(shown, patch), elements)
                except BaseException as exc:
                    end_tracking(state)
                    rollback(state, tracker)
                    # Undo on the page what this stream already showed.
                    correction = diff_tracked(state, tracker, checkpoint=True)
                    if isinstance(exc, Exception) and not isinstance(
                        exc, StoreUnavailable | StaleState
                    ):
                        logger.exception(
                            "faststate: event %s failed; state rolled back", self.label
                        )
                        if correction:
                            yield self.protocol.patch_signals(
                                {self.address.namespace: correction}
                            ).encode()
                        return
                    raise
                if last:
                    yield last
        except (StoreUnavailable, StaleState) as exc:
            logger.error("faststate: %s not completed: %s", self.label, exc)

    async def _steps(self, state: ReactiveState) -> AsyncIterator[Any]:
        if self.spec.kind == "async_generator":
            async for item in self.spec.func(state, **self.kwargs):
                yield item
            return
        iterator: Iterator[Any] = self.spec.func(state, **self.kwargs)
        while True:
            if self.spec.thread:
                item = await to_thread.run_sync(next, iterator, _STOP)
            else:
                item = next(iterator, _STOP)
            if item is _STOP:
                return
            yield item

    def _elements(self, result: Any) -> list[ElementPatch]:
        if result is None:
            return []
        items = result if isinstance(result, list | tuple) else (result,)
        return [
            ElementPatch(to_html(item), self.spec.selector, self.spec.mode)
            for item in items
            if item is not None
        ]

    def _format(self, element: ElementPatch) -> str:
        return self.protocol.patch_elements(element.html, element.selector, element.mode)


class SSEResponse(Response):
    """A complete event stream in one body; its headers are prepared once."""

    _HEADERS: ClassVar[tuple[tuple[bytes, bytes], ...]] = tuple(
        (name.lower().encode(), value.encode()) for name, value in SSE_HEADERS.items()
    )

    def __init__(self, text: str) -> None:
        self.status_code = 200
        self.background = None
        self.body = text.encode()  # may fail (a lone surrogate): before the commit
        self.raw_headers = [*self._HEADERS, (b"content-length", str(len(self.body)).encode())]


def compose_patches(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """One merge patch doing what applying ``first`` then ``second`` does."""
    result = dict(first)
    for key, value in second.items():
        earlier = result.get(key)
        if isinstance(value, dict) and isinstance(earlier, dict):
            result[key] = compose_patches(earlier, value)
        else:
            result[key] = value
    return result


def to_html(item: Any) -> str:
    """HTML text of a FastHTML element, an ``__html__`` object or a string."""
    if hasattr(item, "__ft__") and not hasattr(item, "__html__"):
        item = item.__ft__()
    if hasattr(item, "__html__"):
        return str(item.__html__())
    if isinstance(item, str):
        return item
    raise TypeError(
        f"an event returned {type(item).__name__}; return None, elements, or a Response"
    )
