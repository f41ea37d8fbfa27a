"""Scopes: which instance of a state class a request reaches.

A key names one instance in a store (``session:CounterState:<sid>``); the
namespace names its signals on the page (``CounterState`` or
``TodoList_42``).  Keys come from the server (cookie, authenticated user);
ids from the client only select among instances the caller may reach.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

    from faststate.context import RequestContext

Authorize = Callable[["HTTPConnection", str], bool | Awaitable[bool]]

MAX_ID_LENGTH = 128
_UNSAFE_NAMESPACE_CHARS = re.compile(r"[^A-Za-z0-9_]")


class StateScope(StrEnum):
    """Who shares one instance of a state class."""

    GLOBAL = "global"
    SESSION = "session"
    USER = "user"
    COMPONENT = "component"
    RECORD = "record"


@dataclass(frozen=True)
class StateConfig:
    """How a registered state class is scoped, kept and guarded."""

    scope: StateScope = StateScope.SESSION
    ttl: float | None = None
    auto_persist: bool = False
    authorize: Authorize | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scope", StateScope(self.scope))
        if self.ttl is not None and self.ttl <= 0:
            raise ValueError("ttl must be a positive number of seconds or None")


@dataclass(frozen=True)
class InstanceAddress:
    """Where an instance lives (``key``) and how the page names it."""

    key: str
    namespace: str
    client_id: str | None  # component or record id carried by event URLs


def resolve_address(
    request: HTTPConnection,
    context: RequestContext,
    cls_name: str,
    scope: StateScope,
    explicit_id: str | None = None,
) -> InstanceAddress:
    """Compute the instance address for ``cls_name`` under ``scope``.

    Raises ``HTTPException`` 400 (missing or malformed id) or 401 (no user).
    """
    if scope is StateScope.GLOBAL:
        return InstanceAddress(f"global:{cls_name}", cls_name, None)
    if scope is StateScope.SESSION:
        return InstanceAddress(f"session:{cls_name}:{context.session_id}", cls_name, None)
    if scope is StateScope.USER:
        uid = context.user_id(request)
        if uid is None:
            raise HTTPException(401, f"{cls_name} is per user: log in first")
        return InstanceAddress(f"user:{cls_name}:{uid}", cls_name, None)
    if scope is StateScope.COMPONENT:
        cid = _client_id(explicit_id, request, ("component_id",), cls_name, "component_id")
        key = f"component:{cls_name}:{context.session_id}:{cid}"
        return InstanceAddress(key, _namespace(cls_name, cid), cid)
    rid = _client_id(explicit_id, request, ("record_id", "id"), cls_name, "record_id")
    return InstanceAddress(f"record:{cls_name}:{rid}", _namespace(cls_name, rid), rid)


def address_from_id(cls_name: str, scope: StateScope, key: str | None) -> InstanceAddress:
    """The address of an instance named without a request (background work).

    ``key`` is what the scope is keyed by: nothing for GLOBAL, the session id
    for SESSION, the user id for USER, ``"<session id>:<component id>"`` for
    COMPONENT, the record id for RECORD.
    """
    if scope is StateScope.GLOBAL:
        return InstanceAddress(f"global:{cls_name}", cls_name, None)
    if not key:
        raise ValueError(f"{cls_name} is {scope.value}-scoped: mutate() needs key=")
    if scope is StateScope.SESSION:
        return InstanceAddress(f"session:{cls_name}:{key}", cls_name, None)
    if scope is StateScope.USER:
        return InstanceAddress(f"user:{cls_name}:{key}", cls_name, None)
    if scope is StateScope.COMPONENT:
        session, _, component = key.partition(":")
        if not session or not component:
            raise ValueError("a COMPONENT key is '<session id>:<component id>'")
        key_path = f"component:{cls_name}:{session}:{component}"
        return InstanceAddress(key_path, _namespace(cls_name, component), component)
    return InstanceAddress(f"record:{cls_name}:{key}", _namespace(cls_name, key), key)


def _client_id(
    explicit: str | None,
    request: HTTPConnection,
    names: tuple[str, ...],
    cls_name: str,
    label: str,
) -> str:
    value: Any = explicit
    if value is None:
        value = _lookup(request, names)
    if value is None:
        raise HTTPException(400, f"{cls_name} needs a {label} (key=, path or query)")
    text = str(value)
    if not text or len(text) > MAX_ID_LENGTH or not text.isprintable():
        raise HTTPException(400, f"invalid {label} for {cls_name}")
    return text


def _lookup(request: HTTPConnection, names: tuple[str, ...]) -> Any:
    path_params = request.scope.get("path_params") or {}
    for name in names:
        if name in path_params:
            return path_params[name]
    query = request.query_params
    for name in names:
        values = query.getlist(name)
        if len(values) > 1:
            raise HTTPException(400, f"{name} given more than once")
        if values:
            return values[0]
    return None


def _namespace(cls_name: str, client_id: str) -> str:
    return f"{cls_name}_{_UNSAFE_NAMESPACE_CHARS.sub('_', client_id)}"
