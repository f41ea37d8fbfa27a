"""Presence as requests see it: the seats a live stream takes, and who views an instance.

``viewers(request, state)`` lists who has a live page of ``state`` open right
now, one label per session, sorted: the user id, or ``"guest"``.  Pages show
the same list, kept current, through the ``viewer_count`` and
``viewer_names`` helpers.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from starlette.requests import HTTPConnection

from faststate._address import Address
from faststate._context import RequestContext
from faststate._live.mutations import runtime_of
from faststate._live.presence import GUEST, Seat
from faststate._state import ReactiveState, placement_of


def seats_for(
    connection: HTTPConnection, context: RequestContext, watched: Sequence[Address]
) -> tuple[Seat, ...]:
    """The seats a live stream takes: one per watched instance of a ``presence`` class."""
    presence = [address for address in watched if address.presence]
    if not presence:
        return ()
    page = secrets.token_urlsafe(12)
    # Without a session (a page that set no cookie), the page is a viewer of its own.
    viewer = context.existing_session_id or page
    seats = []
    for address in presence:
        option = address.registration.config.presence
        label = option(connection) if callable(option) else context.user_id(connection)
        seats.append(Seat(address.key, viewer, label or GUEST, page))
    return tuple(seats)


def viewers(target: Any, state: ReactiveState) -> list[str]:
    """Who has a live page of ``state`` open, one label per session, sorted.

    ``target`` is the request (or the app, once started); ``state`` an
    instance of a class registered with ``presence``.  With a Redis store
    this reads Redis: in async handlers prefer ``await aviewers(...)``.

    Args:
        target: A request, or the app once it has started.
        state: A resolved instance of a class registered with ``presence``.

    Returns:
        The viewers' labels, sorted, one per session (``["alice", "guest"]``).

    Raises:
        ValueError: ``state`` was not resolved.
        TypeError: Its class was registered without ``presence``.
    """
    return runtime_of(target).presence.table.read_sync(_key(state))


async def aviewers(target: Any, state: ReactiveState) -> list[str]:
    """``viewers`` for async code: reads without blocking the event loop.

    Args:
        target: A request, or the app once it has started.
        state: A resolved instance of a class registered with ``presence``.

    Returns:
        The viewers' labels, sorted, one per session.
    """

    key = _key(state)
    return (await runtime_of(target).presence.table.read((key,)))[key]


def _key(state: ReactiveState) -> str:
    where = placement_of(state)
    if where.key.startswith("unbound:"):
        raise ValueError("viewers() needs a resolved instance (from use_state, an event or mutate)")
    if not where.presence:
        raise TypeError(
            f"{type(state).__name__} does not track its viewers: register it with presence=True"
        )
    return where.key
