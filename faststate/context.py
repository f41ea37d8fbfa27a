"""The per-request context that FastStateMiddleware puts into the ASGI scope."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from itsdangerous import URLSafeTimedSerializer
from starlette.authentication import AuthCredentials
from starlette.requests import HTTPConnection

from faststate.protocol import Protocol

if TYPE_CHECKING:
    from faststate.broker import Broker
    from faststate.stores.base import StateStore
    from faststate.stores.sql import SQLPersistence
    from faststate.streams import LiveStream

CONTEXT_KEY: Final = "faststate"

UserKey = Callable[[HTTPConnection], "str | None"]


@dataclass(frozen=True)
class Resolved:
    """An instance a page resolved, as its live stream will need it."""

    cls_name: str
    namespace: str
    version: int


@dataclass
class Runtime:
    """What every request of one middleware shares."""

    store: StateStore
    persistence: SQLPersistence | None
    broker: Broker
    protocol: Protocol
    user_key: UserKey | None
    max_body_size: int
    trusted_origins: frozenset[str]
    live_signer: URLSafeTimedSerializer
    live_max_age: int
    max_streams: int
    max_streams_per_session: int
    heartbeat: float
    #: Open live streams, to end them on shutdown and to enforce the caps.
    streams: set[LiveStream] = field(default_factory=set)
    streams_by_session: dict[str, int] = field(default_factory=dict)
    shutting_down: bool = False


class RequestContext:
    """Session and resolution state of one request.

    The session id is created lazily: a request that never needs it gets no
    cookie, so static pages and bots do not mint sessions.
    """

    __slots__ = ("_session_id", "app", "resolved", "runtime", "session_is_new")

    def __init__(self, runtime: Runtime, app: Any, session_id: str | None) -> None:
        self.runtime = runtime
        self.app = app
        self._session_id = session_id
        self.session_is_new = False
        self.resolved: dict[str, Resolved] = {}

    @property
    def session_id(self) -> str:
        if self._session_id is None:
            self._session_id = secrets.token_urlsafe(24)
            self.session_is_new = True
        return self._session_id

    @property
    def has_session(self) -> bool:
        return self._session_id is not None

    def rotate_session(self) -> tuple[str | None, str]:
        """Switch this request to a fresh session id; returns (old, new)."""
        old = self._session_id
        self._session_id = secrets.token_urlsafe(24)
        self.session_is_new = True
        return old, self._session_id

    @property
    def existing_session_id(self) -> str | None:
        """The session id if this request has one, without creating it."""
        return self._session_id

    def user_id(self, connection: HTTPConnection) -> str | None:
        """The logged-in user, from beforeware, Starlette auth, or ``user_key``."""
        auth = connection.scope.get("auth")
        # Starlette's AuthenticationMiddleware keeps AuthCredentials (scopes,
        # no identity) there; the user itself is in scope["user"].
        if auth is not None and not isinstance(auth, AuthCredentials):
            return _user_id_from(auth)
        user = connection.scope.get("user")
        if user is not None and getattr(user, "is_authenticated", False):
            try:
                return str(user.identity)
            except NotImplementedError:
                return str(user.display_name)
        if self.runtime.user_key is not None:
            uid = self.runtime.user_key(connection)
            return None if uid is None else str(uid)
        return None


def _user_id_from(auth: Any) -> str:
    if isinstance(auth, str | int):
        return str(auth)
    if isinstance(auth, Mapping) and "id" in auth:
        return str(auth["id"])
    for attribute in ("id", "identity", "username"):
        value = getattr(auth, attribute, None)
        if isinstance(value, str | int):
            return str(value)
    raise TypeError(
        "scope['auth'] must be a user id (str or int), a mapping with 'id', "
        f"or an object with an id attribute; got {type(auth).__name__}"
    )


def context_of(connection: HTTPConnection) -> RequestContext:
    context = connection.scope.get(CONTEXT_KEY)
    if not isinstance(context, RequestContext):
        raise RuntimeError(
            "faststate needs its middleware: add app.add_middleware(FastStateMiddleware)"
        )
    return context
