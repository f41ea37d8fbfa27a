"""Live pages: one Server-Sent Events stream per page, fed by the broker.

``live(request)`` gives a page the attribute that opens its stream; the URL
carries a signed, expiring token naming the instances the page resolved.
The stream endpoint re-checks every one of them (session, user, authorize)
before subscribing, and never trusts the token alone.

Streams receive changes through the runtime's ``Fanout`` (one delivery
task, each change formatted once); each stream owns one bounded inbox and
writes from its own task, so a slow or frozen page never delays anyone.
Versions travel as the SSE ``id``: on reconnect (``Last-Event-ID``), on a
gap in versions, after an inbox overflow or a lost broker connection, the
stream sends what the page missed from the replay log, or the instance's
full state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any, Final

from itsdangerous import BadSignature
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Message, Receive, Scope, Send

from faststate._address import Address
from faststate._collections import stream_resets
from faststate._context import RequestContext, context_of
from faststate._live.broker import Change
from faststate._live.fanout import Outgoing
from faststate._live.presence import Seat
from faststate._live.viewers import seats_for
from faststate._protocol import PAGE_SIGNAL, SSE_HEADERS, VIEWERS_SIGNAL, Dialect, dump_json
from faststate._resolve import authorize, registration_named
from faststate._runtime import Runtime
from faststate._scopes import SESSION_BOUND, StateScope, parse_key
from faststate._state import ReactiveState, public_state, stored_version
from faststate._transaction import read as read_committed
from faststate._versions import same_incarnation

logger = logging.getLogger("faststate")

LIVE_PATH: Final = "/_faststate/live"
#: Changes a stream holds that its page has not been sent; beyond, it resyncs.
QUEUE_SIZE: Final = 256
_HEARTBEAT: Final = b": heartbeat\n\n"


def live(request: HTTPConnection) -> dict[str, str]:
    """Attributes that open this page's live stream (put them on ``Body`` or a ``Div``).

    Call it after every ``use_state`` of the page: the stream covers the
    instances resolved so far.

    Args:
        request: The request of the page being rendered.

    Returns:
        ``data-init`` (``data-on-load`` in beta) opening the stream, whose URL
        carries a signed token naming the resolved instances, and the page's
        id as a client-only signal; ``{}`` when the page resolved none.
    """

    context = context_of(request)
    if not context.resolved:
        return {}
    runtime = context.runtime
    # A presence page gets a session cookie, so that the tabs of one visitor count once.
    presence = any(a.presence for a, _ in context.resolved.values())
    entries = [[key, a.registration.name, a.namespace] for key, (a, _) in context.resolved.items()]
    token = runtime.live_signer.dumps(
        {
            "s": context.session_id if presence else context.existing_session_id,
            "k": entries,
            "v": [version for _, version in context.resolved.values()],
            "p": context.page_id,
        }
    )
    url = f"{request.scope.get('root_path', '')}{LIVE_PATH}?t={token}"
    protocol = runtime.protocol
    return {
        protocol.init_attribute(): protocol.stream_action(url),
        "data-signals": dump_json({PAGE_SIGNAL: context.page_id}),
    }


async def live_endpoint(request: Request) -> Response:
    """``GET /_faststate/live?t=<token>``: the page's stream."""
    context = context_of(request)
    runtime = context.runtime
    try:
        payload = runtime.live_signer.loads(
            request.query_params.get("t", ""), max_age=runtime.live_max_age
        )
        entries, versions = _entries(payload)
    except (BadSignature, ValueError, TypeError, KeyError):
        return PlainTextResponse("invalid or expired live token", 403)
    watched = [await _check(request, context, payload.get("s"), *entry) for entry in entries]
    session = context.existing_session_id
    if runtime.streams.full(session):
        return PlainTextResponse("too many live streams", 429)
    known = _last_event_versions(request.headers, len(watched)) or versions
    page = payload.get("p")
    return LiveStream(
        runtime,
        watched,
        known,
        session,
        page if isinstance(page, str) else None,
        seats_for(request, context, watched),
    )


def _entries(payload: Any) -> tuple[list[tuple[str, str]], list[int]]:
    entries = [(str(key), str(cls_name)) for key, cls_name, *_ in payload["k"]]
    versions = [int(v) for v in payload["v"]]
    if not entries or len(entries) != len(versions):
        raise ValueError("malformed token")
    return entries, versions


async def _check(
    request: Request,
    context: RequestContext,
    token_session: Any,
    key: str,
    cls_name: str,
) -> Address:
    """The address of a watched instance, or 403 if the caller may not reach it today."""
    address = _reachable(request, context, token_session, key, cls_name)
    if address is None:
        raise HTTPException(403, "live stream refused")
    await authorize(request, address)
    return address


def _reachable(
    request: Request,
    context: RequestContext,
    token_session: Any,
    key: str,
    cls_name: str,
) -> Address | None:
    parts = parse_key(key)
    registration = registration_named(context, request, cls_name)
    if parts is None or registration is None or parts.cls_name != cls_name:
        return None
    scope = registration.config.scope
    if parts.scope is not scope:
        return None
    if scope is StateScope.USER and parts.scope_id != context.user_id(request):
        return None
    if scope in SESSION_BOUND:
        # They belong to the session whose cookie came with the request.
        session = context.existing_session_id
        if session is None or token_session != session or parts.session != session:
            return None
    address = Address.of(
        registration,
        parts.scope_id,
        parts.session,
        context.runtime.protocol,
        request.scope.get("root_path", ""),
    )
    return address if address.key == key else None


def _last_event_versions(headers: Headers, count: int) -> list[int] | None:
    value = headers.get("last-event-id")
    if not value:
        return None
    try:
        versions = [int(part) for part in value.split(".")]
    except ValueError:
        return None
    return versions if len(versions) == count else None


class LiveStream(Response):
    """The response of one page's stream: a Starlette ``Response`` that sends as it goes."""

    def __init__(
        self,
        runtime: Runtime,
        watched: Sequence[Address],
        known: list[int],
        session: str | None,
        page: str | None = None,
        seats: Sequence[Seat] = (),
    ) -> None:
        # As StreamingResponse does: no body, so no Content-Length.
        self.status_code = 200
        self.background = None
        self.init_headers(SSE_HEADERS)
        self.runtime = runtime
        self.protocol: Dialect = runtime.protocol
        self.watched = list(watched)
        self.index = {w.key: i for i, w in enumerate(self.watched)}
        self.known = list(known)
        self.session = session
        #: The page this stream serves: its own events' changes came with their answers.
        self.page = page
        #: Changes not sent yet, in order; at most ``QUEUE_SIZE``.
        self.inbox: deque[Outgoing] = deque()
        self.resync_all = False
        self.ended = False
        self.shutdown = False
        # Presence: this page's seats, and the latest viewer lists not sent yet.
        self.seats = tuple(seats)
        self.viewers_due: dict[str, list[str]] = {}
        #: Heartbeat timer beats since the last write (two make a heartbeat).
        self.idle_beats = 0
        self._waiter: asyncio.Future[None] | None = None

    # Fan-out side: never blocks, never raises.
    def deliver(self, item: Outgoing | None) -> None:
        """Queue the next change of a watched instance for the page.

        Args:
            item: The change, formatted once for every page, or None: some
                may have been lost (the page catches up from the log).
        """
        if self.ended:
            return
        if item is None or len(self.inbox) >= QUEUE_SIZE:
            self._resync()
            return
        self.inbox.append(item)
        self._wake()

    def _resync(self) -> None:
        # What is queued is dropped: the catch-up reads the store and the log.
        self.inbox.clear()
        self.resync_all = True
        self._wake()

    def tick(self) -> None:
        """A beat of the fan-out's heartbeat timer (twice per heartbeat)."""
        self.idle_beats += 1
        if self.idle_beats >= 2:
            self._wake()

    def show_viewers(self, key: str, labels: list[str]) -> None:
        # Kept apart from the inbox: only the latest list matters, and a resync
        # that empties the inbox must not lose it.
        self.viewers_due[key] = labels
        self._wake()

    def end(self, shutdown: bool = False) -> None:
        self.ended = True
        self.shutdown = shutdown
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            try:
                waiter.set_result(None)
            except RuntimeError:  # its loop is closed: a stream of an app served before
                self.ended = True

    # Response side.
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._open()
        watcher = asyncio.create_task(self._watch_disconnect(receive))
        keys = [watched.key for watched in self.watched]
        try:
            await self.runtime.fanout.join(self, keys)
            if self.seats:
                await self.runtime.presence.join(self, self.seats)
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await self._run(send)
        except OSError:
            pass  # the client went away mid-write
        finally:
            watcher.cancel()
            await self.runtime.fanout.leave(self, keys)
            if self.seats:
                await self.runtime.presence.leave(self)
            self._close()
        if self.shutdown and self.protocol.name == "beta":
            # Datastar beta reconnects only after a broken connection, so a
            # stream ended by shutdown is left unfinished (the server logs it).
            return
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _run(self, send: Send) -> None:
        await self._catch_up(send)
        loop = asyncio.get_running_loop()
        inbox = self.inbox
        while not self.ended:
            if not (inbox or self.resync_all or self.viewers_due or self.idle_beats >= 2):
                self._waiter = loop.create_future()
                await self._waiter
                self._waiter = None
                continue
            try:
                if self.resync_all:
                    self.resync_all = False
                    await self._catch_up(send)
                elif inbox:
                    item = inbox.popleft()
                    position = self._next(item)
                    if position is None:
                        await self._send_change(send, item)
                    else:  # the usual case, kept short: it runs once per stream and change
                        self.idle_beats = 0
                        body = self._shown(position, item)
                        await send({"type": "http.response.body", "body": body, "more_body": True})
                if self.viewers_due:
                    await self._send_viewers(send)
            except ValueError as exc:  # a value JSON cannot carry: skip it, keep the page
                logger.warning("faststate: a live change could not be sent: %s", exc)
            if self.idle_beats >= 2:  # a heartbeat passed without a write
                await self._write(send, _HEARTBEAT)

    def _next(self, item: Outgoing) -> int | None:
        """The position of the instance ``item`` changes if it is the very next
        change the page needs (nothing missed, no push, no new copy)."""
        change = item.change
        position = self.index.get(change.key)
        if position is None or change.replay:
            return None
        known = self.known[position]
        if change.version == known + 1 and same_incarnation(known + 1, known):
            return position
        return None

    async def _send_change(self, send: Send, item: Outgoing) -> None:
        change = item.change
        position = self.index.get(change.key)
        if position is None:
            return
        known = self.known[position]
        if not same_incarnation(change.version, known):
            # A new stored copy (the store lost its data, the instance was
            # created again): its versions say nothing about what the page has.
            await self._send_full(send, position)
            if change.replay:
                await self._send_pushed(send, position, item)
            return
        if change.version > known + 1 or (change.replay and change.version > known):
            # Some went missing (a lost message, a full queue): the log has them,
            # this one included, unless it no longer reaches back that far.
            await self._catch_up(send, position)
            if change.replay and self.known[position] >= change.version:
                await self._send_pushed(send, position, item)
            return
        if change.replay:  # elements pushed at the version the page has
            await self._send_pushed(send, position, item)
            return
        if change.version <= known:
            return  # already shown (a duplicate)
        await self._emit(send, position, item)

    async def _emit(self, send: Send, position: int, item: Outgoing) -> None:
        """Show the page the next change of one instance."""
        await self._write(send, self._shown(position, item))

    def _shown(self, position: int, item: Outgoing) -> bytes:
        """What shows the page the next change of one instance (formatted once for
        all pages, with this page's id); the page now has that version."""
        change = item.change
        self.known[position] = max(self.known[position], change.version)
        event_id = self._event_id()
        if change.origin is None or change.origin != self.page:
            text = item.text(self.protocol, self.watched[position].namespace, event_id)
            if text:
                return text
        # Nothing to show (the page's own event, or a commit that changed
        # nothing): the id alone, so that a reconnect starts from here.
        return f"id: {event_id}\n\n".encode()

    async def _send_viewers(self, send: Send) -> None:
        due, self.viewers_due = self.viewers_due, {}
        namespaces = {w.key: w.namespace for w in self.watched}
        signals = {namespaces[key]: {VIEWERS_SIGNAL: labels} for key, labels in due.items()}
        # No event id: a viewer list is no version of the state.
        await self._write(send, self.protocol.patch_signals(signals))

    async def _send_pushed(self, send: Send, position: int, item: Outgoing) -> None:
        """Elements ``push``ed at a version the page has (a replay change has no patch)."""
        namespace = self.watched[position].namespace
        await self._write(send, item.text(self.protocol, namespace, self._event_id()))

    async def _catch_up(self, send: Send, only: int | None = None) -> None:
        """Bring the page up to the stored version of each instance (or of ``only``):
        from the broker's log of what it missed, elements included, or with the
        whole public state when the log no longer has every change."""
        for position, watched in enumerate(self.watched):
            if only is not None and position != only:
                continue
            state = await self._load(watched)
            if state is None:
                continue
            version, known = stored_version(state), self.known[position]
            if version == known:
                continue
            missed = None
            if same_incarnation(version, known) and version > known:
                missed = await self._missed(watched.key, known, version)
            if missed is None:
                await self._send_full(send, position, state)
                continue
            for change in missed:
                if change.replay:
                    await self._send_pushed(send, position, Outgoing(change))
                else:
                    await self._emit(send, position, Outgoing(change))

    async def _missed(self, key: str, known: int, version: int) -> list[Change] | None:
        try:
            changes = await self.runtime.broker.replay(key, known)
        except Exception as exc:
            logger.warning("faststate: replay of %s failed: %s", key, exc)
            return None
        if changes is None:
            return None
        last = max((c.version for c in changes if not c.replay), default=known)
        return changes if last >= version else None

    async def _send_full(
        self, send: Send, position: int, state: ReactiveState | None = None
    ) -> None:
        """The whole public state of one instance, its stream fields re-rendered."""
        watched = self.watched[position]
        if state is None:
            state = await self._load(watched)
            if state is None:
                return
        self.known[position] = stored_version(state)
        event_id = self._event_id()
        # Stream fields are no signals: their containers are rendered again.
        resets = stream_resets(state, watched.namespace, self.protocol)
        text = self.protocol.format_elements(resets, event_id) if resets else ""
        patch = {watched.namespace: public_state(state)}
        await self._write(send, text + self.protocol.patch_signals(patch, event_id))

    async def _load(self, watched: Address) -> ReactiveState | None:
        try:
            return await read_committed(self.runtime, watched)
        except Exception as exc:
            logger.warning("faststate: live resync of %s failed: %s", watched.key, exc)
            return None

    def _event_id(self) -> str:
        known = self.known
        return str(known[0]) if len(known) == 1 else ".".join(str(v) for v in known)

    async def _write(self, send: Send, text: str | bytes) -> None:
        body = text if isinstance(text, bytes) else text.encode()
        message: Message = {"type": "http.response.body", "body": body, "more_body": True}
        self.idle_beats = 0
        await send(message)

    async def _watch_disconnect(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.end()
                return

    def _open(self) -> None:
        self.runtime.streams.add(self, self.session)

    def _close(self) -> None:
        self.ended = True
        self.runtime.streams.discard(self, self.session)
