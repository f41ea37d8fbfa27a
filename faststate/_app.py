"""Registering state classes on an app: ``register_state``, mounting, app classes."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from faststate._live.streams import LIVE_PATH, live_endpoint
from faststate._middleware import FastStateMiddleware
from faststate._registry import Registration, add_registration, registry_of
from faststate._routing import EventEndpoint, request_endpoint
from faststate._scopes import Authorize, StateConfig, StateScope, ViewerLabel
from faststate._state import ReactiveState


def register_state(
    app: Starlette,
    cls: type[ReactiveState],
    *,
    scope: StateScope | str = StateScope.SESSION,
    ttl: float | None = None,
    auto_persist: bool = False,
    authorize: Authorize | None = None,
    prefix: str = "",
    presence: bool | ViewerLabel = False,
) -> Registration:
    """Register ``cls`` on ``app`` and mount ``POST {prefix}/{cls}/{event}`` routes.

    ``scope`` says who shares an instance (``StateScope`` or its value);
    ``ttl`` expires idle instances after that many seconds; ``auto_persist``
    writes every change through to the middleware's ``persistence``;
    ``authorize(request, key) -> bool`` (sync or async) is asked on every
    use, event and live subscription (false: 403), with ``key`` the id the
    scope is keyed by (record, component, user or session id; ``""`` for
    GLOBAL); ``prefix`` goes before the event paths.  ``presence=True``
    tracks who has a live page of an instance open (``viewers``,
    ``viewer_count``, ``viewer_names``), labelled by user id, or by
    ``presence(request)`` when it is a callable.

    On a FastHTML app the event routes go through ``app.route``, so the
    app's beforeware runs for them; on any other Starlette app (FastAPI
    included) they are plain routes.  The live-stream route is mounted with
    the first registration.

    Args:
        app: A Starlette, FastHTML or FastAPI app (with ``FastStateMiddleware``).
        cls: The ``ReactiveState`` subclass; its name is its URL segment and
            must be unique on the app.
        scope: Who shares one instance: a ``StateScope`` or its value
            (``"global"``, ``"session"``, ``"user"``, ``"component"``, ``"record"``).
        ttl: Seconds after its last use at which an idle instance expires;
            ``None``: no expiry of its own (SESSION and COMPONENT instances
            still expire with the session cookie's ``max_age``).
        auto_persist: Write every saved change through to the middleware's
            ``persistence`` and load instances from it on first use.
        authorize: ``authorize(request, key) -> bool`` (or ``async``), asked on
            every ``use_state``, event and live subscription; false → 403.
        prefix: A path put before the event paths (``"/state"``); starts with
            ``/`` and does not end with one.
        presence: ``True`` tracks the viewers of each instance, labelled by
            user id (``"guest"`` without one); a callable
            ``label(request) -> str | None`` labels them itself.

    Returns:
        The registration (internal record of the class, its config and events).

    Raises:
        TypeError: ``app`` is not a Starlette app, or ``cls`` not a ``ReactiveState``.
        ValueError: A class of that name is already registered, an event path
            is taken, a bad ``prefix``, or a ``ttl`` that is not positive.
    """
    registry = registry_of(app)
    if registry is None:
        raise TypeError("register_state needs a Starlette or FastHTML app")
    config = StateConfig(
        scope=StateScope(scope),
        ttl=ttl,
        auto_persist=auto_persist,
        authorize=authorize,
        presence=presence,
    )
    registration = add_registration(registry, cls, config, prefix)
    _mount_events(app, registration)
    if not registry.live_mounted:
        _mount_live(app)
        registry.live_mounted = True
    return registration


def _mount_events(app: Starlette, registration: Registration) -> None:
    """One route per event, through FastHTML's routing when it is one (so beforeware runs)."""
    for spec in registration.events.values():
        path = registration.event_path(spec)
        route_name = f"faststate:{registration.name}.{spec.name}"
        if _is_fasthtml(app):
            endpoint = request_endpoint(registration, spec)
            app.route(path, methods=[spec.method], name=route_name)(endpoint)  # type: ignore[attr-defined]
        else:
            # A plain ASGI endpoint: Starlette's request/response wrapper
            # would only add a layer to every event.
            app.router.routes.append(
                Route(
                    path,
                    EventEndpoint(registration, spec),
                    methods=[spec.method.upper()],
                    name=route_name,
                )
            )


def _mount_live(app: Starlette) -> None:
    """The live stream endpoint, through the app's routing so beforeware runs."""
    if _is_fasthtml(app):

        async def faststate_live(req: Request) -> Response:
            return await live_endpoint(req)

        app.route(LIVE_PATH, methods=["get"], name="faststate:live")(faststate_live)  # type: ignore[attr-defined]
    else:
        app.router.routes.append(
            Route(LIVE_PATH, live_endpoint, methods=["GET"], name="faststate:live")
        )


def _is_fasthtml(app: Any) -> bool:
    try:
        from fasthtml.core import FastHTML
    except ImportError:  # pragma: no cover - fasthtml is a dependency
        return False
    return isinstance(app, FastHTML)


class StateApp:
    """Mixin giving an app ``app.register_state(Cls, scope=...)``.

    ``FastStateApp`` (Starlette) and ``faststate.fasthtml.FastStateHTML``
    (FastHTML) include it.
    """

    def register_state(
        self,
        cls: type[ReactiveState],
        *,
        scope: StateScope | str = StateScope.SESSION,
        ttl: float | None = None,
        auto_persist: bool = False,
        authorize: Authorize | None = None,
        prefix: str = "",
        presence: bool | ViewerLabel = False,
    ) -> Registration:
        """``register_state(self, cls, ...)``: register ``cls`` on this app.

        Args:
            cls: The ``ReactiveState`` subclass.
            scope: Who shares one instance (``StateScope`` or its value).
            ttl: Seconds of idleness after which an instance expires.
            auto_persist: Write every change through to the middleware's persistence.
            authorize: ``authorize(request, key) -> bool`` (sync or async).
            prefix: A path put before the event paths.
            presence: Track who has a live page of an instance open.

        Returns:
            The registration, as ``register_state`` returns it.
        """
        return register_state(
            self,  # type: ignore[arg-type]
            cls,
            scope=scope,
            ttl=ttl,
            auto_persist=auto_persist,
            authorize=authorize,
            prefix=prefix,
            presence=presence,
        )


class FastStateApp(StateApp, Starlette):
    """A Starlette app with FastStateMiddleware installed.

    ``faststate={...}`` passes options to the middleware.

    Args:
        *args: Starlette's positional arguments.
        faststate: Keyword options of ``FastStateMiddleware`` (``{"secret_key": ...}``).
        **kwargs: Starlette's keyword arguments (``routes=``, ``debug=``...).
    """


    def __init__(self, *args: Any, faststate: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_middleware(FastStateMiddleware, **(faststate or {}))
