"""FastStateMiddleware: the session cookie and the per-request context."""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import secrets
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer
from starlette._utils import get_route_path
from starlette.datastructures import MutableHeaders
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import BaseRoute, Route, Router, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faststate._context import CONTEXT_KEY, RequestContext
from faststate._guards import Refusal, SlowBodies, guard_asgi, read_headers, refusal_response
from faststate._live.broker import Broker
from faststate._live.presence import Presence
from faststate._observe import REFUSED, WATCH_KEY, EventHook, Observer
from faststate._protocol import Dialect, get_protocol
from faststate._registry import Registry, registry_of
from faststate._routing import EventEndpoint
from faststate._runtime import OpenStreams, Runtime, UserKey
from faststate._stores.base import StateStore
from faststate._stores.memory import MemoryStore
from faststate._uploads import UPLOADS_KEY, Uploads, guard_uploads

if TYPE_CHECKING:
    from faststate._persistence import SQLPersistence

logger = logging.getLogger("faststate")

SECRET_KEY_ENV = "FASTSTATE_SECRET_KEY"
DEFAULT_MAX_BODY_SIZE = 1024 * 1024
#: How long SESSION and COMPONENT instances outlive their last use when the
#: cookie itself has no ``max_age`` (it then lasts as long as the browser runs).
DEFAULT_SESSION_TTL = 14 * 24 * 3600
VERIFIED_COOKIES = 10_000
SecretKey = str | bytes | Sequence[str | bytes]


class FastStateMiddleware:
    """Reads or sets the signed session cookie and guards event endpoints.

    Every option has a working default: an in-memory store, no durable
    persistence (``persistence=SQLPersistence(url)``, ``True`` for SQLite
    in ``faststate.db``, or a URL, for ``auto_persist`` states), Datastar 1.0,
    a 14-day HttpOnly SameSite=Lax cookie (Secure on https).  ``secret_key``
    may be a list of keys, newest last: cookies signed with any of them are
    accepted, new ones are signed with the newest.

    Add it with ``app.add_middleware(FastStateMiddleware, **options)``
    (``FastStateApp`` and ``FastStateHTML`` add it for you, given
    ``faststate={...}``).

    Args:
        app: The ASGI app below (Starlette passes it).
        secret_key: Signs session cookies and live-stream tokens; a list rotates
            keys (newest last).  Default: env ``FASTSTATE_SECRET_KEY``, else a
            random key per process with a logged warning.
        store: Where instances live: ``MemoryStore()`` by default, or
            ``RedisStore(url)`` for several workers.
        persistence: ``SQLPersistence(url)``, a SQLAlchemy URL, or ``True``
            (SQLite in ``faststate.db``) for ``auto_persist`` states.
        broker: How changes reach live pages: the store's default
            (``RedisBroker`` with a ``RedisStore``, else ``LocalBroker()``).
        protocol: The Datastar dialect: ``"v1"`` (Datastar 1.0.x) or
            ``"beta"`` (1.0.0-beta.11).
        user_key: ``user_key(request) -> str | None``: the user id for USER
            scope when neither ``scope["auth"]`` nor ``request.user`` gives one.
        session_cookie: The session cookie's name.
        max_age: The cookie's lifetime in seconds (``None``: a browser-session
            cookie); SESSION and COMPONENT instances registered without a
            ``ttl`` expire this long after their last use (14 days if ``None``).
        path: The cookie's path.
        same_site: The cookie's SameSite attribute.
        https_only: Mark the cookie Secure; ``None``: when the request is https.
        domain: The cookie's domain; ``None``: the host only.
        max_body_size: The largest event body in bytes (larger: 413).
        body_timeout: Seconds to receive an event body (later: 408, connection closed).
        upload_timeout: The same for bodies of events with upload parameters.
        trusted_origins: Origins allowed to post events cross-site
            (``"https://admin.example.com"``).
        live_max_age: Lifetime in seconds of a page's live-stream token.
        max_streams: Open live streams per process (beyond: 429).
        max_streams_per_session: Open live streams per session (beyond: 429).
        heartbeat: Seconds between comments on idle live streams; presence
            seats are refreshed this often and expire after two.
        on_event: A hook (or a list of hooks) called with an ``EventRecord``
            after every event: names, outcome and measures, never values
            (docs/observability.md).  Plain functions: they run on the event
            loop before the answer is sent.

    Raises:
        RuntimeError: A shared store (Redis) without a fixed secret key.
        ValueError: An empty secret key.
        TypeError: An ``on_event`` hook that is not callable, or is ``async``.
    """


    def __init__(
        self,
        app: ASGIApp,
        *,
        secret_key: SecretKey | None = None,
        store: StateStore | None = None,
        persistence: SQLPersistence | str | bool | None = None,
        broker: Broker | None = None,
        protocol: Literal["v1", "beta"] | Dialect = "v1",
        user_key: UserKey | None = None,
        session_cookie: str = "faststate_session",
        max_age: int | None = 14 * 24 * 3600,
        path: str = "/",
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool | None = None,
        domain: str | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        body_timeout: float = 10.0,
        upload_timeout: float = 300.0,
        trusted_origins: Iterable[str] = (),
        live_max_age: int = 14 * 24 * 3600,
        max_streams: int = 10_000,
        max_streams_per_session: int = 16,
        heartbeat: float = 15.0,
        on_event: EventHook | Iterable[EventHook] | None = None,
    ) -> None:
        self.app = app
        store = store if store is not None else MemoryStore()
        broker = broker if broker is not None else store.default_broker()
        keys = _secret_keys(secret_key, store)
        self.signer = TimestampSigner(keys, salt="faststate.session")  # type: ignore[arg-type]
        self.runtime = Runtime(
            store=store,
            persistence=_persistence(persistence),
            broker=broker,
            protocol=get_protocol(protocol),
            user_key=user_key,
            max_body_size=max_body_size,
            slow_bodies=SlowBodies(body_timeout),
            slow_uploads=SlowBodies(upload_timeout),
            trusted_origins=frozenset(o.rstrip("/") for o in trusted_origins),
            live_signer=URLSafeTimedSerializer(keys, salt="faststate.live"),  # type: ignore[arg-type]
            live_max_age=live_max_age,
            heartbeat=heartbeat,
            streams=OpenStreams(max_streams, max_streams_per_session),
            presence=Presence(store.viewer_table(), broker, heartbeat),
            session_ttl=max_age if max_age is not None else DEFAULT_SESSION_TTL,
            observer=Observer(on_event),
        )
        # Ordered: the oldest goes first when full, at once (a dict's first
        # key is found by walking past the holes its removals left).
        self._verified: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._app: Any = None
        self._app_registry: Registry | None = None
        #: The app served, and its ExceptionMiddleware and router when nothing
        #: else lies between them and this middleware.
        self._routing: tuple[Any, tuple[ExceptionMiddleware, Router] | None] = (None, None)
        #: The router's routes, and for each event path taken since they were
        #: these, what the router could run for it (``_candidates``).  Each
        #: tuple is replaced whole, for apps served by several loops in threads.
        self._direct: tuple[list[BaseRoute], dict[str, _Candidates]] = ([], {})
        self.session_cookie = session_cookie
        self.max_age = max_age
        self.https_only = https_only
        flags = f"path={path}; httponly; samesite={same_site}"
        if max_age is not None:
            flags += f"; Max-Age={max_age}"
        if domain:
            flags += f"; domain={domain}"
        self._cookie_flags = flags

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if CONTEXT_KEY in scope:  # a second FastStateMiddleware in the same stack
            await self.app(scope, receive, send)
            return
        registry = self._registry(scope.get("app"))
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers, cookies = read_headers(scope)
        session_id, refresh = self._read_cookie(cookies)
        context = RequestContext(self.runtime, scope.get("app"), session_id)
        scope[CONTEXT_KEY] = context
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        direct: _DirectRoute | None = None
        uploads: Uploads | None = None
        if scope["method"] != "GET" and registry is not None:
            path = get_route_path(scope)
            if path in registry.event_paths:
                runtime = self.runtime
                # Decided here for the endpoint too: None when nobody watches.
                watch = scope[WATCH_KEY] = runtime.observer.watch()
                policy = registry.uploads.get(path)
                if policy is None:
                    guarded = await guard_asgi(scope, receive, send, runtime, headers)
                else:
                    uploads = scope[UPLOADS_KEY] = Uploads()
                    guarded = await guard_uploads(
                        scope, receive, send, runtime, policy, uploads, headers
                    )
                if isinstance(guarded, Refusal):
                    if not guarded.answered:
                        await refusal_response(guarded)(scope, receive, send)
                    if watch is not None:  # refused before routing: still the event's record
                        names = registry.event_paths[path]
                        runtime.observer.report(watch, *names, guarded.status, 0, REFUSED)
                    return
                receive = guarded
                direct = self._direct_route(scope["app"], path, scope["method"])

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and (
                context.session_is_new or (refresh and context.has_session)
            ):
                headers = MutableHeaders(scope=message)
                headers.append("Set-Cookie", self._cookie(scope, context.session_id))
            await send(message)

        try:
            if direct is not None:
                await direct(scope, receive, send_with_cookie)
            else:
                await self.app(scope, receive, send_with_cookie)
        finally:
            if uploads is not None:  # answered, streams included: done with its files
                await uploads.aclose()

    def _registry(self, app: Any) -> Registry | None:
        """The app's registry (remembered), which learns this middleware's runtime
        so that ``mutate(app, ...)`` finds the store and the broker."""
        if app is self._app and self._app_registry is not None:
            return self._app_registry
        registry = registry_of(app, create=False) if app is not None else None
        if registry is not None and registry.runtime is None:
            registry.runtime = self.runtime
        self._app, self._app_registry = app, registry
        return registry

    def _direct_route(self, app: Any, path: str, method: str) -> _DirectRoute | None:
        """The route the app's router would run for an event request, to be run
        without the router's search through every route (a good part of an
        event's cost), or None to go through the app."""
        served, routing = self._routing
        if app is not served:
            routing = _routing_below(self.app, app)
            self._routing = (app, routing)
        if routing is None:
            return None
        exceptions, router = routing
        routes, found = self._direct
        if routes != router.routes:  # routes may be added at any time
            routes, found = self._direct = (list(router.routes), {})
        candidates = found.get(path)
        if candidates is None:
            candidates = found[path] = _candidates(exceptions, router, routes, path)
        for methods, direct in candidates:
            if not methods or method in methods:
                return direct
        return None

    def _lifespan_send(self, send: Send) -> Send:
        runtime = self.runtime

        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                _end_streams_on_exit_signals(runtime.streams)
            elif message["type"] == "lifespan.shutdown.complete":
                runtime.streams.end_all()
                await runtime.fanout.aclose()
                await runtime.presence.aclose()
                await runtime.broker.aclose()
                await runtime.store.aclose()
                if runtime.persistence is not None:
                    await runtime.persistence.aclose()
            await send(message)

        return lifespan_send

    def _read_cookie(self, header: bytes | None) -> tuple[str | None, bool]:
        """The session id of a valid cookie in the request's ``Cookie`` header, and
        whether to re-issue it."""
        if header is None:
            return None, False
        # Remembered by the whole header, as it came: a returning browser sends
        # the same bytes, and neither decoding nor splitting them is needed.
        verified = self._verified.get(header)
        if verified is None:
            cookie = _cookie_value(header.decode("latin-1"), self.session_cookie)
            if cookie is None:
                return None, False
            try:
                value, signed = self.signer.unsign(cookie, return_timestamp=True)
            except BadSignature:
                # Forged or signed with a retired key: a fresh session, never
                # the one the cookie names.
                return None, False
            verified = (value.decode("ascii", "replace"), signed.timestamp())
            # The signature of a given cookie string never changes verdict:
            # remembering it spares two HMACs per request of a busy session.
            if len(self._verified) >= VERIFIED_COOKIES:
                self._verified.popitem(last=False)
            self._verified[header] = verified
        session_id, signed_at = verified
        if self.max_age is None:
            return session_id, False
        age = time.time() - signed_at
        if age > self.max_age:
            return None, False  # expired: a fresh session
        return session_id, age > self.max_age / 2

    def _cookie(self, scope: Scope, session_id: str) -> str:
        value = self.signer.sign(session_id).decode("ascii")
        flags = self._cookie_flags
        secure = self.https_only if self.https_only is not None else scope["scheme"] == "https"
        if secure:
            flags += "; secure"
        return f"{self.session_cookie}={value}; {flags}"


def _routing_below(below: ASGIApp, app: Any) -> tuple[ExceptionMiddleware, Router] | None:
    """The app's ExceptionMiddleware and router when they are all that lies
    between this middleware (whose next app is ``below``) and the routes."""
    router = getattr(app, "router", None)
    if (
        type(router) is Router
        and type(below) is ExceptionMiddleware
        and below.app is router
        and getattr(router, "middleware_stack", None) == router.app
    ):
        return below, router
    return None


def _candidates(
    exceptions: ExceptionMiddleware, router: Router, routes: list[BaseRoute], path: str
) -> _Candidates:
    """The routes that take http requests for ``path``, in the router's order,
    with the methods they take (None: any) and how to run them directly (None:
    through the router).  The first that takes a request's method is the one
    the router runs."""
    found: _Candidates = []
    for route in routes:
        if type(route) is WebSocketRoute:  # never takes an http request
            continue
        if type(route) is not Route:  # a Mount, a Host, a custom route: only the router knows
            found.append((None, None))
            break
        if route.path_regex.match(path) is None:
            continue
        direct = None if route.param_convertors else _DirectRoute(exceptions, router, route)
        found.append((route.methods, direct))
    return found


class _DirectRoute:
    """What ExceptionMiddleware, Router and Route do for a request that ends at
    ``route``, in that order, without searching the routes.

    An event endpoint answers its own exceptions with the app's handlers, so
    only their lookup table is set for it: the ExceptionMiddleware's wrapping
    of every request and of each message sent is left out.
    """

    __slots__ = ("event_endpoint", "exceptions", "handlers", "route", "router")

    def __init__(self, exceptions: ExceptionMiddleware, router: Router, route: Route) -> None:
        # A copy shares the app's exception handlers, those added later too.
        self.exceptions = copy.copy(exceptions)
        self.exceptions.app = route.app
        self.handlers = (exceptions._exception_handlers, exceptions._status_handlers)
        self.event_endpoint = route.app if type(route.app) is EventEndpoint else None
        self.router = router
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Set before the ExceptionMiddleware runs rather than after: nothing
        # it does reads them.
        if "router" not in scope:
            scope["router"] = self.router
        scope["route"] = self.route
        scope["endpoint"] = self.route.endpoint
        scope["path_params"] = dict(scope.get("path_params", {}))
        if self.event_endpoint is not None:
            scope["starlette.exception_handlers"] = self.handlers
            await self.event_endpoint(scope, receive, send)
        else:
            await self.exceptions(scope, receive, send)


#: Routes as ``_candidates`` lists them: the methods each takes, how to run it directly.
_Candidates = list[tuple[Collection[str] | None, _DirectRoute | None]]


def _end_streams_on_exit_signals(streams: OpenStreams) -> None:
    """End live streams as soon as the server is asked to stop.

    Servers such as uvicorn wait for open connections before running the
    lifespan shutdown, so streams would hold a shutdown forever.  The
    handlers the server installed are kept and called after ours.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue  # default or ignored: the server does not stop gracefully anyway

        def handler(number: int, frame: Any, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(streams.end_all)
            previous(number, frame)

        signal.signal(signum, handler)


def _persistence(option: SQLPersistence | str | bool | None) -> SQLPersistence | None:
    if option is None or option is False:
        return None
    if isinstance(option, bool | str):
        # Imported here, so that apps without a database never import it.
        from faststate._persistence import SQLPersistence

        return SQLPersistence() if option is True else SQLPersistence(str(option))
    return option


def _secret_keys(secret_key: SecretKey | None, store: StateStore) -> list[str | bytes]:
    if secret_key is None:
        secret_key = os.environ.get(SECRET_KEY_ENV) or None
    if secret_key is None:
        if store.shared:
            raise RuntimeError(
                f"a shared store needs a fixed secret key (secret_key= or {SECRET_KEY_ENV}) "
                "so that every worker accepts the same session cookies"
            )
        logger.warning(
            "faststate: no secret_key and no %s; using a random key, so sessions "
            "end when this process restarts",
            SECRET_KEY_ENV,
        )
        return [secrets.token_bytes(32)]
    keys = [secret_key] if isinstance(secret_key, str | bytes) else list(secret_key)
    if not keys or any(not key for key in keys):
        raise ValueError("secret_key must not be empty")
    return keys


def _cookie_value(header: str | None, name: str) -> str | None:
    if not header:
        return None
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"') or None
    return None
