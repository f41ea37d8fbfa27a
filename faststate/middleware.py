"""FastStateMiddleware: the session cookie and the per-request context."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer
from starlette.datastructures import MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faststate.broker import Broker, LocalBroker, RedisBroker
from faststate.context import CONTEXT_KEY, RequestContext, Runtime, UserKey
from faststate.guards import (
    Refusal,
    check_event_request,
    media_type,
    parse_signals,
    scope_header,
)
from faststate.protocol import Protocol, get_protocol
from faststate.registry import Registry, registry_of
from faststate.stores.base import StateStore
from faststate.stores.memory import MemoryStore
from faststate.stores.redis import RedisStore
from faststate.stores.sql import SQLPersistence
from faststate.streams import end_all_streams

logger = logging.getLogger("faststate")

SECRET_KEY_ENV = "FASTSTATE_SECRET_KEY"
GUARDED_KEY = "faststate.guarded"
BODY_KEY = "faststate.body"
SIGNALS_KEY = "faststate.signals"
DEFAULT_MAX_BODY_SIZE = 1024 * 1024
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
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        secret_key: SecretKey | None = None,
        store: StateStore | None = None,
        persistence: SQLPersistence | str | bool | None = None,
        broker: Broker | None = None,
        protocol: Literal["v1", "beta"] | Protocol = "v1",
        user_key: UserKey | None = None,
        session_cookie: str = "faststate_session",
        max_age: int | None = 14 * 24 * 3600,
        path: str = "/",
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool | None = None,
        domain: str | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        trusted_origins: Iterable[str] = (),
        live_max_age: int = 14 * 24 * 3600,
        max_streams: int = 10_000,
        max_streams_per_session: int = 16,
        heartbeat: float = 15.0,
    ) -> None:
        self.app = app
        store = store if store is not None else MemoryStore()
        keys = _secret_keys(secret_key, store)
        self.signer = TimestampSigner(keys, salt="faststate.session")  # type: ignore[arg-type]
        self.runtime = Runtime(
            store=store,
            persistence=_persistence(persistence),
            broker=broker if broker is not None else _default_broker(store),
            protocol=get_protocol(protocol),
            user_key=user_key,
            max_body_size=max_body_size,
            trusted_origins=frozenset(o.rstrip("/") for o in trusted_origins),
            live_signer=URLSafeTimedSerializer(keys, salt="faststate.live"),  # type: ignore[arg-type]
            live_max_age=live_max_age,
            max_streams=max_streams,
            max_streams_per_session=max_streams_per_session,
            heartbeat=heartbeat,
        )
        self._verified: dict[str, tuple[str, float]] = {}
        self._app: Any = None
        self._app_registry: Registry | None = None
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
        session_id, refresh = self._read_cookie(scope)
        context = RequestContext(self.runtime, scope.get("app"), session_id)
        scope[CONTEXT_KEY] = context
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        if scope["method"] != "GET" and _is_event_path(scope, registry):
            refusal_response, receive = await self._guard(scope, receive)
            if refusal_response is not None:
                await refusal_response(scope, receive, send)
                return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and (
                context.session_is_new or (refresh and context.has_session)
            ):
                headers = MutableHeaders(scope=message)
                headers.append("Set-Cookie", self._cookie(scope, context.session_id))
            await send(message)

        await self.app(scope, receive, send_with_cookie)

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

    def _lifespan_send(self, send: Send) -> Send:
        runtime = self.runtime

        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                _end_streams_on_exit_signals(runtime)
            elif message["type"] == "lifespan.shutdown.complete":
                end_all_streams(runtime)
                await runtime.broker.aclose()
                await runtime.store.aclose()
                if runtime.persistence is not None:
                    await runtime.persistence.aclose()
            await send(message)

        return lifespan_send

    def _read_cookie(self, scope: Scope) -> tuple[str | None, bool]:
        """The session id of a valid cookie, and whether to re-issue it."""
        cookie = _cookie_value(scope_header(scope, b"cookie"), self.session_cookie)
        if cookie is None:
            return None, False
        verified = self._verified.get(cookie)
        if verified is None:
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
                self._verified.pop(next(iter(self._verified)))
            self._verified[cookie] = verified
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

    async def _guard(
        self, scope: Scope, receive: Receive
    ) -> tuple[PlainTextResponse | None, Receive]:
        """Refuse a hostile event request before any routing or parsing."""
        # ASGI header names are lower-case already: one pass builds the lookup.
        headers = {
            key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]
        }
        limit = self.runtime.max_body_size
        refusal = check_event_request(
            headers, headers.get("host"), self.runtime.trusted_origins, limit
        )
        if refusal is not None:
            return PlainTextResponse(refusal.reason, refusal.status), receive
        # Buffer the (small) body here so that no later reader, FastHTML's
        # form parsing included, can be made to read more than the limit.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return PlainTextResponse("client disconnected", 400), receive
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return PlainTextResponse(f"request body over {limit} bytes", 413), receive
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if media_type(headers.get("content-type")) == "application/json":
            parsed = parse_signals(body)
            if isinstance(parsed, Refusal):
                return PlainTextResponse(parsed.reason, parsed.status), receive
            scope[SIGNALS_KEY] = parsed
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        scope[GUARDED_KEY] = True
        scope[BODY_KEY] = body
        return None, replay


def _is_event_path(scope: Scope, registry: Registry | None) -> bool:
    if registry is None:
        return False
    path: str = scope["path"]
    # Under a Mount or a server --root-path, "path" still holds the prefix;
    # routes are matched without it.
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    return path in registry.event_paths


def _default_broker(store: StateStore) -> Broker:
    if isinstance(store, RedisStore):
        return RedisBroker(store.url, prefix=store.prefix)
    return LocalBroker()


def _end_streams_on_exit_signals(runtime: Runtime) -> None:
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
            loop.call_soon_threadsafe(end_all_streams, runtime)
            previous(number, frame)

        signal.signal(signum, handler)


def _persistence(option: SQLPersistence | str | bool | None) -> SQLPersistence | None:
    if option is None or option is False:
        return None
    if option is True:
        return SQLPersistence()
    if isinstance(option, str):
        return SQLPersistence(option)
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
