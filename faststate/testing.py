"""Helpers for testing apps built on faststate.

``fire(client, counter.increment, amount=2)`` posts an event the way the
Datastar client does and returns the parsed answer:

    result = fire(client, "/CounterState/increment", amount=2)
    assert result.signals == {"CounterState": {"count": 2}}
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from faststate._helpers import event_url
from faststate._protocol import ERRORS_SIGNAL

#: The headers the Datastar client sends with an event (a same-origin fetch).
DATASTAR_HEADERS = {
    "Datastar-Request": "true",
    "Sec-Fetch-Site": "same-origin",
}

#: A file to upload: (file name, contents, media type).
FileToUpload = tuple[str, bytes, str]

_SIGNAL_EVENTS = ("datastar-patch-signals", "datastar-merge-signals")
_NAVIGATION = re.compile(r'window\.location\.assign\(("(?:[^"\\]|\\.)*")\)')
_ELEMENT_EVENTS = ("datastar-patch-elements", "datastar-merge-fragments")


@dataclass
class SSEEvent:
    """One Server-Sent Event; ``data`` maps each data-line keyword to its lines.

    Attributes:
        type: The event type (``datastar-patch-signals``, ``datastar-patch-elements``...).
        data: Each ``data:`` line's keyword (``signals``, ``elements``,
            ``selector``, ``mode``...) with its lines.
        id: The SSE id (a live stream's version), or None.
    """

    type: str
    data: dict[str, list[str]] = field(default_factory=dict)
    id: str | None = None

    @property
    def signals(self) -> Any:
        """The JSON of a signal patch, or None for other events."""
        return json.loads("\n".join(self.data["signals"])) if "signals" in self.data else None

    @property
    def html(self) -> str:
        """The HTML of an element patch (``""`` for other events)."""
        lines = self.data.get("elements") or self.data.get("fragments") or []
        return "\n".join(lines)

    def value(self, keyword: str) -> str | None:
        """The first line of one data keyword.

        Args:
            keyword: ``"selector"``, ``"mode"``...

        Returns:
            The line, or None when the event has none.
        """
        lines = self.data.get(keyword)
        return lines[0] if lines else None


@dataclass
class EventResult:
    """What an event endpoint answered.

    Attributes:
        status_code: The HTTP status.
        headers: The response headers.
        text: The raw body.
        events: The body parsed as Server-Sent Events (empty unless it was
            ``text/event-stream``).
    """

    status_code: int
    headers: Mapping[str, str]
    text: str
    events: list[SSEEvent]

    @property
    def signals(self) -> dict[str, Any]:
        """Every signal patch of the answer merged, as the client would apply them."""
        merged: dict[str, Any] = {}
        for sse in self.events:
            if sse.type in _SIGNAL_EVENTS:
                merged = apply_patch(merged, sse.signals)
        return merged

    @property
    def errors(self) -> dict[str, str]:
        """The messages the page shows after this answer, by field or parameter
        (``""``: the message naming none), of every instance the answer concerns.

        Empty when the event was accepted (it clears what the page showed).
        """
        messages: dict[str, str] = {}
        for own in self.signals.values():
            shown = own.get(ERRORS_SIGNAL) if isinstance(own, dict) else None
            if shown:
                messages.update(json.loads(shown))
        return messages

    @property
    def elements(self) -> list[SSEEvent]:
        """The element patches of the answer, in order (``.html``, ``.value("selector")``)."""
        return [sse for sse in self.events if sse.type in _ELEMENT_EVENTS]

    @property
    def redirect(self) -> str | None:
        """Where the answer sends the page (``redirect(url)``), or None."""
        for sse in self.events:
            lines = sse.data.get("script") or sse.data.get("elements") or []
            match = _NAVIGATION.search("\n".join(lines))
            if match is not None:
                return str(json.loads(match.group(1)))
        return None

    def json(self) -> Any:
        """The body parsed as JSON (for answers that are not event streams)."""
        return json.loads(self.text)


class _SyncClient(Protocol):
    def post(self, url: str, **kwargs: Any) -> Any: ...


class _AsyncClient(Protocol):
    async def post(self, url: str, **kwargs: Any) -> Any: ...


def fire(
    client: _SyncClient,
    target: str | Callable[..., Any],
    /,
    signals: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    uploads: Mapping[str, FileToUpload | list[FileToUpload]] | None = None,
    **params: Any,
) -> EventResult:
    """Post an event as the Datastar client would (Starlette ``TestClient``, httpx).

    ``uploads={"avatar": ("me.png", data, "image/png")}`` (a list of such
    tuples for a list parameter) posts a multipart form as ``action(...,
    form=True)`` does, with ``signals`` as its text fields.

    Args:
        client: Starlette's ``TestClient`` or an ``httpx.Client`` on the app.
        target: The event's URL (``"/CounterState/increment"``), or a bound
            event method of a resolved instance (its URL is built like ``action``'s).
        signals: The JSON body: the page's signals (``{"message": "hi"}``,
            ``{"Signup": {"email": "a@b.c"}}`` for bindable fields).
        headers: Headers added to, or replacing, ``DATASTAR_HEADERS``.
        uploads: Files by parameter name: ``(file name, contents, media type)``,
            or a list of them.
        **params: Event parameters for the query string (booleans as
            ``true``/``false``).

    Returns:
        The parsed answer.
    """
    url, body, all_headers = _request(target, signals, headers, params)
    if uploads is not None:
        del all_headers["Content-Type"]  # the client sets it, boundary included
        response = client.post(
            url, data=dict(signals or {}), files=_files(uploads), headers=all_headers
        )
    else:
        response = client.post(url, content=body, headers=all_headers)
    return _result(response)


async def afire(
    client: _AsyncClient,
    target: str | Callable[..., Any],
    /,
    signals: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    uploads: Mapping[str, FileToUpload | list[FileToUpload]] | None = None,
    **params: Any,
) -> EventResult:
    """``fire`` for ``httpx.AsyncClient``.

    Args:
        client: An ``httpx.AsyncClient`` on the app (``ASGITransport``).
        target: The event's URL, or a bound event method.
        signals: The JSON body: the page's signals.
        headers: Headers added to, or replacing, ``DATASTAR_HEADERS``.
        uploads: Files by parameter name, as for ``fire``.
        **params: Event parameters for the query string.

    Returns:
        The parsed answer.
    """
    url, body, all_headers = _request(target, signals, headers, params)
    if uploads is not None:
        del all_headers["Content-Type"]
        response = await client.post(
            url, data=dict(signals or {}), files=_files(uploads), headers=all_headers
        )
    else:
        response = await client.post(url, content=body, headers=all_headers)
    return _result(response)


def _files(
    uploads: Mapping[str, FileToUpload | list[FileToUpload]],
) -> list[tuple[str, FileToUpload]]:
    """httpx's ``files=`` list: one entry per file, a field name repeated for lists."""
    return [
        (name, file)
        for name, given in uploads.items()
        for file in (given if isinstance(given, list) else [given])
    ]


def parse_sse(text: str) -> list[SSEEvent]:
    """Split an event stream into events (comments and blank events skipped).

    Args:
        text: The body of a ``text/event-stream`` response.

    Returns:
        The events, in order.
    """
    events: list[SSEEvent] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        current: SSEEvent | None = None
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                current = SSEEvent(value)
            elif current is None:
                continue
            elif name == "id":
                current.id = value
            elif name == "data":
                keyword, _, rest = value.partition(" ")
                current.data.setdefault(keyword, []).append(rest)
        if current is not None:
            events.append(current)
    return events


def _request(
    target: str | Callable[..., Any],
    signals: Mapping[str, Any] | None,
    headers: Mapping[str, str] | None,
    params: dict[str, Any],
) -> tuple[str, str, dict[str, str]]:
    if isinstance(target, str):
        url = target
        if params:
            from urllib.parse import urlencode

            url += ("&" if "?" in url else "?") + urlencode(_query(params.items()), doseq=True)
    else:
        url = event_url(target, **params)
    all_headers = {**DATASTAR_HEADERS, "Content-Type": "application/json", **(headers or {})}
    return url, json.dumps(dict(signals or {})), all_headers


def _query(items: Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(k, ("true" if v else "false") if isinstance(v, bool) else v) for k, v in items]


def _result(response: Any) -> EventResult:
    text = response.text
    content_type = response.headers.get("content-type", "")
    events = parse_sse(text) if content_type.startswith("text/event-stream") else []
    return EventResult(response.status_code, response.headers, text, events)


def apply_patch(target: Any, patch: Any) -> Any:
    """``target`` after a signal patch, as the Datastar 1.0 client applies it (RFC 7396).

    Args:
        target: The signals before (a dict, or anything for a non-object patch).
        patch: A JSON Merge Patch: nested objects merge, ``null`` deletes,
            anything else replaces.

    Returns:
        The signals after (``target`` is not changed).
    """

    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_patch(result.get(key), value)
    return result
