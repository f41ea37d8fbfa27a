"""Which instance a request reaches: class → registration → scope id → address → authorize.

``use_state`` and ``ause_state`` are the public doors; event endpoints, live
streams and ``mutate`` resolve through the same functions.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any, TypeVar, cast

import anyio.from_thread
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from faststate._address import Address
from faststate._context import RequestContext, context_of
from faststate._registry import Registration, Registry, registry_of
from faststate._runtime import Runtime
from faststate._scopes import StateScope, valid_id
from faststate._state import ReactiveState, stored_version
from faststate._stores.base import StoreUnavailable
from faststate._transaction import load, load_sync, running

S = TypeVar("S", bound=ReactiveState)

#: Where a keyed scope's id may come from, after ``key=``: path params, then the query.
_ID_SOURCES = {
    StateScope.COMPONENT: ("component_id",),
    StateScope.RECORD: ("record_id", "id"),
}


def _registries(context: RequestContext, connection: HTTPConnection) -> Iterator[Registry]:
    """The registry of the app the middleware serves, then of the app routing reached."""
    for app in (context.app, connection.scope.get("app")):
        registry = registry_of(app, create=False) if app is not None else None
        if registry is not None:
            yield registry


def registration_named(
    context: RequestContext, connection: HTTPConnection, name: str
) -> Registration | None:
    for registry in _registries(context, connection):
        if name in registry.by_name:
            return registry.by_name[name]
    return None


def registration_for(
    context: RequestContext, connection: HTTPConnection, cls: type
) -> Registration:
    for registry in _registries(context, connection):
        if cls in registry.by_class:
            return registry.by_class[cls]
    raise LookupError(
        f"{cls.__name__} is not registered: call register_state(app, {cls.__name__}, ...)"
    )


def address_for(
    connection: HTTPConnection,
    context: RequestContext,
    registration: Registration,
    key: str | None = None,
) -> Address:
    """The address of the instance ``connection`` reaches.

    Raises ``HTTPException`` 400 (missing or malformed id) or 401 (no user).
    """
    scope = registration.config.scope
    name = registration.name
    session: str | None = None
    if scope is StateScope.GLOBAL:
        scope_id = ""
    elif scope is StateScope.SESSION:
        scope_id = session = context.session_id
    elif scope is StateScope.USER:
        uid = context.user_id(connection)
        if uid is None:
            raise HTTPException(401, f"{name} is per user: log in first")
        scope_id = uid
    else:
        label = "component_id" if scope is StateScope.COMPONENT else "record_id"
        value: Any = key if key is not None else _lookup(connection, _ID_SOURCES[scope])
        if value is None:
            raise HTTPException(400, f"{name} needs a {label} (key=, path or query)")
        checked = valid_id(value)
        if checked is None:
            raise HTTPException(400, f"invalid {label} for {name}")
        scope_id = checked
        if scope is StateScope.COMPONENT:
            session = context.session_id
    return Address.of(
        registration,
        scope_id,
        session,
        context.runtime.protocol,
        connection.scope.get("root_path", ""),
    )


def address_from_key(runtime: Runtime, registration: Registration, key: str | None) -> Address:
    """The address of an instance named without a request (background work).

    ``key`` is what the scope is keyed by: nothing for GLOBAL, the session id
    for SESSION, the user id for USER, ``"<session id>:<component id>"`` for
    COMPONENT, the record id for RECORD.
    """
    scope = registration.config.scope
    session: str | None = None
    if scope is StateScope.GLOBAL:
        key = ""
    elif not key:
        raise ValueError(f"{registration.name} is {scope.value}-scoped: mutate() needs key=")
    elif scope is StateScope.SESSION:
        session = key
    elif scope is StateScope.COMPONENT:
        session, _, key = key.partition(":")
        if not session or not key:
            raise ValueError("a COMPONENT key is '<session id>:<component id>'")
    return Address.of(registration, key, session, runtime.protocol)


def _lookup(connection: HTTPConnection, names: tuple[str, ...]) -> Any:
    path_params = connection.scope.get("path_params") or {}
    for name in names:
        if name in path_params:
            return path_params[name]
    query = connection.query_params
    for name in names:
        values = query.getlist(name)
        if len(values) > 1:
            raise HTTPException(400, f"{name} given more than once")
        if values:
            return values[0]
    return None


async def authorize(connection: HTTPConnection, address: Address) -> None:
    """403 unless the registration's ``authorize`` allows this instance."""
    registration = address.registration
    check = registration.config.authorize
    if check is None:
        return
    allowed = check(connection, address.scope_id)
    if inspect.isawaitable(allowed):
        allowed = await allowed
    if not allowed:
        raise HTTPException(403, f"not allowed to use {registration.name}")


def _authorize_sync(connection: HTTPConnection, address: Address) -> None:
    registration = address.registration
    check = registration.config.authorize
    if check is None:
        return
    allowed: Any = check(connection, address.scope_id)
    if inspect.isawaitable(allowed):
        allowed = _await_from_sync(allowed, "authorize")
    if not allowed:
        raise HTTPException(403, f"not allowed to use {registration.name}")


def _await_from_sync(awaitable: Any, what: str) -> Any:
    async def wait() -> Any:
        return await awaitable

    try:
        return anyio.from_thread.run(wait)
    except RuntimeError:
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        raise RuntimeError(
            f"{what} is async and use_state was called on the event loop: "
            "use `await ause_state(...)` in async handlers"
        ) from None


def use_state(request: HTTPConnection, cls: type[S], *, key: str | None = None) -> S:
    """The instance of ``cls`` that ``request`` reaches, created on first use.

    ``key`` is the component or record id for those scopes (else taken from
    ``component_id``, ``record_id`` or ``id`` in the path, then the query).
    Works in sync and async handlers; inside an event or ``mutate`` it
    returns the instance that event holds.  Outside them the instance is
    read-only (assigning a field raises an error naming ``mutate``).

    Args:
        request: The request (or WebSocket) being handled.
        cls: A state class registered on the app.
        key: The component id (COMPONENT) or record id (RECORD); ignored by
            the other scopes.

    Returns:
        The instance, loaded from the store (or persistence) or created.

    Raises:
        RuntimeError: ``FastStateMiddleware`` is not installed, or an async
            ``authorize`` was called from the event loop (use ``ause_state``
            there).
        LookupError: ``cls`` is not registered (``register_state``).
        starlette.exceptions.HTTPException: 400 (no record id), 401 (USER
            scope without a user), 403 (``authorize`` said no), 503 (store
            unavailable).
    """
    context = context_of(request)
    address = address_for(request, context, registration_for(context, request, cls), key)
    _authorize_sync(request, address)
    held = _held(context, address)
    if held is not None:
        return cast(S, held)
    try:
        state = load_sync(context.runtime, address)
    except StoreUnavailable as exc:
        raise HTTPException(503, "state store unavailable, try again") from exc
    _resolved(context, address, state)
    return cast(S, state)


async def ause_state(request: HTTPConnection, cls: type[S], *, key: str | None = None) -> S:
    """``use_state`` for async handlers: loads without blocking the event loop.

    Args:
        request: The request (or WebSocket) being handled.
        cls: A state class registered on the app.
        key: The component id (COMPONENT) or record id (RECORD).

    Returns:
        The instance, as ``use_state`` gives it.

    Raises:
        RuntimeError: ``FastStateMiddleware`` is not installed.
        LookupError: ``cls`` is not registered.
        starlette.exceptions.HTTPException: 400, 401, 403 or 503, as ``use_state``.
    """

    context = context_of(request)
    address = address_for(request, context, registration_for(context, request, cls), key)
    await authorize(request, address)
    held = _held(context, address)
    if held is not None:
        return cast(S, held)
    try:
        state = await load(context.runtime, address)
    except StoreUnavailable as exc:
        raise HTTPException(503, "state store unavailable, try again") from exc
    _resolved(context, address, state)
    return cast(S, state)


def _held(context: RequestContext, address: Address) -> ReactiveState | None:
    """The instance as the event running here holds it (tracked, and changeable there)."""
    tx = running()
    if tx is None or tx.runtime is not context.runtime:
        return None
    return tx.holding(address.key)


def _resolved(context: RequestContext, address: Address, state: ReactiveState) -> None:
    """Remember the instance for the page's live stream."""
    context.resolved[address.key] = (address, stored_version(state))
