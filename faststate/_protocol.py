"""Datastar wire formats: Server-Sent Events and page attributes.

``v1`` is Datastar 1.0.x, written byte for byte as datastar-py writes it, with
its constants (its event builders cost more than the rest of a small event).  ``beta`` is Datastar
1.0.0-beta.11 (the names of the 0.21 line), which datastar-py no longer
speaks, so it is formatted here.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from datastar_py.attributes import action_generator
from datastar_py.consts import (
    ELEMENTS_DATALINE_LITERAL,
    MODE_DATALINE_LITERAL,
    SELECTOR_DATALINE_LITERAL,
    SIGNALS_DATALINE_LITERAL,
    EventType,
)
from datastar_py.sse import SSE_HEADERS as _DATASTAR_SSE_HEADERS

PatchMode = Literal["outer", "inner", "replace", "prepend", "append", "before", "after", "remove"]

PATCH_MODES: Final = frozenset(
    ("outer", "inner", "replace", "prepend", "append", "before", "after", "remove")
)
#: The client-only signal, under an instance's namespace, holding the
#: errors the page shows for it (see ``faststate._errors``).
ERRORS_SIGNAL: Final = "_errors"
#: The client-only signal, under an instance's namespace, listing who has a
#: live page of it open (classes registered with ``presence``).
VIEWERS_SIGNAL: Final = "_viewers"
#: The client-only page signal naming the page (its live stream), sent with
#: every event so that the page's own stream does not show the change twice.
PAGE_SIGNAL: Final = "_faststatePage"
#: Cache-Control, Content-Type and X-Accel-Buffering, as datastar-py sends them.
SSE_HEADERS: Final[dict[str, str]] = dict(_DATASTAR_SSE_HEADERS)


@dataclass(frozen=True, slots=True)
class ElementPatch:
    """HTML to patch into the page, and where."""

    html: str
    selector: str | None = None
    mode: PatchMode = "outer"


def to_html(item: Any) -> str:
    """HTML text of a FastHTML element, an ``__html__`` object or a string."""
    if hasattr(item, "__html__"):  # first: FastHTML elements answer any other name slowly
        return str(item.__html__())
    if hasattr(item, "__ft__"):
        item = item.__ft__()
        if hasattr(item, "__html__"):
            return str(item.__html__())
    if isinstance(item, str):
        return item
    raise TypeError(
        f"an event returned {type(item).__name__}; return None, elements, or a Response"
    )


_SIGNALS_EVENT: Final = f"event: {EventType.PATCH_SIGNALS}\n"

_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# Characters JSON may leave raw but an event stream may not: line separators
# (the SSE writers split data lines on them) and lone surrogates (not UTF-8).
_ESCAPES: Final = {
    code: f"\\u{code:04x}" for code in (0x85, 0x2028, 0x2029, *range(0xD800, 0xE000))
}


# The C encoder behind ``_ENCODER``, made once: ``JSONEncoder.encode`` makes a
# new one on every call, which costs more than encoding a small patch.  No
# cycle markers: patches are JSON dumps already (a cycle would still end, in
# RecursionError).  The factory is not in typeshed, and is None where the C
# accelerator is missing.
_C_MAKE_ENCODER: Final[Any] = json.encoder.c_make_encoder  # type: ignore[attr-defined]
_ENCODE_PARTS: Final[Any] = (
    None
    if _C_MAKE_ENCODER is None
    else _C_MAKE_ENCODER(
        None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
)


def dump_json(value: Any) -> str:
    """Compact JSON, as both clients parse it, safe to put on one SSE data line."""
    text = _ENCODER.encode(value) if _ENCODE_PARTS is None else "".join(_ENCODE_PARTS(value, 0))
    return text if text.isascii() else text.translate(_ESCAPES)


def event_id_template(events: Iterable[str]) -> list[bytes]:
    """SSE events written without an id, cut where each one's ``id:`` line goes
    (right after its ``event:`` line, where both dialects write it):
    ``b"\\nid: <id>".join(pieces)`` is the same events written with that id,
    and ``[b""]`` stands for no event at all.
    """
    pieces = [b""]
    for text in events:
        head, _, rest = text.partition("\n")
        pieces[-1] += head.encode()
        pieces.append(b"\n" + rest.encode())
    return pieces


class Dialect:
    """One Datastar dialect: how events are written and actions spelled."""

    name: str

    def patch_signals(self, signals: dict[str, Any], event_id: str | None = None) -> str:
        raise NotImplementedError

    def patch_elements(
        self,
        html: str,
        selector: str | None = None,
        mode: PatchMode = "outer",
        event_id: str | None = None,
    ) -> str:
        raise NotImplementedError

    def format_elements(self, patches: Iterable[ElementPatch], event_id: str | None = None) -> str:
        return "".join(
            self.patch_elements(p.html, p.selector, p.mode, event_id) for p in patches
        )

    def redirect(self, url: str) -> str:
        """An event making the page go to ``url`` once it has applied what came before."""
        raise NotImplementedError

    def on_attribute(self, event: str) -> str:
        """Attribute name that runs an expression on ``event``.

        ``event`` is a DOM event (``click``, ``input``), or one of Datastar's
        own: ``load`` (once, when the element appears), ``interval`` (every
        second; ``interval__duration.500ms``), ``intersect``.  Modifiers
        follow ``__`` as in Datastar (``click__debounce.300ms``).
        """
        raise NotImplementedError

    def init_attribute(self) -> str:
        """Attribute name that runs an expression when the element loads."""
        raise NotImplementedError

    def attr_attribute(self, name: str) -> str:
        """Attribute name that keeps the element's attribute ``name`` equal to an expression."""
        raise NotImplementedError

    def stream_action(self, url: str) -> str:
        """An ``@get(...)`` expression holding a live stream open, reconnecting when it drops."""
        raise NotImplementedError

    def fetch_action(
        self,
        method: str,
        url: str,
        own_namespace: str | None = None,
        bindable: Iterable[str] = (),
        form: bool = False,
    ) -> str:
        """An ``@post(...)`` expression that is sent once and never re-sent.

        ``own_namespace`` names signals the server never reads (the state's
        own copy on the page) but for its ``bindable`` fields and the errors
        the page shows for it; clients that can filter leave the rest out.
        ``form`` sends the fields of the closest ``<form>`` instead of signals.
        """
        raise NotImplementedError


class DatastarV1(Dialect):
    name = "v1"

    def patch_signals(self, signals: dict[str, Any], event_id: str | None = None) -> str:
        # As datastar-py writes it, in one data line (``dump_json`` leaves no line
        # separator unescaped) and without its general-purpose event builder:
        # every event answers with this, and the builder costs a third of it.
        head = _SIGNALS_EVENT if not event_id else f"{_SIGNALS_EVENT}id: {event_id}\n"
        return f"{head}data: {SIGNALS_DATALINE_LITERAL} {dump_json(signals)}\n\n"

    def patch_elements(
        self,
        html: str,
        selector: str | None = None,
        mode: PatchMode = "outer",
        event_id: str | None = None,
    ) -> str:
        # datastar-py's patch_elements writes the same lines, but first checks
        # its argument against a runtime Protocol, which costs Python 3.11 more
        # (~20 µs) than the rest of a stream append.
        if mode == "remove" and not selector:
            raise ValueError("mode='remove' needs a selector")
        lines = []
        if mode != "outer":
            lines.append(f"{MODE_DATALINE_LITERAL} {mode}")
        if selector:
            lines.append(f"{SELECTOR_DATALINE_LITERAL} {selector}")
        if html and mode != "remove":
            lines.extend(f"{ELEMENTS_DATALINE_LITERAL} {line}" for line in html.splitlines())
        return _sse(EventType.PATCH_ELEMENTS, lines, event_id)

    def redirect(self, url: str) -> str:
        # datastar-py's own redirect puts the URL in quotes unescaped.
        script = f'<script data-effect="el.remove()">{_navigation(url)}</script>'
        return self.patch_elements(script, selector="body", mode="append")

    def on_attribute(self, event: str) -> str:
        # Datastar 1.0 spells its own triggers as plugins of their own:
        # ``data-on:interval`` would wait for a DOM event that never comes.
        name, modifiers = _split_modifiers(event)
        special = _V1_TRIGGERS.get(name)
        if special is not None:
            return special + modifiers
        return f"data-on:{event}"

    def init_attribute(self) -> str:
        return "data-init"

    def attr_attribute(self, name: str) -> str:
        return f"data-attr:{name}"

    def stream_action(self, url: str) -> str:
        # "always" reconnects after the server ends the stream (a restart);
        # the stream needs no signals, so none are sent in the URL.
        expression: str = action_generator.get(
            url, retry="always", retry_max_count=1000, include_signals="^$"
        )
        return expression

    def fetch_action(
        self,
        method: str,
        url: str,
        own_namespace: str | None = None,
        bindable: Iterable[str] = (),
        form: bool = False,
    ) -> str:
        build = getattr(action_generator, method)
        expression: str
        if form:  # the closest form's fields (multipart with its enctype), no signals
            expression = build(url, retry="never", content_type="form")
            return expression
        # The client's default filter drops signals starting with "_"; an
        # explicit filter replaces it, so it is repeated here.
        exclude = r"(^|\.)_"
        if own_namespace:
            kept = "|".join(sorted(bindable))
            if kept:  # every path of the namespace but its bindable fields
                exclude += rf"|^{own_namespace}(\.(?!(?:{kept})$)|$)"
            else:
                exclude += rf"|^{own_namespace}(\.|$)"
            # ...and the errors it shows, so that an accepted event clears them.
            exclude = rf"^(?!{own_namespace}\.{ERRORS_SIGNAL}$|{PAGE_SIGNAL}$)(?:{exclude})"
        expression = build(url, retry="never", exclude_signals=exclude)
        return expression


_V1_TRIGGERS: Final = {
    "load": "data-init",
    "init": "data-init",
    "interval": "data-on-interval",
    "intersect": "data-on-intersect",
    "signal-patch": "data-on-signal-patch",
}


def _navigation(url: str) -> str:
    """JavaScript going to ``url``: a JSON string, ``<`` escaped so that no URL can
    close the script element it stands in."""
    target = dump_json(url).replace("<", "\\u003c")
    # After the current patches are applied, as datastar-py's redirect does.
    return f"setTimeout(() => window.location.assign({target}))"


def _split_modifiers(event: str) -> tuple[str, str]:
    name, separator, modifiers = event.partition("__")
    return name, separator + modifiers


_BETA_MODES: Final = {
    "outer": "morph",
    "replace": "outer",
    "inner": "inner",
    "prepend": "prepend",
    "append": "append",
    "before": "before",
    "after": "after",
}


class DatastarBeta(Dialect):
    name = "beta"

    def patch_signals(self, signals: dict[str, Any], event_id: str | None = None) -> str:
        lines = [f"signals {line}" for line in dump_json(signals).splitlines()]
        return _sse("datastar-merge-signals", lines, event_id)

    def patch_elements(
        self,
        html: str,
        selector: str | None = None,
        mode: PatchMode = "outer",
        event_id: str | None = None,
    ) -> str:
        if mode == "remove":
            if not selector:
                raise ValueError("mode='remove' needs a selector")
            return _sse("datastar-remove-fragments", [f"selector {selector}"], event_id)
        lines = []
        if selector:
            lines.append(f"selector {selector}")
        beta_mode = _BETA_MODES[mode]
        if beta_mode != "morph":
            lines.append(f"mergeMode {beta_mode}")
        lines.extend(f"fragments {line}" for line in html.splitlines())
        return _sse("datastar-merge-fragments", lines, event_id)

    def redirect(self, url: str) -> str:
        return _sse("datastar-execute-script", [f"script {_navigation(url)}"], None)

    def on_attribute(self, event: str) -> str:
        name, modifiers = _split_modifiers(event)
        if name == "init":  # the 1.0 name of what beta calls load
            return "data-on-load" + modifiers
        return f"data-on-{event}"

    def init_attribute(self) -> str:
        return "data-on-load"

    def attr_attribute(self, name: str) -> str:
        return f"data-attr-{name}"

    def stream_action(self, url: str) -> str:
        # beta.11 reconnects after errors only, with backoff.
        return f"@get({dump_json(url)}, {{retryMaxCount: 1000}})"

    def fetch_action(
        self,
        method: str,
        url: str,
        own_namespace: str | None = None,
        bindable: Iterable[str] = (),
        form: bool = False,
    ) -> str:
        if form:  # beta sends a form as multipart whatever its enctype
            return f"@{method}({dump_json(url)}, {{contentType: 'form', retryMaxCount: 0}})"
        # beta.11 cannot filter signals (the server reads only what it may);
        # retryMaxCount 0 stops silent re-sends.  Local signals ("_") go too
        # when the instance's errors may be among them.
        local = ", includeLocal: true" if own_namespace else ""
        return f"@{method}({dump_json(url)}, {{retryMaxCount: 0{local}}})"


def _sse(event_type: str, data_lines: list[str], event_id: str | None) -> str:
    head = [f"event: {event_type}"]
    if event_id:
        head.append(f"id: {event_id}")
    return "\n".join(head + [f"data: {line}" for line in data_lines]) + "\n\n"


PROTOCOLS: Final[dict[str, Dialect]] = {"v1": DatastarV1(), "beta": DatastarBeta()}


def get_protocol(name: str | Dialect) -> Dialect:
    if isinstance(name, Dialect):
        return name
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown Datastar protocol {name!r}; use 'v1' or 'beta'") from None
