"""The identity record of one resolved instance.

Whatever reaches an instance (a page's ``use_state``, an event, a live
stream, ``mutate``) ends with one ``Address``: the registered class, the id
its scope is keyed by, the store key and page namespace built from them, and
how the page's URLs reach it.  Instances carry theirs (``_state.place``).
"""

from __future__ import annotations

from dataclasses import dataclass

from faststate._protocol import Dialect
from faststate._registry import Registration
from faststate._scopes import CLIENT_PARAMS, StateScope, instance_key, namespace


@dataclass(frozen=True, slots=True, eq=False)
class Address:
    registration: Registration
    #: What the scope is keyed by: record, component, user or session id; "" for GLOBAL.
    scope_id: str
    #: The session a SESSION or COMPONENT instance belongs to.
    session: str | None
    key: str
    namespace: str
    protocol: Dialect
    #: ASGI root path of the request that resolved it (apps under a Mount or a proxy prefix).
    root_path: str = ""

    @classmethod
    def of(
        cls,
        registration: Registration,
        scope_id: str,
        session: str | None,
        protocol: Dialect,
        root_path: str = "",
    ) -> Address:
        scope = registration.config.scope
        name = registration.name
        return cls(
            registration,
            scope_id,
            session,
            instance_key(scope, name, scope_id, session),
            namespace(name, scope, scope_id),
            protocol,
            root_path,
        )

    @property
    def scope(self) -> StateScope:
        return self.registration.config.scope

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

