"""The per-request context that FastStateMiddleware puts into the ASGI scope."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from starlette.authentication import AuthCredentials
from starlette.requests import HTTPConnection

from faststate._runtime import Runtime

if TYPE_CHECKING:
    from faststate._address import Address

CONTEXT_KEY: Final = "faststate"


class RequestContext:
    """Session and resolution state of one request.

    The session id is created lazily: a request that never needs it gets no
    cookie, so static pages and bots do not mint sessions.
    """

    __slots__ = ("_page_id", "_session_id", "app", "resolved", "runtime", "session_is_new")

    def __init__(self, runtime: Runtime, app: Any, session_id: str | None) -> None:
        self.runtime = runtime
        self.app = app
        self._session_id = session_id
        self.session_is_new = False
        #: Instances this request resolved, by key, with the version it saw (for ``live``).
        self.resolved: dict[str, tuple[Address, int]] = {}
        self._page_id: str | None = None

    @property
    def page_id(self) -> str:
        """The id of the page this request renders: its live stream and its events
        name it, so that the stream skips what the page's own events answered."""
        if self._page_id is None:
            self._page_id = secrets.token_urlsafe(12)
        return self._page_id

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
