"""Finding the instance a request reaches: ``use_state`` and its async twin."""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

import anyio.from_thread
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from faststate.context import RequestContext, context_of
from faststate.registry import Registration, registry_of
from faststate.scopes import InstanceAddress, resolve_address
from faststate.state import Binding, ReactiveState, bind
from faststate.stores.base import StoreUnavailable
from faststate.stores.sql import SQLPersistence

S = TypeVar("S", bound=ReactiveState)


def registration_for(
    context: RequestContext, connection: HTTPConnection, cls: type
) -> Registration:
    for app in (context.app, connection.scope.get("app")):
        registry = registry_of(app, create=False) if app is not None else None
        if registry is not None and cls in registry.by_class:
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
    return resolve_address(
        connection,
        context,
        registration.name,
        registration.config.scope,
        key,
    )


def binding_for(
    context: RequestContext, registration: Registration, address: InstanceAddress
) -> Binding:
    client_param = None
    if address.client_id is not None:
        label = "component_id" if address.key.startswith("component:") else "record_id"
        client_param = (label, address.client_id)
    return Binding(
        key=address.key,
        namespace=address.namespace,
        protocol=context.runtime.protocol,
        url_prefix=registration.prefix,
        client_param=client_param,
    )


async def authorize(
    connection: HTTPConnection, registration: Registration, address: InstanceAddress
) -> None:
    check = registration.config.authorize
    if check is None:
        return
    allowed = check(connection, address.key)
    if inspect.isawaitable(allowed):
        allowed = await allowed
    if not allowed:
        raise HTTPException(403, f"not allowed to use {registration.name}")


def _authorize_sync(
    connection: HTTPConnection, registration: Registration, address: InstanceAddress
) -> None:
    check = registration.config.authorize
    if check is None:
        return
    allowed: Any = check(connection, address.key)
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
    _authorize_sync(request, registration, address)
    store = context.runtime.store
    persistence = persistence_for(context, registration)
    try:
        state = store.load_sync(address.key, cls)
        if state is None:
            stored = persistence.load_sync(address.key, cls) if persistence else None
            state = store.add_sync(address.key, stored or cls(), registration.config.ttl)
    except StoreUnavailable as exc:
        raise HTTPException(503, "state store unavailable, try again") from exc
    return _bound(context, registration, address, state)


async def ause_state(request: HTTPConnection, cls: type[S], *, key: str | None = None) -> S:
    """``use_state`` for async handlers: loads without blocking the event loop."""
    context = context_of(request)
    registration = registration_for(context, request, cls)
    address = address_for(request, context, registration, key)
    await authorize(request, registration, address)
    try:
        state = await load_or_create(context, registration, address, cls)
    except StoreUnavailable as exc:
        raise HTTPException(503, "state store unavailable, try again") from exc
    return _bound(context, registration, address, state)


async def load_or_create(
    context: RequestContext, registration: Registration, address: InstanceAddress, cls: type[S]
) -> S:
    """The stored instance; else the durable copy; else a new one."""
    store = context.runtime.store
    state = await store.load(address.key, cls)
    if state is None:
        persistence = persistence_for(context, registration)
        stored = await persistence.load(address.key, cls) if persistence else None
        state = await store.add(address.key, stored or cls(), registration.config.ttl)
    return state


async def save(
    context: RequestContext,
    registration: Registration,
    address: InstanceAddress,
    state: ReactiveState,
) -> None:
    """Write an instance after an event: the store (version-checked), then the database."""
    ttl = registration.config.ttl
    await context.runtime.store.save(address.key, state, ttl)
    persistence = persistence_for(context, registration)
    if persistence is not None:
        await persistence.save(address.key, state, ttl)


def persistence_for(context: RequestContext, registration: Registration) -> SQLPersistence | None:
    if not registration.config.auto_persist:
        return None
    persistence = context.runtime.persistence
    if persistence is None:
        raise RuntimeError(
            f"{registration.name} has auto_persist=True but the middleware has no persistence: "
            "add FastStateMiddleware(persistence=SQLPersistence(url))"
        )
    return persistence


def _bound(
    context: RequestContext, registration: Registration, address: InstanceAddress, state: S
) -> S:
    bind(state, binding_for(context, registration, address))
    context.resolved[address.key] = registration.cls
    return state
