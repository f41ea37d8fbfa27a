"""Nothing from the client picks a class, a type, a method or an attribute."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faststate.testing import fire

from .support import (
    EXCLUDED_VALUE,
    JSON_HEADERS,
    PRIVATE_VALUE,
    PROPERTY,
    SINGLE,
    Point,
    Vault,
    Vaulted,
    stored,
)

# --- nothing from the client selects a class, a type or an attribute ---------------------

# fmt: off
NOT_EVENTS = [
    "__class__", "__init__", "__dict__", "__setattr__", "__getattribute__", "__ft__",
    "model_config", "model_fields", "model_validate", "model_copy", "model_dump",
    "model_post_init", "dict", "copy", "json", "parse_obj", "_private", "_token",
    "_fs_binding", "id", "i", "text", "note", "p", "register_state", "use_state",
]
# fmt: on


@pytest.mark.parametrize("name", NOT_EVENTS)
def test_no_attribute_is_reachable_as_an_event(fresh: Vaulted, name: str) -> None:
    before = fresh.snapshot()
    for url in (f"/Vault/{name}", f"/Vault/{name}?value=1", f"/{name}/set_i?value=1"):
        result = fire(fresh.client, url, signals={"value": 1, "Vault": {"i": 99}})
        assert result.status_code == 404, url
    assert fresh.snapshot() == before


EVENT_NAMES = {*SINGLE, "configure", "add_i"}


@given(name=st.text(min_size=1, max_size=20).filter(lambda name: name not in EVENT_NAMES))
@settings(PROPERTY, max_examples=100)
def test_no_other_path_segment_reaches_an_event(vaulted: Vaulted, name: str) -> None:
    before = vaulted.snapshot()
    response = vaulted.client.post(
        f"/Vault/{quote(name, safe='')}?value=1",
        content=b"{}",
        headers=JSON_HEADERS,
        follow_redirects=False,
    )
    assert 300 <= response.status_code < 500, (response.status_code, response.text[:200])
    assert vaulted.snapshot() == before


HOSTILE_PARAMS: dict[str, Any] = {
    "__class__": "Bystander",
    "__dict__": {"i": 999, "_token": "stolen"},
    "model_config": {"extra": "allow", "frozen": True},
    "_token": "stolen",
    "_fs_binding": "stolen",
    "note": "overwritten",
    "i": 999,
    "count": 999,
    "id": "attacker-id",
    "text": "overwritten",
    "Vault": {"i": 999, "_token": "stolen", "__class__": "Bystander"},
}


@pytest.mark.parametrize("where", ["query", "body"])
def test_parameters_not_in_the_signature_are_ignored(fresh: Vaulted, where: str) -> None:
    vault = stored(fresh.app, "global:Vault", Vault)
    identity = vault.id
    bystander = fresh.snapshot()["global:Bystander"]
    if where == "query":
        scalars = {k: v for k, v in HOSTILE_PARAMS.items() if not isinstance(v, dict)}
        result = fire(fresh.client, "/Vault/set_slug", slug="x", value="abc", **scalars)
    else:
        result = fire(fresh.client, "/Vault/set_slug", signals={**HOSTILE_PARAMS, "value": "abc"})
    assert result.status_code == 200
    assert result.signals == {"Vault": {"slug": "abc"}}
    vault = stored(fresh.app, "global:Vault", Vault)
    assert type(vault) is Vault
    assert (vault.i, vault.text, vault.id) == (0, "", identity)  # type: ignore[attr-defined]
    assert vault.note == EXCLUDED_VALUE  # type: ignore[attr-defined]
    assert vault._token == PRIVATE_VALUE  # type: ignore[attr-defined]
    assert fresh.snapshot()["global:Bystander"] == bystander


def test_a_model_parameter_keeps_its_declared_type(fresh: Vaulted) -> None:
    value = {
        "x": 5,
        "__class__": "Bystander",
        "model_config": {"extra": "allow"},
        "__dict__": {"x": 1000},
        "__pydantic_extra__": {"evil": 1},
        "_private": "stolen",
        "evil": "kept?",
    }
    result = fire(fresh.client, "/Vault/set_p", signals={"value": value})
    assert result.status_code == 200
    point = stored(fresh.app, "global:Vault", Vault).p  # type: ignore[attr-defined]
    assert type(point) is Point
    assert point.model_dump() == {"x": 5, "y": 0, "tag": "a"}
    assert not hasattr(point, "evil")
