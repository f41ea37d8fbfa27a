"""Who may call an event endpoint: the cross-site and body rules.

Event endpoints change state, so a page on another site must not be able to
call them.  The Datastar client always sends ``Datastar-Request: true``, a
header no plain cross-site form or image can carry; browsers say where a
request comes from in ``Sec-Fetch-Site`` (older ones only in ``Origin``).
Form and plain-text bodies, which need no CORS pre-flight, are accepted only
when same-origin is proven.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.types import Scope

JSON_TYPES = frozenset({"application/json"})
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str


def check_event_request(
    headers: Mapping[str, str],
    host: str | None,
    trusted_origins: frozenset[str],
    max_body_size: int,
) -> Refusal | None:
    """Why a request may not reach an event, or None when it may."""
    if headers.get("datastar-request") is None:
        return Refusal(403, "event requests must come from Datastar (Datastar-Request header)")
    origin = headers.get("origin")
    trusted = origin is not None and origin in trusted_origins
    same_origin = _same_origin(headers.get("sec-fetch-site"), origin, host)
    if same_origin is False and not trusted:
        return Refusal(403, "cross-site event requests are refused")
    content_type = media_type(headers.get("content-type"))
    if content_type in FORM_TYPES:
        if not (same_origin or trusted):
            return Refusal(403, "form bodies are accepted only from the same origin")
    elif content_type and content_type not in JSON_TYPES:
        return Refusal(415, f"unsupported content type {content_type!r}")
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            return Refusal(400, "invalid Content-Length")
        if int(length) > max_body_size:
            return Refusal(413, f"request body over {max_body_size} bytes")
    return None


def media_type(content_type: str | None) -> str:
    """``application/json`` of ``Application/JSON; charset=utf-8``; ``""`` for none."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def scope_header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header straight from the ASGI scope (``name`` lower-case)."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


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
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return Refusal(400, "request body is not valid JSON")
    if not isinstance(data, dict):
        return Refusal(400, "request body must be a JSON object of signals")
    if _SURROGATE_ESCAPE.search(raw) and not _utf8_safe(data):
        # JSON can spell half a UTF-16 pair; no UTF-8 page or stream can carry it.
        return Refusal(400, "request body has an unpaired surrogate")
    # Counting brackets is cheap; only a body with enough of them is walked.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _too_deep(data, MAX_JSON_DEPTH):
        return Refusal(400, f"request body nests deeper than {MAX_JSON_DEPTH} levels")
    return data


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


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
