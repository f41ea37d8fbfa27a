"""Instance keys and addresses: built and parsed in one place, one key per instance."""

from __future__ import annotations

import pytest

from faststate import ReactiveState, StateConfig, StateScope
from faststate._address import Address, Site, site_of
from faststate._protocol import get_protocol
from faststate._registry import Registry, add_registration
from faststate._scopes import KeyParts, instance_key, parse_key
from faststate._state import place, placed_at, placement


class Doc(ReactiveState):
    title: str = ""


def _address(scope: StateScope, scope_id: str, session: str | None = None) -> Address:
    registration = add_registration(Registry(), Doc, StateConfig(scope=scope), prefix="/api")
    return Address.of(registration, scope_id, session, get_protocol("v1"), root_path="/app")


@pytest.mark.parametrize(
    ("scope", "scope_id", "session", "key"),
    [
        (StateScope.GLOBAL, "", None, "global:Doc"),
        (StateScope.SESSION, "s1", "s1", "session:Doc:s1"),
        (StateScope.USER, "alice:admin", None, "user:Doc:alice:admin"),
        (StateScope.COMPONENT, "side:bar", "s1", "component:Doc:s1:side:bar"),
        (StateScope.RECORD, "plan:2026", None, "record:Doc:plan:2026"),
    ],
)
def test_every_key_parses_back_to_what_built_it(
    scope: StateScope, scope_id: str, session: str | None, key: str
) -> None:
    assert instance_key(scope, "Doc", scope_id, session) == key
    assert parse_key(key) == KeyParts(scope, "Doc", session, scope_id)


@pytest.mark.parametrize(
    "key",
    ["", "Doc", "global:", "global:Doc:x", "session:Doc", "session:Doc:", "record:Doc:",
     "component:Doc::c", "component:Doc:s1:", "unbound:Doc", "tenant:Doc:1"],
)
def test_malformed_keys_parse_to_nothing(key: str) -> None:
    assert parse_key(key) is None


def test_an_address_carries_what_pages_and_urls_need() -> None:
    record = _address(StateScope.RECORD, "42")
    assert (record.key, record.namespace) == ("record:Doc:42", "Doc_42")
    assert record.url_prefix == "/app/api"
    assert record.client_param == ("record_id", "42")
    component = _address(StateScope.COMPONENT, "side", session="s1")
    assert component.client_param == ("component_id", "side")
    assert _address(StateScope.SESSION, "s1", "s1").client_param is None
    assert _address(StateScope.GLOBAL, "").namespace == "Doc"


@pytest.mark.parametrize(
    ("scope", "scope_id", "session"),
    [
        (StateScope.GLOBAL, "", None),
        (StateScope.SESSION, "s1", "s1"),
        (StateScope.COMPONENT, "side:bar", "s1"),
        (StateScope.RECORD, "a-b_c", None),
    ],
)
def test_a_placed_instance_gives_back_its_address(
    scope: StateScope, scope_id: str, session: str | None
) -> None:
    """An instance keeps its key and its class's site; the address rebuilt
    from them names the page's signals and URLs as the resolved one did."""
    address = _address(scope, scope_id, session)
    state = Doc()
    place(state, address.key, address.site)
    again = placement(state)
    assert isinstance(again, Address)
    assert (again.key, again.namespace, again.url_prefix, again.client_param) == (
        address.key,
        address.namespace,
        address.url_prefix,
        address.client_param,
    )
    assert again.registration is address.registration and again.protocol is address.protocol


def test_addresses_of_one_class_share_one_site_per_dialect_and_root_path() -> None:
    first = _address(StateScope.RECORD, "42")
    registration = first.registration
    again = Address.of(registration, "43", None, first.protocol, root_path="/app")
    assert again.site is first.site
    assert placed_at(_placed(first), first.key, again.site)
    assert not placed_at(_placed(first), again.key, again.site)
    elsewhere = Address.of(registration, "42", None, first.protocol, "/other")
    assert elsewhere.site is not first.site
    assert not placed_at(_placed(first), elsewhere.key, elsewhere.site)
    beta = Address.of(registration, "42", None, get_protocol("beta"), "/app")
    assert beta.site is not first.site and beta.protocol is get_protocol("beta")
    assert placement(Doc()) is None


def _placed(address: Address) -> Doc:
    state = Doc()
    place(state, address.key, address.site)
    return state


def test_namespaces_are_injective() -> None:
    """Two ids of one class never share signals on a page."""
    ids = ["a-b", "a_b", "a__b", "a_2d_b", "a.b", "a b", "ab", "a-_b", "a_-b", "é", "_", "__", "-"]
    spaces = {_address(StateScope.RECORD, rid).namespace for rid in ids}
    assert len(spaces) == len(ids)
    assert all(space.replace("_", "").isalnum() for space in spaces)


def test_a_site_remembers_addresses_up_to_its_bound() -> None:
    """Returning sessions reuse their address; a server seeing ever new sessions
    holds no more than ``Site.REMEMBERED`` of them, and every one is right."""
    registration = add_registration(Registry(), Doc, StateConfig(scope=StateScope.SESSION), "")
    protocol = get_protocol("v1")
    first = Address.of(registration, "s0", "s0", protocol)
    assert Address.of(registration, "s0", "s0", protocol) is first
    for number in range(Site.REMEMBERED + 10):
        address = Address.of(registration, f"s{number}", f"s{number}", protocol)
        assert (address.key, address.namespace) == (f"session:Doc:s{number}", "Doc")
        assert len(site_of(registration, protocol).addresses) <= Site.REMEMBERED
    again = Address.of(registration, "s0", "s0", protocol)
    assert again is not first and again.key == first.key
