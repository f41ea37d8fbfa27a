"""Session rotation: a fresh session id at login, so a planted one is worthless."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import HTTPConnection

from faststate._address import Address
from faststate._context import context_of
from faststate._resolve import registration_for
from faststate._scopes import StateScope
from faststate._state import ReactiveState
from faststate._transaction import move


async def rotate_session(
    request: HTTPConnection, carry: Iterable[type[ReactiveState]] = ()
) -> None:
    """Give the browser a new session id (call it when the user logs in or out).

    An attacker who made a victim use a session id he knows (session
    fixation) loses it here: the response sets a cookie with a new id, and
    state stays with the new id only.  SESSION-scoped classes in ``carry``
    (a cart filled before login, say) move to the new session; all other
    state of the old session is left to expire.

    Args:
        request: The request of the login or logout.
        carry: SESSION-scoped state classes whose instances move to the new id.

    Raises:
        ValueError: A class in ``carry`` is not SESSION-scoped.
    """

    context = context_of(request)
    old, new = context.rotate_session()
    if old is None:
        return
    runtime = context.runtime
    for cls in carry:
        registration = registration_for(context, request, cls)
        if registration.config.scope is not StateScope.SESSION:
            raise ValueError(f"only SESSION-scoped classes can be carried, not {cls.__name__}")
        await move(
            runtime,
            Address.of(registration, old, old, runtime.protocol),
            Address.of(registration, new, new, runtime.protocol),
        )
    context.resolved.clear()  # a page rendered after this must resolve again
