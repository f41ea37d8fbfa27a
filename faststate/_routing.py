"""Event endpoints: ``POST /<Class>/<event>`` from request to SSE answer.

One event, in order: guard (headers, body, values) → address → authorize →
parameters → one transaction (lock, load, run, rollback or diff, save,
publish) → the SSE answer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from functools import partial
from typing import Any, ClassVar, Final

from anyio import to_thread
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from faststate._address import Address
from faststate._context import context_of
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
from faststate._guards import VALUES_KEY, Refusal, guard_request, refusal_response
from faststate._protocol import ERRORS_SIGNAL, SSE_HEADERS, ElementPatch, to_html
from faststate._registry import Registration
from faststate._resolve import address_for, authorize
from faststate._runtime import Runtime
from faststate._state import ReactiveState
from faststate._stores.base import StaleState, StoreUnavailable
from faststate._transaction import Transaction

logger = logging.getLogger("faststate")

_STOP: Final = object()
#: Errors answered with their own status (4xx, 409, 503), never as "event failed".
_ANSWERED: Final = (HTTPException, StoreUnavailable, StaleState)
_FAILED: Final = {GENERAL: FAILED_MESSAGE}


class EventEndpoint:
    """The ASGI app of one event route."""

    def __init__(self, registration: Registration, spec: EventSpec) -> None:
        self.registration = registration
        self.spec = spec

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await handle_event(request, self.registration, self.spec)
        await response(scope, receive, send)


def request_endpoint(registration: Registration, spec: EventSpec) -> Any:
    """The same endpoint as a ``request -> response`` function (FastHTML routes).

    FastHTML fills a handler's parameters by name from the request: it takes only ``req``.
    """

    async def endpoint(req: Request) -> Response:
        return await handle_event(req, registration, spec)

    endpoint.__name__ = f"{registration.name}_{spec.name}"
    return endpoint


async def handle_event(request: Request, registration: Registration, spec: EventSpec) -> Response:
    context = context_of(request)
    runtime = context.runtime
    values = request.scope.get(VALUES_KEY)  # the middleware guarded it (the usual case)
    if values is None:
        values = await guard_request(request, runtime)
    if isinstance(values, Refusal):
        return refusal_response(values)
    address = address_for(request, context, registration)
    if registration.config.authorize is not None:
        await authorize(request, address)
    kwargs, errors = spec.bind(request, values)
    bound, field_errors = bound_values(registration.cls, address.namespace, values)
    errors += field_errors
    if errors:  # the event does not run; the page says why
        return SSEResponse(refusal(address, messages_of(errors)))
    run = EventRun(
        runtime=context.runtime,
        address=address,
        spec=spec,
        kwargs=kwargs,
        bound=bound,
        typed=values.get(address.namespace) if bound else None,
        clear_errors=errors_shown(values, address.namespace),
    )
    try:
        if spec.kind in ("generator", "async_generator"):
            return await run.streamed()
        return await run.once()
    except StoreUnavailable as exc:
        logger.error("faststate: store unavailable during %s: %s", run.label, exc)
        return PlainTextResponse("state store unavailable, try again", 503)
    except StaleState as exc:
        logger.warning("faststate: %s not saved: %s", run.label, exc)
        return PlainTextResponse("state changed concurrently, try again", 409)


class EventRun:
    """One event on its instance, run in a transaction."""

    __slots__ = ("address", "bound", "clear_errors", "kwargs", "runtime", "spec", "typed")

    def __init__(
        self,
        *,
        runtime: Runtime,
        address: Address,
        spec: EventSpec,
        kwargs: dict[str, Any],
        bound: dict[str, Any],
        typed: Mapping[str, Any] | None = None,
        clear_errors: bool = False,
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

    @property
    def label(self) -> str:
        """How the logs name this event (only ever needed when something went wrong)."""
        return f"{self.address.registration.name}.{self.spec.name} on {self.address.key}"

    async def once(self) -> Response:
        spec = self.spec
        async with Transaction(self.runtime, (self.address,)) as tx:
            state = tx.states[0]
            try:
                self._apply_bound(state)
                if spec.kind == "async":
                    result = await spec.func(state, **self.kwargs)
                elif spec.thread:
                    result = await to_thread.run_sync(partial(spec.func, state, **self.kwargs))
                else:
                    result = spec.func(state, **self.kwargs)
                outcome = self._results(result)
                (patch,) = tx.finish()
                # Written before the commit: what cannot be sent is not kept.
                if isinstance(result, Response) and outcome.going is None:
                    response = result
                else:
                    response = self._answer(outcome, self._for_caller(state, patch))
                await tx.commit(outcome.elements if spec.broadcast else ())
            except _ANSWERED:
                raise
            except Invalid as exc:
                return SSEResponse(refusal(self.address, exc.messages))
            except Exception:
                logger.exception("faststate: event %s failed; state rolled back", self.label)
                return SSEResponse(refusal(self.address, _FAILED))
        return response

    def _answer(self, outcome: Outcome, patch: dict[str, Any]) -> Response:
        text = self._format(outcome, patch)
        if outcome.going is not None:  # last: the page applies the changes, then leaves
            text += self.address.protocol.redirect(outcome.going.url)
        if not text:
            return Response(status_code=204)
        return SSEResponse(text)

    def _format(self, outcome: Outcome, patch: dict[str, Any]) -> str:
        protocol = self.address.protocol
        text = protocol.format_elements(outcome.elements) if outcome.elements else ""
        if patch:
            text += protocol.patch_signals({self.address.namespace: patch})
        if outcome.page_signals:
            text += protocol.patch_signals(outcome.page_signals)
        return text

    def _for_caller(self, state: ReactiveState, patch: dict[str, Any]) -> dict[str, Any]:
        """The event's first patch as the page that sent it needs it.

        ``patch`` is what changed in the store, which live pages get.  The
        caller already shows what it typed into bindable fields: those are
        sent back only where the stored value differs from it (the event
        emptied the input, or the field's type normalised what was typed).
        Errors the page shows are cleared.
        """
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
        protocol = self.address.protocol
        namespace = self.address.namespace
        sent = False
        async with Transaction(self.runtime, (self.address,)) as tx:
            elements: list[ElementPatch] = []
            first = True
            try:
                going: Redirect | None = None
                state = tx.states[0]
                self._apply_bound(state)
                async for item in self._steps(state):
                    outcome = self._results(item)
                    going = outcome.going or going
                    (patch,) = tx.step()
                    if first:
                        patch, first = self._for_caller(state, patch), False
                    elements.extend(outcome.elements)
                    text = self._format(outcome, patch)
                    if text:
                        chunk = text.encode()  # may fail: before it counts as sent
                        sent = True
                        yield chunk
                (patch,) = tx.finish()
                if first:
                    patch = self._for_caller(state, patch)
                last_text = protocol.patch_signals({namespace: patch}) if patch else ""
                if going is not None:
                    last_text += protocol.redirect(going.url)
                last = last_text.encode()
                await tx.commit(elements if self.spec.broadcast else ())
            except Exception as exc:
                (correction,) = tx.rollback()
                if isinstance(exc, _ANSWERED):
                    if not sent:
                        raise
                    logger.error("faststate: %s not completed: %s", self.label, exc)
                    messages = _FAILED
                elif isinstance(exc, Invalid):
                    messages = exc.messages
                else:
                    logger.exception("faststate: event %s failed; state rolled back", self.label)
                    messages = _FAILED
                # What this stream already showed is undone on the page, but
                # for what the user typed, which stays for them to correct.
                for name in self.bound:
                    correction.pop(name, None)
                yield refusal(self.address, messages, correction).encode()
                return
        if last:
            yield last

    def _apply_bound(self, state: ReactiveState) -> None:
        # Inside the transaction: tracked, saved and rolled back with the event.
        for name, value in self.bound.items():
            setattr(state, name, value)

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


def refusal(
    address: Address, messages: dict[str, str], correction: dict[str, Any] | None = None
) -> str:
    """The event stream showing why an event was refused (after undoing ``correction``)."""
    patch = dict(correction) if correction else {}
    patch[ERRORS_SIGNAL] = errors_signal(messages)
    return address.protocol.patch_signals({address.namespace: patch})
