"""Changing instances outside an event: background tasks, webhooks, timers.

``async with mutate(app, Poll) as poll: poll.votes["tea"] += 1`` takes the
instance's lock, tracks the change, rolls it back if the block raises, and
otherwise saves it and pushes it to every live page, exactly as an event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from starlette.requests import HTTPConnection

from faststate.broker import Change, ElementPatch
from faststate.context import Runtime, context_of
from faststate.instances import (
    address_for,
    authorize,
    binding_for,
    commit,
    load_or_create,
    registration_for,
)
from faststate.protocol import PatchMode, dump_json
from faststate.registry import Registration, registry_of
from faststate.scopes import InstanceAddress, address_from_id
from faststate.state import (
    ReactiveState,
    begin_tracking,
    bind,
    binding_of,
    diff_tracked,
    end_tracking,
    rollback,
    stored_version,
)

S = TypeVar("S", bound=ReactiveState)


@asynccontextmanager
async def mutate(target: Any, cls: type[S], *, key: str | None = None) -> AsyncIterator[S]:
    """Change the instance of ``cls`` that ``target`` names, and push the change.

    ``target`` is a request (the instance is resolved as ``use_state`` does,
    ``key`` being the component or record id) or the app (``key`` as in
    ``faststate.scopes.address_from_id``: none for GLOBAL, the record id for
    RECORD, the user id for USER, ...).
    """
    runtime, registration, address, root_path = await _locate(target, cls, key)
    async with runtime.store.lock(address.key):
        state = await load_or_create(runtime, registration, address.key, cls)
        bind(state, binding_for(runtime, registration, address, root_path))
        tracker = begin_tracking(state)
        try:
            yield state
        except BaseException:
            end_tracking(state)
            rollback(state, tracker)
            raise
        end_tracking(state)
        patch = diff_tracked(state, tracker)
        try:
            dump_json(patch)  # what pages could not be sent is not kept
            await commit(runtime, registration, address.key, state, patch)
        except BaseException:
            rollback(state, tracker)
            raise


async def push(
    target: Any,
    state: ReactiveState,
    *elements: Any,
    selector: str | None = None,
    mode: PatchMode = "outer",
) -> None:
    """Send elements to every live page showing ``state`` (e.g. a re-rendered list).

    ``state`` must have been resolved (``use_state``, an event, ``mutate``).
    """
    from faststate.routing import to_html

    runtime = _runtime(target)
    key = binding_of(state).key
    if key.startswith("unbound:"):
        raise ValueError("push() needs a resolved instance (from use_state, an event or mutate)")
    patches = tuple(ElementPatch(to_html(e), selector, mode) for e in elements)
    # Same version as the state's last save: pages that have it show the
    # elements; pages that missed it resync from the store first.
    await runtime.broker.publish(Change(key, stored_version(state), {}, patches, replay=True))


async def _locate(
    target: Any, cls: type[ReactiveState], key: str | None
) -> tuple[Runtime, Registration, InstanceAddress, str]:
    if isinstance(target, HTTPConnection):
        context = context_of(target)
        registration = registration_for(context, target, cls)
        address = address_for(target, context, registration, key)
        await authorize(target, registration, address.key)
        return context.runtime, registration, address, target.scope.get("root_path", "")
    runtime = _runtime(target)
    registry = registry_of(target, create=False)
    assert registry is not None  # _runtime checked it
    registration = registry.get(cls)
    return (
        runtime,
        registration,
        address_from_id(registration.name, registration.config.scope, key),
        "",
    )


def _runtime(target: Any) -> Runtime:
    if isinstance(target, HTTPConnection):
        return context_of(target).runtime
    registry = registry_of(target, create=False)
    runtime = registry.runtime if registry is not None else None
    if runtime is None:
        raise RuntimeError(
            "mutate(app, ...) needs an app that has started (its lifespan or a first "
            "request ran through FastStateMiddleware)"
        )
    return runtime
