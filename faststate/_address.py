"""The identity record of one resolved instance.

Whatever reaches an instance (a page's ``use_state``, an event, a live
stream, ``mutate``) ends with one ``Address``: the registered class, the id
its scope is keyed by, the store key and page namespace built from them, and
how the page's URLs reach it.  Instances carry theirs (``_state.place``).
"""

from __future__ import annotations

from faststate._protocol import Dialect
from faststate._registry import Registration
from faststate._scopes import CLIENT_PARAMS, StateScope, instance_key, namespace, parse_key


class Address:
    """One resolved instance.  Made per request, so it is a plain slotted class:
    a frozen dataclass would cost a good part of an event's budget to build.

    Placed instances keep theirs while idle, so it holds nothing its key
    already says: the scope id is read back from the key when asked for.
    """

    __slots__ = ("key", "namespace", "protocol", "registration", "root_path")

    def __init__(
        self,
        registration: Registration,
        key: str,
        namespace: str,
        protocol: Dialect,
        root_path: str = "",
    ) -> None:
        self.registration = registration
        self.key = key
        self.namespace = namespace
        self.protocol = protocol
        #: ASGI root path of the request that resolved it (under a Mount or a proxy prefix).
        self.root_path = root_path

    @classmethod
    def of(
        cls,
        registration: Registration,
        scope_id: str,
        session: str | None,
        protocol: Dialect,
        root_path: str = "",
    ) -> Address:
        """The address of the instance ``scope_id`` names (and ``session``, for
        SESSION and COMPONENT scopes)."""
        scope = registration.config.scope
        name = registration.cls.__name__
        key = instance_key(scope, name, scope_id, session)
        space = namespace(name, scope, scope_id)
        return cls(registration, key, space, protocol, root_path)

    @property
    def scope_id(self) -> str:
        """What the scope is keyed by: record, component, user or session id; "" for GLOBAL."""
        parts = parse_key(self.key)
        return "" if parts is None else parts.scope_id

    @property
    def scope(self) -> StateScope:
        return self.registration.config.scope

    @property
    def presence(self) -> bool:
        """Whether the class was registered with ``presence``."""
        return self.registration.config.presence is not False

    @property
    def url_prefix(self) -> str:
        return self.root_path + self.registration.prefix

    @property
    def client_param(self) -> tuple[str, str] | None:
        """The query parameter event URLs carry: ``("record_id", "42")``."""
        name = CLIENT_PARAMS.get(self.registration.config.scope)
        return None if name is None else (name, self.scope_id)

    def same_place(self, other: object) -> bool:
        """Whether ``other`` names this instance the same way (no need to re-place it)."""
        return (
            isinstance(other, Address)
            and other.key == self.key
            and other.root_path == self.root_path
            and other.registration is self.registration
            and other.protocol is self.protocol
        )

