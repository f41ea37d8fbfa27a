"""Small things many test modules need: the secret key, a counter, the app factory.

A module whose state class needs more fields or events than ``Counter`` keeps
its own class, and still builds its app with ``state_app`` or ``with_faststate``.
State classes are registered on an app by class name: never register a class
of one's own named ``Counter`` next to this one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from faststate import FastStateMiddleware, ReactiveState, StateScope, event, register_state

SECRET = "test-secret"

States = Mapping[type[ReactiveState], StateScope | Mapping[str, Any]]
"""State classes to register, each with its scope or with ``register_state``'s
keyword arguments (``{}`` for its defaults)."""

AppT = TypeVar("AppT", bound=Starlette)


class Counter(ReactiveState):
    count: int = 0

    @event
    def increment(self, amount: int = 1) -> None:
        self.count += amount


def with_faststate(app: AppT, states: States | None = None, /, **options: Any) -> AppT:
    """``app`` with ``FastStateMiddleware(secret_key=SECRET, **options)`` and ``states``.

    For apps other than a bare Starlette one (FastHTML); ``options`` may set
    another ``secret_key``, ``None`` included.
    """
    options.setdefault("secret_key", SECRET)
    app.add_middleware(FastStateMiddleware, **options)
    for cls, registration in (states or {}).items():
        if isinstance(registration, StateScope):
            register_state(app, cls, scope=registration)
        else:
            register_state(app, cls, **registration)
    return app


def state_app(
    states: States | None = None,
    /,
    *,
    routes: Sequence[BaseRoute] | None = None,
    middleware: Sequence[Middleware] | None = None,
    **options: Any,
) -> Starlette:
    """A Starlette app with ``FastStateMiddleware(secret_key=SECRET, **options)`` and ``states``.

    ``routes`` and ``middleware`` go to ``Starlette()``; that ``middleware`` runs
    inside FastStateMiddleware.
    """
    return with_faststate(Starlette(routes=routes, middleware=middleware), states, **options)
