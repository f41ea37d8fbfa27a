"""Who may call an event endpoint, and what its body says: the one guard path.

Event endpoints change state, so a page on another site must not be able to
call them.  The Datastar client always sends ``Datastar-Request: true``, a
header no plain cross-site form or image can carry; browsers say where a
request comes from in ``Sec-Fetch-Site`` (older ones only in ``Origin``).
Form and plain-text bodies, which need no CORS pre-flight, are accepted only
when same-origin is proven.

``guard_asgi`` runs in the middleware, before any routing or parsing, for
the event paths of the app it serves; ``guard_request`` runs in the endpoint
for events it could not see (registered on an app mounted below it).  Both
check the headers, read the body within its limit, and parse it once into
the values events bind from (``scope[VALUES_KEY]``).  A refusal becomes a
response in ``refusal_response`` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from starlette.datastructures import FormData, Headers
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Message, Receive, Scope, Send

JSON_TYPES = frozenset({"application/json"})
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})


#: Where the guarded request keeps the values it carries (signals or form fields).
VALUES_KEY: Final = "faststate.values"


class FormFields(dict[str, list[str]]):
    """Form fields, every one a list of its values (like a query string)."""


EventValues = dict[str, Any]
"""The top-level Datastar signals of a JSON body, or ``FormFields``."""


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str
    #: Already answered (a body past its deadline): nothing more may be sent.
    answered: bool = False


def refusal_response(refusal: Refusal) -> Response:
    # A body refused half-read would be read on by the server for the next
    # request on the connection: a slow or oversized sender is let go instead.
    headers = {"Connection": "close"} if refusal.status in (408, 413) else None
    return PlainTextResponse(refusal.reason, refusal.status, headers=headers)


class SlowBodies:
    """Answers 408, which closes the connection, to event requests whose body is
    not complete ``within`` seconds.

    A client trickling a byte now and then (slowloris) would otherwise hold
    its connection, and a file descriptor, for as long as it likes.  The
    answer is sent from a timer rather than by interrupting the reader, and
    requests due in the same quarter second share one timer: a timer of its
    own (``asyncio.timeout``) would cost each event more than its whole guard.
    """

    SLOTS_PER_SECOND: Final = 4

    def __init__(self, within: float) -> None:
        if within <= 0:
            raise ValueError("body_timeout must be a positive number of seconds")
        self.within = within
        #: Requests still reading their body, by (loop, slot) and id of their ``send``.
        self._due: dict[tuple[asyncio.AbstractEventLoop, int], dict[int, Send]] = {}
        self._answering: set[asyncio.Task[None]] = set()
        #: The slot requests of one loop join while the loop's time is before
        #: ``until``: one comparison instead of working their slot out, for
        #: most requests.  One tuple, replaced whole, for apps served by
        #: several loops in threads.
        self._joinable: tuple[asyncio.AbstractEventLoop, float, dict[int, Send]] | None = None

    def watch(self, send: Send) -> dict[int, Send]:
        """Start watching; returns what ``done`` needs."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        joinable = self._joinable
        if joinable is not None and joinable[0] is loop and now < joinable[1]:
            watched = joinable[2]
        else:
            slot = int((now + self.within) * self.SLOTS_PER_SECOND) + 1
            key = (loop, slot)
            found = self._due.get(key)
            if found is None:
                found = self._due[key] = {}
                loop.call_at(slot / self.SLOTS_PER_SECOND, self._expire, key)
            watched = found
            self._joinable = (loop, slot / self.SLOTS_PER_SECOND - self.within, watched)
        watched[id(send)] = send
        return watched

    def done(self, watched: dict[int, Send], send: Send) -> bool:
        """Stop watching; False when the deadline has answered the request already."""
        return watched.pop(id(send), None) is not None

    def _expire(self, key: tuple[asyncio.AbstractEventLoop, int]) -> None:
        watched = self._due.pop(key, {})
        joinable = self._joinable
        if joinable is not None and joinable[2] is watched:  # none joins a slot answered
            self._joinable = None
        for send in watched.values():
            task = key[0].create_task(self._answer(send))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)
        watched.clear()  # so that ``done`` tells these requests they were answered

    async def _answer(self, send: Send) -> None:
        reason = f"request body not received within {self.within:g} s"
        response = refusal_response(Refusal(408, reason))
        start: Message = {
            "type": "http.response.start",
            "status": 408,
            "headers": response.raw_headers,
        }
        with contextlib.suppress(OSError, RuntimeError):  # the client may be gone already
            await send(start)
            await send({"type": "http.response.body", "body": response.body})


_ANSWERED: Final = Refusal(408, "request body too slow", answered=True)


class GuardSettings(Protocol):
    @property
    def trusted_origins(self) -> frozenset[str]: ...
    @property
    def max_body_size(self) -> int: ...
    @property
    def slow_bodies(self) -> SlowBodies: ...


#: What ``check_event_request`` and the body parsers read of a request, by the
#: name the request spells it with.  The names are taken from here rather than
#: decoded: no text is made, nor hashed as a key, for them on each request.
_GUARD_HEADERS: Final = {
    name.encode(): name
    for name in (
        "datastar-request",
        "origin",
        "sec-fetch-site",
        "host",
        "content-type",
        "content-length",
    )
}


def read_headers(scope: Scope) -> tuple[dict[str, str], bytes | None]:
    """What the guard reads of a request's headers, by name, and its cookies as
    they came: one pass over them (the middleware reads the cookies of every
    request, the guard the rest of every event's).

    The cookies of several ``Cookie`` fields come joined as one: HTTP/2 lets a
    browser split them (Chrome does), and some servers pass the fields on
    as they came."""
    headers: dict[str, str] = {}
    cookies: bytes | None = None
    for key, value in scope["headers"]:
        name = _GUARD_HEADERS.get(key)
        if name is not None:
            headers[name] = value.decode("latin-1")
        elif key == b"cookie":
            cookies = bytes(value) if cookies is None else b"; ".join((cookies, value))
    return headers, cookies


async def guard_asgi(
    scope: Scope,
    receive: Receive,
    send: Send,
    settings: GuardSettings,
    headers: Mapping[str, str],
) -> Refusal | Receive:
    """Guard an event request before the app sees it.

    The body is buffered here so that no later reader (FastHTML's form
    parsing included) can be made to read more than the limit; the app
    receives it replayed.  ``headers``: the request's, as ``read_headers``
    gives them.
    """
    limit = settings.max_body_size
    content_type = media_type(headers.get("content-type"))
    refusal = check_event_request(
        headers, headers.get("host"), settings.trusted_origins, limit, content_type
    )
    if refusal is not None:
        return refusal
    slow_bodies = settings.slow_bodies
    watched = slow_bodies.watch(send)
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        raw: bytes = message.get("body", b"")  # the whole body in one message: the usual
        refusal = Refusal(413, f"request body over {limit} bytes") if len(raw) > limit else None
    else:
        raw, refusal = await _rest_of_body(message, receive, limit)
    if not slow_bodies.done(watched, send):
        return _ANSWERED
    if refusal is not None:
        return refusal
    if content_type in JSON_TYPES:  # what the Datastar client sends: no coroutine for it
        values = parse_signals(raw)
    else:
        values = await _parse_body(raw, headers)
    if isinstance(values, Refusal):
        return values
    scope[VALUES_KEY] = values
    return replaying(raw, receive)


async def _rest_of_body(
    first: Message, receive: Receive, limit: int
) -> tuple[bytes, Refusal | None]:
    """The body of a request whose ``first`` message did not carry all of it."""
    parts: list[bytes] = []
    size = 0
    message = first
    while True:
        if message["type"] == "http.disconnect":
            return b"", Refusal(400, "client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", Refusal(413, f"request body over {limit} bytes")
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts), None
        message = await receive()


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` giving the app ``body`` (already read here) as the whole request."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def guard_request(request: Request, settings: GuardSettings) -> EventValues | Refusal:
    """The values of an event request, guarded here unless the middleware did."""
    guarded: EventValues | None = request.scope.get(VALUES_KEY)
    if guarded is not None:
        return guarded
    headers = request.headers
    limit = settings.max_body_size
    refusal = check_event_request(headers, headers.get("host"), settings.trusted_origins, limit)
    if refusal is not None:
        return refusal
    try:
        raw = await _read_limited(request.stream(), limit, settings.slow_bodies.within)
    except RuntimeError:
        # FastHTML parses the body before the handler runs; on an app the
        # middleware did not guard, its parsed form is all there is.
        return _form_fields(await request.form())
    if isinstance(raw, Refusal):
        return raw
    values = await _parse_body(raw, headers)
    if not isinstance(values, Refusal):
        request.scope[VALUES_KEY] = values
    return values


async def _read_limited(
    chunks: AsyncIterator[bytes], limit: int, within: float
) -> bytes | Refusal:
    """The body of a request the middleware did not guard (a rare path: the
    cost of a timer of its own does not matter here), or why not."""
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(within):
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    return Refusal(413, f"request body over {limit} bytes")
                parts.append(chunk)
    except ClientDisconnect:
        return Refusal(400, "client disconnected")
    except TimeoutError:
        return Refusal(408, f"request body not received within {within:g} s")
    return b"".join(parts)


async def _parse_body(raw: bytes, headers: Mapping[str, str]) -> EventValues | Refusal:
    content_type = media_type(headers.get("content-type"))
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        parser_class = FormParser if content_type.startswith("application/") else MultiPartParser

        async def replay() -> AsyncGenerator[bytes, None]:
            yield raw

        form_headers = headers if isinstance(headers, Headers) else Headers(headers=dict(headers))
        try:
            form = await parser_class(form_headers, replay()).parse()
        except MultiPartException as exc:
            return Refusal(400, f"invalid form body: {exc.message}")
        return _form_fields(form)
    if content_type == "text/plain":
        return {}
    return parse_signals(raw)


def _form_fields(form: FormData) -> FormFields:
    # Uploaded files are not event parameters; only text fields are kept.
    return FormFields(
        (name, [value for value in form.getlist(name) if isinstance(value, str)]) for name in form
    )


def check_event_request(
    headers: Mapping[str, str],
    host: str | None,
    trusted_origins: frozenset[str],
    max_body_size: int,
    content_type: str | None = None,
) -> Refusal | None:
    """Why a request may not reach an event, or None when it may.

    ``content_type``: the request's media type, if the caller worked it out already."""
    if headers.get("datastar-request") is None:
        return Refusal(403, "event requests must come from Datastar (Datastar-Request header)")
    origin = headers.get("origin")
    trusted = origin is not None and origin in trusted_origins
    same_origin = _same_origin(headers.get("sec-fetch-site"), origin, host)
    if same_origin is False and not trusted:
        return Refusal(403, "cross-site event requests are refused")
    if content_type is None:
        content_type = media_type(headers.get("content-type"))
    if content_type in FORM_TYPES:
        if not (same_origin or trusted):
            return Refusal(403, "form bodies are accepted only from the same origin")
    elif content_type and content_type not in JSON_TYPES:
        return Refusal(415, f"unsupported content type {content_type!r}")
    length = headers.get("content-length")
    if length is not None:
        if not (length.isascii() and length.isdigit()):  # "²" is a digit to str.isdigit
            return Refusal(400, "invalid Content-Length")
        if int(length) > max_body_size:
            return Refusal(413, f"request body over {max_body_size} bytes")
    return None


def media_type(content_type: str | None) -> str:
    """``application/json`` of ``Application/JSON; charset=utf-8``; ``""`` for none."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def _same_origin(fetch_site: str | None, origin: str | None, host: str | None) -> bool | None:
    """True when proven same-origin, False when proven foreign, None when unknown."""
    if fetch_site is not None:
        if fetch_site == "same-origin":
            return True
        if fetch_site == "cross-site":
            return False
        if fetch_site == "none":  # typed into the address bar: not a page's request
            return None
        # "same-site": a sibling subdomain; JSON still needs the custom
        # header (and so CORS), but it does not prove same-origin.
        return None
    if origin is None or origin == "null":
        return False if origin == "null" else None
    return urlsplit(origin).netloc.lower() == (host or "").lower()


#: Signals are a page's data, not documents: deeper nesting is refused before
#: anything (FastHTML's own body parsing included) walks it recursively.
MAX_JSON_DEPTH = 32


def parse_signals(raw: bytes) -> dict[str, Any] | Refusal:
    """The JSON object of signals a Datastar request carries, or why not."""
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8").strip(_JSON_WHITESPACE)
        # The decoder's scanner straight away: json.loads wraps it in two
        # regular-expression matches and a check, three times its cost here.
        data, end = _SCAN_JSON(text, 0)
        if end != len(text):
            raise ValueError("extra data after the JSON value")
    except (ValueError, RecursionError, StopIteration):  # StopIteration: no value at all
        return Refusal(400, "request body is not valid JSON")
    if not isinstance(data, dict):
        return Refusal(400, "request body must be a JSON object of signals")
    # The substring test first: the regular expression costs more, and
    # bodies without escapes are most of them.
    if b"\\u" in raw and _SURROGATE_ESCAPE.search(raw) and not _utf8_safe(data):
        # JSON can spell half a UTF-16 pair; no UTF-8 page or stream can carry it.
        return Refusal(400, "request body has an unpaired surrogate")
    # Counting brackets is cheap; only a body with enough of them is walked.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _too_deep(data, MAX_JSON_DEPTH):
        return Refusal(400, f"request body nests deeper than {MAX_JSON_DEPTH} levels")
    return data


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_JSON_WHITESPACE: Final = " \t\n\r"
_SCAN_JSON: Final[Any] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _utf8_safe(data: Any) -> bool:
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _too_deep(value: Any, limit: int) -> bool:
    """Whether JSON ``value`` nests deeper than ``limit`` (checked without recursion)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False
