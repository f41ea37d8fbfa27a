"""Finding, loading and saving the instance a request reaches.

``use_state`` and ``ause_state`` are the public doors; events, live streams
and ``mutate`` share the rest.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any, TypeVar

import anyio.from_thread
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from faststate.broker import Change, ElementPatch
from faststate.context import RequestContext, Resolved, Runtime, context_of
from faststate.registry import Registration, Registry, registry_of
from faststate.scopes import InstanceAddress, resolve_address
from faststate.state import Binding, ReactiveState, bind, current_binding, stored_version
from faststate.stores.base import StoreUnavailable
from faststate.stores.sql import SQLPersistence

S = TypeVar("S", bound=ReactiveState)


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
) -> InstanceAddress:
    return resolve_address(connection, context, registration.name, registration.config.scope, key)


def binding_for(
    runtime: Runtime,
    registration: Registration,
    address: InstanceAddress,
    root_path: str = "",
) -> Binding:
    client_param = None
    if address.client_id is not None:
        label = "component_id" if address.key.startswith("component:") else "record_id"
        client_param = (label, address.client_id)
    return Binding(
        key=address.key,
        namespace=address.namespace,
        protocol=runtime.protocol,
        url_prefix=root_path + registration.prefix,
        client_param=client_param,
    )


def ensure_bound(
    state: ReactiveState,
    runtime: Runtime,
    registration: Registration,
    address: InstanceAddress,
    root_path: str = "",
) -> None:
    """Bind ``state`` to its address, unless it already is (a kept instance usually is)."""
    current = current_binding(state)
    if (
        current is not None
        and current.key == address.key
        and current.url_prefix == root_path + registration.prefix
        and current.protocol is runtime.protocol
    ):
        return
    bind(state, binding_for(runtime, registration, address, root_path))


async def authorize(connection: HTTPConnection, registration: Registration, key: str) -> None:
    check = registration.config.authorize
    if check is None:
        return
    allowed = check(connection, key)
    if inspect.isawaitable(allowed):
        allowed = await allowed
    if not allowed:
        raise HTTPException(403, f"not allowed to use {registration.name}")


def _authorize_sync(connection: HTTPConnection, registration: Registration, key: str) -> None:
    check = registration.config.authorize
    if check is None:
        return
    allowed: Any = check(connection, key)
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
    """The instance of ``cls`` that ``request`` reaches, created on first use."""
    context = context_of(request)
    registration = registration_for(context, request, cls)
    address = address_for(request, context, registration, key)
    _authorize_sync(request, registration, address.key)
    runtime = context.runtime
    persistence = persistence_for(runtime, registration)
    try:
        state = runtime.store.load_sync(address.key, cls)
        if state is None:
            stored = persistence.load_sync(address.key, cls) if persistence else None
            state = runtime.store.add_sync(address.key, stored or cls(), registration.config.ttl)
    except StoreUnavailable as exc:
        raise HTTPException(503, "state store unavailable, try again") from exc
    return _bound(request, context, registration, address, state)


async def ause_state(request: HTTPConnection, cls: type[S], *, key: str | None = None) -> S:
    """``use_state`` for async handlers: loads without blocking the event loop."""
    context = context_of(request)
    registration = registration_for(context, request, cls)
    address = address_for(request, context, registration, key)
    await authorize(request, registration, address.key)
    try:
        state = await load_or_create(context.runtime, registration, address.key, cls)
    except StoreUnavailable as exc:
        raise HTTPException(503, "state store unavailable, try again") from exc
    return _bound(request, context, registration, address, state)


async def load_or_create(runtime: Runtime, registration: Registration, key: str, cls: type[S]) -> S:
    """The stored instance; else the durable copy; else a new one."""
    state = await runtime.store.load(key, cls)
    if state is None:
        persistence = persistence_for(runtime, registration)
        stored = await persistence.load(key, cls) if persistence else None
        state = await runtime.store.add(key, stored or cls(), registration.config.ttl)
    return state


async def commit(
    runtime: Runtime,
    registration: Registration,
    key: str,
    state: ReactiveState,
    patch: dict[str, Any],
    elements: tuple[ElementPatch, ...] = (),
) -> None:
    """After a change: save to the store (version-checked), then the database, then tell
    every live page.  Call it holding the instance's lock, so versions go out in order."""
    ttl = registration.config.ttl
    await runtime.store.save(key, state, ttl)
    persistence = persistence_for(runtime, registration)
    if persistence is not None:
        await persistence.save(key, state, ttl)
    if (patch or elements) and runtime.broker.reaches(key):
        await runtime.broker.publish(Change(key, stored_version(state), patch, elements))


def persistence_for(runtime: Runtime, registration: Registration) -> SQLPersistence | None:
    if not registration.config.auto_persist:
        return None
    if runtime.persistence is None:
        raise RuntimeError(
            f"{registration.name} has auto_persist=True but the middleware has no persistence: "
            "add FastStateMiddleware(persistence=SQLPersistence(url))"
        )
    return runtime.persistence


def _bound(
    connection: HTTPConnection,
    context: RequestContext,
    registration: Registration,
    address: InstanceAddress,
    state: S,
) -> S:
    ensure_bound(
        state, context.runtime, registration, address, connection.scope.get("root_path", "")
    )
    context.resolved[address.key] = Resolved(
        registration.name, address.namespace, stored_version(state)
    )
    return state
