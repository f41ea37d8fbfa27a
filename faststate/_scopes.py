"""Scopes, and the one codec of instance keys.

A key names one instance in a store (``session:CounterState:<sid>``); the
namespace names its signals on the page (``CounterState`` or
``TodoList_42``).  Keys are built and parsed here and nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

Authorize = Callable[["HTTPConnection", str], bool | Awaitable[bool]]
"""``authorize(request, key) -> bool`` (or an awaitable of it), given at registration.

``key`` is the id the scope is keyed by: the record id (RECORD), the
component id (COMPONENT), the user id (USER), the session id (SESSION),
``""`` (GLOBAL) — never the internal store key.
"""

ViewerLabel = Callable[["HTTPConnection"], "str | None"]
"""``label(request) -> str | None``: what other pages show for this viewer (None: ``"guest"``)."""

MAX_ID_LENGTH: Final = 128
_ESCAPED_NAMESPACE_CHARS: Final = re.compile(r"[^A-Za-z0-9]")


class StateScope(StrEnum):
    """Who shares one instance of a state class.

    A ``str`` enum: ``scope=`` accepts the member or its value.

    Attributes:
        GLOBAL: One instance for everyone (key ``global:Cls``).
        SESSION: One per browser session, from the signed session cookie.
        USER: One per authenticated user: ``scope["auth"]``, else an
            authenticated ``request.user``, else the middleware's
            ``user_key(request)``; none → 401.
        COMPONENT: Several per session, told apart by ``key=`` or a
            ``component_id`` path or query parameter; bound to the session.
        RECORD: One per record id: ``key=``, else ``record_id`` or ``id`` in
            the path, then the query; none → 400.
    """

    GLOBAL = "global"
    SESSION = "session"
    USER = "user"
    COMPONENT = "component"
    RECORD = "record"


#: Scopes whose instances belong to one browser session.
SESSION_BOUND: Final = frozenset({StateScope.SESSION, StateScope.COMPONENT})
#: Scopes whose id the page carries in event URLs, and under which query name.
CLIENT_PARAMS: Final = {StateScope.COMPONENT: "component_id", StateScope.RECORD: "record_id"}


@dataclass(frozen=True)
class StateConfig:
    """How a registered state class is scoped, kept and guarded.

    ``register_state`` builds it from its keyword arguments.

    Attributes:
        scope: Who shares one instance (a value is converted to ``StateScope``).
        ttl: Seconds of idleness after which an instance expires; ``None``: none.
        auto_persist: Write every change through to the middleware's persistence.
        authorize: ``authorize(request, key) -> bool`` (sync or async) or ``None``.
        presence: ``True``, or a ``label(request) -> str | None`` callable, to
            track who has a live page of an instance open.
    """


    scope: StateScope = StateScope.SESSION
    ttl: float | None = None
    auto_persist: bool = False
    authorize: Authorize | None = None
    #: Track who has a live page of an instance open: ``True`` labels viewers
    #: by user id, a ``ViewerLabel`` callable as it says.
    presence: bool | ViewerLabel = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "scope", StateScope(self.scope))
        if self.ttl is not None and self.ttl <= 0:
            raise ValueError("ttl must be a positive number of seconds or None")


@dataclass(frozen=True, slots=True)
class KeyParts:
    """What an instance key says: scope, class, owning session, scope id."""

    scope: StateScope
    cls_name: str
    session: str | None
    scope_id: str


def instance_key(scope: StateScope, cls_name: str, scope_id: str, session: str | None) -> str:
    """``global:Cls``, ``session:Cls:<sid>``, ``user:Cls:<uid>``,
    ``component:Cls:<sid>:<cid>``, ``record:Cls:<rid>``."""
    if scope is StateScope.GLOBAL:
        return f"global:{cls_name}"
    if scope is StateScope.COMPONENT:
        return f"component:{cls_name}:{session}:{scope_id}"
    # A StrEnum formats as its value; reading ``.value`` costs as much again as the key.
    return f"{scope}:{cls_name}:{scope_id}"


def parse_key(key: str) -> KeyParts | None:
    """The parts of a key ``instance_key`` built, or None for anything else."""
    scope_name, _, rest = key.partition(":")
    try:
        scope = StateScope(scope_name)
    except ValueError:
        return None
    cls_name, sep, scope_id = rest.partition(":")
    if not cls_name:
        return None
    if scope is StateScope.GLOBAL:
        return None if sep else KeyParts(scope, cls_name, None, "")
    session = None
    if scope is StateScope.COMPONENT:
        session, _, scope_id = scope_id.partition(":")
        if not session:
            return None
    elif scope is StateScope.SESSION:
        session = scope_id
    if not scope_id:
        return None
    return KeyParts(scope, cls_name, session, scope_id)


def namespace(cls_name: str, scope: StateScope, scope_id: str) -> str:
    """The page namespace of an instance's signals: ``TodoList_42``.

    Signal names hold only letters, digits and ``_``, so the id is escaped,
    injectively: ``_`` becomes ``__`` and any other character ``_<hex>_``
    (``a-b`` → ``a_2d_b``, ``a_b`` → ``a__b``), so two ids never share signals.
    """
    if scope not in CLIENT_PARAMS:
        return cls_name
    if scope_id.isascii() and scope_id.isalnum():
        return f"{cls_name}_{scope_id}"
    return f"{cls_name}_{_ESCAPED_NAMESPACE_CHARS.sub(_escape, scope_id)}"


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return "__" if char == "_" else f"_{ord(char):x}_"


def valid_id(value: object) -> str | None:
    """``value`` as a scope id, or None when it cannot be one."""
    text = str(value)
    if not text or len(text) > MAX_ID_LENGTH or not text.isprintable():
        return None
    return text
