"""Event endpoints: ``POST /<Class>/<event>`` from request to SSE answer.

One event, in order: guard (headers, body, values) → address → authorize →
parameters → one transaction (lock, load, run, rollback or diff, save,
publish) → the SSE answer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, ClassVar, Final

from anyio import to_thread
from starlette._exception_handler import wrap_app_handling_exceptions
from starlette.background import BackgroundTasks
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from faststate._address import Address
from faststate._context import RequestContext, context_of
from faststate._diff import dump_fields
from faststate._errors import (
    FAILED_MESSAGE,
    GENERAL,
    Invalid,
    errors_shown,
    errors_signal,
    messages_of,
)
from faststate._events import EventSpec, PageSignals, Redirect, bound_values
from faststate._guards import VALUES_KEY, FormFields, Refusal, guard_request, refusal_response
from faststate._observe import (
    FAILED,
    REFUSED,
    REJECTED,
    WATCH_KEY,
    EventOutcome,
    Observer,
    Watch,
    outcome_of_status,
)
from faststate._protocol import ERRORS_SIGNAL, PAGE_SIGNAL, SSE_HEADERS, ElementPatch, to_html
from faststate._registry import Registration
from faststate._resolve import address_for, authorize, registration_for
from faststate._runtime import Runtime
from faststate._state import ReactiveState
from faststate._stores.base import StaleState, StoreUnavailable
from faststate._transaction import RUNNING, OutOfOrder, Transaction
from faststate._uploads import UPLOADS_KEY, Uploads, guard_upload_request

logger = logging.getLogger("faststate")

_STOP: Final = object()
#: Errors answered with their own status (4xx, 409, 503), never as "event failed".
_ANSWERED: Final = (HTTPException, StoreUnavailable, StaleState)
_FAILED: Final = {GENERAL: FAILED_MESSAGE}
_GENERATORS: Final = frozenset(("generator", "async_generator"))
#: ``handle_event``'s ``watch`` until it is decided whether anyone watches the event.
_UNDECIDED: Final = Watch(0.0)
#: How often an event may start again to lock an instance it joined out of order.
MAX_RESTARTS: Final = 4


class EventEndpoint:
    """The ASGI app of one event route."""

    def __init__(self, registration: Registration, spec: EventSpec) -> None:
        self.registration = registration
        self.spec = spec

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            try:
                response = await handle_event(request, self.registration, self.spec)
            except Exception as exc:
                # Answered by the app's exception handlers, as its ExceptionMiddleware
                # would: the middleware runs this endpoint without it (_DirectRoute).
                await wrap_app_handling_exceptions(_raising(exc), request)(scope, receive, send)
                return
            await response(scope, receive, send)
        finally:
            if UPLOADS_KEY in scope:  # no coroutine for the events without files
                await _close_uploads(scope)


def _raising(exc: Exception) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise exc

    return app


def request_endpoint(registration: Registration, spec: EventSpec) -> Any:
    """The same endpoint as a ``request -> response`` function (FastHTML routes).

    FastHTML fills a handler's parameters by name from the request: it takes only ``req``.
    """

    async def endpoint(req: Request) -> Response:
        try:
            response = await handle_event(req, registration, spec)
        except BaseException:
            await _close_uploads(req.scope)
            raise
        if UPLOADS_KEY in req.scope:  # closed once FastHTML has sent the answer
            earlier = response.background
            response.background = BackgroundTasks([earlier] if earlier is not None else [])
            response.background.add_task(_close_uploads, req.scope)
        return response

    endpoint.__name__ = f"{registration.name}_{spec.name}"
    return endpoint


async def _close_uploads(scope: Scope) -> None:
    """Close the files of an event whose body the middleware did not guard (it
    closes those it took itself)."""
    uploads: Uploads | None = scope.get(UPLOADS_KEY)
    if uploads is not None:
        await uploads.aclose()


async def handle_event(
    request: Request,
    registration: Registration,
    spec: EventSpec,
    watch: Watch | None = _UNDECIDED,
) -> Response:
    """The answer to one event request.

    Whether anyone watches the event is decided first (the middleware did
    for the event paths it guards); a watched one comes back here through
    ``_watched`` with its ``watch``, so an unwatched one pays for no extra
    coroutine.
    """
    context = context_of(request)
    if watch is _UNDECIDED:
        scope = request.scope
        watch = scope[WATCH_KEY] if WATCH_KEY in scope else context.runtime.observer.watch()
        if watch is not None:
            return await _watched(request, context, registration, spec, watch)
    runtime = context.runtime
    values = request.scope.get(VALUES_KEY)  # the middleware guarded it (the usual case)
    if values is None:
        policy = spec.upload_policy()
        if policy is None:
            values = await guard_request(request, runtime)
        else:
            values = await guard_upload_request(request, runtime, policy)
    if isinstance(values, Refusal):
        if watch is not None:
            watch.outcome = REFUSED
        return refusal_response(values)
    address = address_for(request, context, registration)
    if registration.config.authorize is not None:
        await authorize(request, address)
    others: list[tuple[str, Address]] = []
    for name, cls in spec.state_params():
        # The instance this request reaches, by the rules of use_state.
        other = address_for(request, context, registration_for(context, request, cls))
        await authorize(request, other)
        others.append((name, other))
    kwargs, errors = spec.bind(request, values)
    bound, field_errors = bound_values(registration.cls, address.namespace, values)
    if field_errors:
        errors += field_errors
    if errors:  # the event does not run; the page says why
        if watch is not None:
            watch.outcome = REJECTED
        return SSEResponse(refusal(address, messages_of(errors)))
    run = EventRun(
        runtime,
        address,
        spec,
        kwargs,
        bound,
        values.get(address.namespace) if bound else None,
        errors_shown(values, address.namespace),
        others,
        _page_of(values),
        watch,
    )
    try:
        if spec.kind in _GENERATORS:
            return await run.streamed()
        try:
            return await run.once()
        except OutOfOrder as exc:
            return await run.restarted(exc.address)
    except StoreUnavailable as exc:
        logger.error("faststate: store unavailable during %s: %s", run.label, exc)
        if watch is not None:
            watch.outcome = REFUSED
        return PlainTextResponse("state store unavailable, try again", 503)
    except StaleState as exc:
        logger.warning("faststate: %s not saved: %s", run.label, exc)
        if watch is not None:
            watch.outcome = REFUSED
        return PlainTextResponse("state changed concurrently, try again", 409)


async def _watched(
    request: Request,
    context: RequestContext,
    registration: Registration,
    spec: EventSpec,
    watch: Watch,
) -> Response:
    """``handle_event`` with the record of how it went sent to the hooks and the log."""
    observer = context.runtime.observer
    names = registration.name, spec.name
    try:
        response = await handle_event(request, registration, spec, watch)
    except HTTPException as exc:
        observer.report(watch, *names, exc.status_code, 0, outcome_of_status(exc.status_code))
        raise
    except Exception:
        observer.report(watch, *names, 500, 0, FAILED)
        raise
    if spec.kind in _GENERATORS and isinstance(response, StreamingResponse):  # when it ends
        response.body_iterator = _reported(response.body_iterator, observer, watch, names)
    else:
        sent = len(response.body) if isinstance(response, SSEResponse) else 0
        observer.report(watch, *names, response.status_code, sent)
    return response


async def _reported(
    chunks: AsyncIterable[str | bytes | memoryview[int]],
    observer: Observer,
    watch: Watch,
    names: tuple[str, str],
) -> AsyncIterator[str | bytes | memoryview[int]]:
    """A generator event's stream, reported once it has all been sent (not when
    the client went away in the middle)."""
    sent = 0
    try:
        async for chunk in chunks:
            sent += len(chunk)
            yield chunk
    except Exception:
        observer.report(watch, *names, 200, sent, FAILED)
        raise
    observer.report(watch, *names, 200, sent)


class EventRun:
    """One event on its instance (and the instances it uses), run in a transaction.

    The event's own instance comes first; state parameters follow.  An
    instance the method joins through ``mutate`` whose lock would have to be
    taken out of the global order makes the event start again, rolled back,
    with that instance locked up front (at most ``MAX_RESTARTS`` times).
    """

    __slots__ = (
        "address",
        "bound",
        "clear_errors",
        "kwargs",
        "others",
        "page",
        "runtime",
        "spec",
        "typed",
        "watch",
    )

    def __init__(
        self,
        runtime: Runtime,
        address: Address,
        spec: EventSpec,
        kwargs: dict[str, Any],
        bound: dict[str, Any],
        typed: Mapping[str, Any] | None = None,
        clear_errors: bool = False,
        others: Sequence[tuple[str, Address]] = (),
        page: str | None = None,
        watch: Watch | None = None,
    ) -> None:
        self.runtime = runtime
        self.address = address
        self.spec = spec
        self.kwargs = kwargs
        #: The page's values of the instance's ``Bindable`` fields, validated.
        self.bound = bound
        #: ...and as the page holds them.
        self.typed = typed or {}
        #: The page shows errors of this instance, which an accepted event clears.
        self.clear_errors = clear_errors
        #: State parameters: their names and the instances they receive.
        self.others = others
        #: The page that sent the event, whose live stream need not repeat it.
        self.page = page
        #: A watched event's clock and outcome.
        self.watch = watch

    @property
    def label(self) -> str:
        """How the logs name this event (only ever needed when something went wrong)."""
        return f"{self.address.registration.name}.{self.spec.name} on {self.address.key}"

    def _addresses(self, joined: Sequence[Address]) -> list[Address]:
        if not self.others and not joined:
            return [self.address]
        return [self.address, *(address for _, address in self.others), *joined]

    def _arguments(self, tx: Transaction) -> dict[str, Any]:
        if not self.others:
            return self.kwargs
        kwargs = dict(self.kwargs)
        for name, address in self.others:
            kwargs[name] = tx.holding(address.key)
        return kwargs

    async def restarted(self, address: Address) -> Response:
        """``once`` again, rolled back, with the instances it joined out of order
        locked up front."""
        joined = [address]
        for _ in range(MAX_RESTARTS):
            try:
                return await self.once(joined)
            except OutOfOrder as exc:
                joined.append(exc.address)
        raise RuntimeError(f"{self.label} kept needing more instances; declare them as parameters")

    async def once(self, joined: Sequence[Address] = ()) -> Response:
        """Run the event; ``OutOfOrder`` if it joined an instance it must lock up front."""
        spec = self.spec
        async with Transaction(self.runtime, self._addresses(joined), self.watch) as tx:
            state = tx.states[0]
            try:
                if self.bound:
                    self._apply_bound(state)
                kwargs = self._arguments(tx) if self.others else self.kwargs
                token = RUNNING.set(tx)  # mutate and use_state in the method join tx
                try:
                    if spec.kind == "async":
                        result = await spec.func(state, **kwargs)
                    elif spec.thread:
                        result = await to_thread.run_sync(partial(spec.func, state, **kwargs))
                    else:
                        result = spec.func(state, **kwargs)
                finally:
                    RUNNING.reset(token)
                outcome = self._results(result)
                patches = self._for_caller(tx, tx.finish())
                # Written before the commit: what cannot be sent is not kept.
                if isinstance(result, Response) and outcome.going is None:
                    response, page = result, None  # the page may not apply it: its stream does
                else:
                    response, page = self._answer(outcome, patches, tx.streamed()), self.page
                await tx.commit(outcome.elements if spec.broadcast else (), page)
            except (*_ANSWERED, OutOfOrder):
                raise
            except Invalid as exc:
                self._outcome(REJECTED)
                return SSEResponse(refusal(self.address, exc.messages))
            except Exception:
                logger.exception("faststate: event %s failed; state rolled back", self.label)
                self._outcome(FAILED)
                return SSEResponse(refusal(self.address, _FAILED))
        return response

    def _answer(
        self,
        outcome: Outcome,
        patches: dict[str, dict[str, Any]],
        streamed: Sequence[ElementPatch],
    ) -> Response:
        text = self._format(outcome, patches, streamed)
        if outcome.going is not None:  # last: the page applies the changes, then leaves
            text += self.address.protocol.redirect(outcome.going.url)
        if not text:
            return Response(status_code=204)
        return SSEResponse(text)

    def _format(
        self,
        outcome: Outcome,
        patches: dict[str, dict[str, Any]],
        streamed: Sequence[ElementPatch],
    ) -> str:
        """The caller's answer: what stream fields did, the elements the event
        returned, then the signals."""
        protocol = self.address.protocol
        text = protocol.format_elements(streamed) if streamed else ""
        if outcome.elements:
            text += protocol.format_elements(outcome.elements)
        if patches:
            text += protocol.patch_signals(patches)
        if outcome.page_signals:
            text += protocol.patch_signals(outcome.page_signals)
        return text

    def _for_caller(
        self, tx: Transaction, patches: list[dict[str, Any]], first: bool = True
    ) -> dict[str, dict[str, Any]]:
        """Each instance's patch, by namespace, as the page that sent the event needs it.

        The patches are what changed in the store, which live pages get.  On
        the event's first answer, the caller's own instance is adjusted: the
        page already shows what it typed into bindable fields, so those are
        sent back only where the stored value differs from it (the event
        emptied the input, or the field's type normalised what was typed);
        errors the page shows are cleared.
        """
        if len(patches) == 1 and not (first and (self.bound or self.clear_errors)):
            return {self.address.namespace: patches[0]} if patches[0] else {}
        answer: dict[str, dict[str, Any]] = {}
        for position, patch in enumerate(patches):
            if position == 0 and first:
                patch = self._own_patch(tx.states[0], patch)
            if patch:
                answer[tx.addresses[position].namespace] = patch
        return answer

    def _own_patch(self, state: ReactiveState, patch: dict[str, Any]) -> dict[str, Any]:
        if not self.bound and not self.clear_errors:
            return patch
        answer = dict(patch)  # ``patch`` itself goes to live pages
        if self.bound:
            now = dump_fields(state, state.__dict__, set(self.bound))
            for name in self.bound:
                if name in now and now[name] != self.typed.get(name):
                    answer[name] = now[name]  # set, or normalised by its type
                else:
                    answer.pop(name, None)
        if self.clear_errors:
            answer[ERRORS_SIGNAL] = ""
        return answer

    async def streamed(self) -> Response:
        """A generator event's answer, streamed step by step.

        Until something was sent, a store failure is answered as such (503,
        409); once the page has been shown progress, a failure sends it the
        patch that takes that progress back.  A refusal (``Invalid``) or a
        failure of the event's own code shows on the page either way.
        """
        chunks = self._stream()
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            return Response(status_code=204)
        return StreamingResponse(_resumed(first, chunks), headers=SSE_HEADERS)

    async def _stream(self) -> AsyncIterator[bytes]:
        joined: list[Address] = []
        for _ in range(MAX_RESTARTS + 1):
            attempt = _Attempt()
            async for chunk in self._stream_once(joined, attempt):
                yield chunk
            if attempt.restart is None:
                return
            joined.append(attempt.restart)
        raise RuntimeError(f"{self.label} kept needing more instances; declare them as parameters")

    async def _stream_once(self, joined: list[Address], attempt: _Attempt) -> AsyncIterator[bytes]:
        protocol = self.address.protocol
        sent = False
        async with Transaction(self.runtime, self._addresses(joined), self.watch) as tx:
            elements: list[ElementPatch] = []
            first = True
            try:
                going: Redirect | None = None
                state = tx.states[0]
                self._apply_bound(state)
                async for item in self._steps(tx, state, self._arguments(tx)):
                    outcome = self._results(item)
                    going = outcome.going or going
                    patches = self._for_caller(tx, tx.step(), first)
                    first = False
                    elements.extend(outcome.elements)
                    text = self._format(outcome, patches, tx.streamed())
                    if text:
                        chunk = text.encode()  # may fail: before it counts as sent
                        sent = True
                        yield chunk
                patches = self._for_caller(tx, tx.finish(), first)
                last_text = protocol.format_elements(tx.streamed())
                if patches:
                    last_text += protocol.patch_signals(patches)
                if going is not None:
                    last_text += protocol.redirect(going.url)
                last = last_text.encode()
                await tx.commit(elements if self.spec.broadcast else (), self.page)
            except Exception as exc:
                corrections = tx.rollback()
                if isinstance(exc, OutOfOrder) and not sent:
                    attempt.restart = exc.address
                    return
                if isinstance(exc, _ANSWERED):
                    if not sent:
                        raise
                    logger.error("faststate: %s not completed: %s", self.label, exc)
                    messages = _FAILED
                    self._outcome(FAILED)
                elif isinstance(exc, Invalid):
                    messages = exc.messages
                    self._outcome(REJECTED)
                else:
                    logger.exception("faststate: event %s failed; state rolled back", self.label)
                    messages = _FAILED
                    self._outcome(FAILED)
                yield self._undo(tx, corrections, messages).encode()
                return
        if last:
            yield last

    def _undo(
        self, tx: Transaction, corrections: list[dict[str, Any]], messages: dict[str, str]
    ) -> str:
        """What undoes on the page the progress a stream showed, and says why.

        What the user typed stays for them to correct."""
        own = dict(corrections[0])
        for name in self.bound:
            own.pop(name, None)
        own[ERRORS_SIGNAL] = errors_signal(messages)
        patches = {self.address.namespace: own}
        for address, correction in zip(tx.addresses[1:], corrections[1:], strict=True):
            if correction:
                patches[address.namespace] = correction
        protocol = self.address.protocol
        return protocol.format_elements(tx.restored()) + protocol.patch_signals(patches)

    def _outcome(self, outcome: EventOutcome) -> None:
        """How the event went, for a watched one's record."""
        if self.watch is not None:
            self.watch.outcome = outcome

    def _apply_bound(self, state: ReactiveState) -> None:
        # Inside the transaction: tracked, saved and rolled back with the event.
        for name, value in self.bound.items():
            setattr(state, name, value)

    async def _steps(
        self, tx: Transaction, state: ReactiveState, kwargs: dict[str, Any]
    ) -> AsyncIterator[Any]:
        if self.spec.kind == "async_generator":
            steps = self.spec.func(state, **kwargs)
            while True:
                with tx.running():
                    item = await anext(steps, _STOP)
                if item is _STOP:
                    return
                yield item
        iterator: Iterator[Any] = self.spec.func(state, **kwargs)
        while True:
            with tx.running():
                if self.spec.thread:
                    item = await to_thread.run_sync(next, iterator, _STOP)
                else:
                    item = next(iterator, _STOP)
            if item is _STOP:
                return
            yield item

    def _results(self, result: Any) -> Outcome:
        """What an event returned (or a step yielded), sorted.

        A ``RedirectResponse`` counts as ``redirect(url)``: the client's fetch
        would follow it and merge the next page into this one.
        """
        outcome = Outcome()
        if result is None:
            return outcome
        if isinstance(result, Response):
            location = result.headers.get("location")
            if 300 <= result.status_code < 400 and location:
                outcome.going = Redirect(location)
            return outcome
        items = result if isinstance(result, list | tuple) else (result,)
        for item in items:
            if isinstance(item, Redirect):
                outcome.going = item
            elif isinstance(item, PageSignals):
                outcome.page_signals.update(item.values)
            elif item is not None:
                html = to_html(item)
                outcome.elements.append(ElementPatch(html, self.spec.selector, self.spec.mode))
        return outcome


class _Attempt:
    """How one try of a generator event ended: ``restart`` names the instance it
    must lock up front next time."""

    __slots__ = ("restart",)

    def __init__(self) -> None:
        self.restart: Address | None = None


class Outcome:
    """What one event or step returned: elements (which may go to every live page),
    signals of the caller's page, and where that page goes next."""

    __slots__ = ("elements", "going", "page_signals")

    def __init__(self) -> None:
        self.elements: list[ElementPatch] = []
        self.page_signals: dict[str, Any] = {}
        self.going: Redirect | None = None


async def _resumed(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk


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


def _page_of(values: Mapping[str, Any]) -> str | None:
    page = values.get(PAGE_SIGNAL) if not isinstance(values, FormFields) else None
    return page if isinstance(page, str) and 0 < len(page) <= 64 else None


def refusal(
    address: Address, messages: dict[str, str], correction: dict[str, Any] | None = None
) -> str:
    """The event stream showing why an event was refused (after undoing ``correction``)."""
    patch = dict(correction) if correction else {}
    patch[ERRORS_SIGNAL] = errors_signal(messages)
    return address.protocol.patch_signals({address.namespace: patch})
