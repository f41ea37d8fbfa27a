"""Changing instances outside an event: background tasks, webhooks, timers.

``async with mutate(app, Poll) as poll: poll.votes["tea"] += 1`` takes the
instance's lock, tracks the change, rolls it back if the block raises, and
otherwise saves it and pushes it to every live page, exactly as an event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

from starlette.requests import HTTPConnection

from faststate._address import Address
from faststate._context import context_of
from faststate._live.broker import Change
from faststate._protocol import ElementPatch, PatchMode, dump_json, to_html
from faststate._registry import registry_of
from faststate._resolve import address_for, address_from_key, authorize, registration_for
from faststate._runtime import Runtime
from faststate._state import ReactiveState, placement_of, stored_version
from faststate._transaction import Transaction, running

S = TypeVar("S", bound=ReactiveState)


@asynccontextmanager
async def mutate(target: Any, cls: type[S], *, key: str | None = None) -> AsyncIterator[S]:
    """Change the instance of ``cls`` that ``target`` names, and push the change.

    ``target`` is a request (the instance is resolved as ``use_state`` does,
    ``key`` being the component or record id) or the app (``key`` is what
    the scope is keyed by: none for GLOBAL, the session id for SESSION, the
    user id for USER, ``"<session id>:<component id>"`` for COMPONENT, the
    record id for RECORD).

    An async context manager: the instance is locked, loaded and tracked on
    entry; on a clean exit its changes are saved and pushed to live pages,
    on an exception rolled back (nothing saved).  Inside an event (or
    another ``mutate``) it joins that transaction instead:

        async with mutate(app, Poll) as poll:
            poll.votes["tea"] += 1

    Args:
        target: A request (or WebSocket), or the app once it has started.
        cls: A registered state class.
        key: With a request, the component or record id; with the app, the
            id the scope is keyed by (see above).

    Yields:
        The instance, changeable for the length of the block.

    Raises:
        RuntimeError: ``target`` is an app that has not started yet.
        starlette.exceptions.HTTPException: With a request: 400, 401 or 403
            as ``use_state``.
    """
    runtime, address = await _locate(target, cls, key)
    joining = running()
    if joining is not None and joining.runtime is runtime:
        # Inside an event (or another mutate): the instance joins that
        # transaction, saved or rolled back with it; waiting for a lock of
        # its own here could deadlock against it.
        state = joining.holding(address.key) or await joining.join(address)
        yield cast(S, state)
        return
    async with Transaction(runtime, (address,)) as tx:
        with tx.running():
            yield cast(S, tx.states[0])
        patches = tx.finish()
        for patch in patches:
            dump_json(patch)  # what pages could not be sent is not kept
        await tx.commit()


async def push(
    target: Any,
    state: ReactiveState,
    *elements: Any,
    selector: str | None = None,
    mode: PatchMode = "outer",
) -> None:
    """Send elements to every live page showing ``state`` (e.g. a re-rendered list).

    ``state`` must have been resolved (``use_state``, an event, ``mutate``).
    The elements go with the version of the state's last save: a page that
    missed that save resyncs first.

    Args:
        target: A request, or the app once it has started.
        state: A resolved instance.
        *elements: FastHTML elements, objects with ``__html__``, or HTML strings.
        selector: The CSS selector they are patched into; ``None``: by their ``id``.
        mode: How they are patched (``"outer"``, ``"inner"``, ``"append"``... as
            in ``@event``).

    Raises:
        ValueError: ``state`` was not resolved.
        RuntimeError: ``target`` is an app that has not started yet.
    """

    runtime = runtime_of(target)
    key = placement_of(state).key
    if key.startswith("unbound:"):
        raise ValueError("push() needs a resolved instance (from use_state, an event or mutate)")
    patches = tuple(ElementPatch(to_html(e), selector, mode) for e in elements)
    # Same version as the state's last save: pages that have it show the
    # elements; pages that missed it resync from the store first.
    await runtime.broker.publish(Change(key, stored_version(state), {}, patches, replay=True))


async def _locate(
    target: Any, cls: type[ReactiveState], key: str | None
) -> tuple[Runtime, Address]:
    if isinstance(target, HTTPConnection):
        context = context_of(target)
        address = address_for(target, context, registration_for(context, target, cls), key)
        await authorize(target, address)
        return context.runtime, address
    runtime = runtime_of(target)
    registry = registry_of(target, create=False)
    assert registry is not None  # runtime_of checked it
    return runtime, address_from_key(runtime, registry.get(cls), key)


def runtime_of(target: Any) -> Runtime:
    """The runtime of a request, or of an app that has started."""
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
