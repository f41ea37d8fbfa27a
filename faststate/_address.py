"""The identity record of one resolved instance.

Whatever reaches an instance (a page's ``use_state``, an event, a live
stream, ``mutate``) ends with one ``Address``: the registered class, the id
its scope is keyed by, the store key and page namespace built from them, and
how the page's URLs reach it.  Instances carry only their key and their
``Site``, what the addresses of their class share (``_state.place``), and
rebuild the address when asked.
"""

from __future__ import annotations

from typing import Final

from faststate._protocol import Dialect
from faststate._registry import Registration
from faststate._scopes import CLIENT_PARAMS, StateScope, instance_key, namespace, parse_key


class Site:
    """What the addresses of one registered class share, for one dialect and
    one root path.  The registration keeps one of each (``site_of``), so an
    idle instance holds a reference to it instead of an address of its own.
    """

    __slots__ = ("addresses", "fixed_namespace", "protocol", "registration", "root_path")

    #: Addresses a site remembers, by the ids that name them: a returning
    #: session's event finds its address instead of building its key, its
    #: namespace and the object again (~1 µs of a 30 µs event).
    REMEMBERED: Final = 2048

    def __init__(self, registration: Registration, protocol: Dialect, root_path: str) -> None:
        self.registration = registration
        self.protocol = protocol
        self.root_path = root_path
        #: The namespace of every instance, for scopes whose id the page does not carry.
        self.fixed_namespace: str | None = (
            None if registration.config.scope in CLIENT_PARAMS else registration.cls.__name__
        )
        self.addresses: dict[tuple[str, str | None], Address] = {}

    def address(self, scope_id: str, session: str | None) -> Address:
        """The address of the instance ``scope_id`` (and ``session``) names."""
        ids = (scope_id, session)
        address = self.addresses.get(ids)
        if address is None:
            registration = self.registration
            scope, name = registration.config.scope, registration.cls.__name__
            key = instance_key(scope, name, scope_id, session)
            address = Address(self, key, self.namespace_of(scope_id))
            addresses = self.addresses
            if len(addresses) >= self.REMEMBERED:
                # Full: start over.  One step, so that page handlers run in
                # threads (sync routes) can never see it half done.
                addresses.clear()
            addresses[ids] = address
        return address

    def namespace_of(self, scope_id: str) -> str:
        """The page namespace of the instance ``scope_id`` names."""
        if self.fixed_namespace is not None:
            return self.fixed_namespace
        registration = self.registration
        return namespace(registration.cls.__name__, registration.config.scope, scope_id)

    def at(self, key: str) -> Address:
        """The address of the instance stored under ``key``."""
        space = self.fixed_namespace
        if space is None:
            parts = parse_key(key)
            space = self.namespace_of("" if parts is None else parts.scope_id)
        return Address(self, key, space)


def site_of(registration: Registration, protocol: Dialect, root_path: str = "") -> Site:
    """The registration's site for ``protocol`` under ``root_path`` (made once).

    Root paths come from the server's configuration and mounts, not from
    requests, so there are only ever a few per registration.
    """
    # Nearly always the one site the registration has: checked before the table.
    site: Site | None = registration.last_site
    if site is not None and site.protocol is protocol and site.root_path == root_path:
        return site
    sites = registration.sites
    site = sites.get((protocol, root_path))
    if site is None:
        site = sites[protocol, root_path] = Site(registration, protocol, root_path)
    registration.last_site = site
    return site


class Address:
    """One resolved instance.  Made per request, so it is a plain slotted class:
    a frozen dataclass would cost a good part of an event's budget to build.
    The site's parts are copied in, because events read them often.
    """

    __slots__ = ("key", "namespace", "protocol", "registration", "root_path", "site")

    def __init__(self, site: Site, key: str, namespace: str) -> None:
        self.site = site
        self.key = key
        self.namespace = namespace
        self.registration = site.registration
        self.protocol = site.protocol
        #: ASGI root path of the request that resolved it (under a Mount or a proxy prefix).
        self.root_path = site.root_path

    @staticmethod
    def of(
        registration: Registration,
        scope_id: str,
        session: str | None,
        protocol: Dialect,
        root_path: str = "",
    ) -> Address:
        """The address of the instance ``scope_id`` names (and ``session``, for
        SESSION and COMPONENT scopes)."""
        return site_of(registration, protocol, root_path).address(scope_id, session)

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
