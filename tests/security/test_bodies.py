"""Raw bodies, content types and query bytes; then values the wire cannot carry.

Any body with any content type is answered without a 5xx, and a refusal
changes nothing; the bugs these properties led to each have a test of their
own.
"""

from __future__ import annotations

from typing import Any

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from faststate.testing import DATASTAR_HEADERS, fire

from .support import (
    LIMIT,
    PROPERTY,
    SINGLE,
    Vault,
    Vaulted,
    body_verdict,
    check_refusal,
    client_signals,
    deep_values,
    json_values,
    page_errors,
    post_raw,
    serve,
    stored,
    to_json,
    vault_fasthtml_app,
)

# --- raw bodies, content types, query bytes ------------------------------------------------

# fmt: off
CONTENT_TYPES = [
    None, "", "application/json", "application/json; charset=utf-8", "APPLICATION/JSON",
    " application/json ", "application/json;", "application/json; charset=utf-16",
    "application/x-www-form-urlencoded", "multipart/form-data",
    "multipart/form-data; boundary=xyz", "text/plain", "text/plain;charset=UTF-8",
    "application/xml", "text/html", "application/octet-stream", "application/json-patch+json",
    "application/jsonx", "application/*", "*/*", ";", "text/event-stream",
]
# fmt: on
content_types = st.sampled_from(CONTENT_TYPES) | st.from_regex(
    r"[a-z]{1,11}/[a-z0-9+.-]{1,12}(; ?[a-z]{1,8}=[a-z0-9-]{1,8})?", fullmatch=True
)


# fmt: off
ODD_BODIES = [
    b"", b" ", b"\n\t", b"null", b"[]", b"1", b'"s"', b"{", b"{}}", b'{"x":NaN}',
    b'{"x":1e999999}', b"\xef\xbb\xbf{}", b'{"x":"\\ud800"}', b'{"a":1,"a":2}', b"value=5",
    b'--xyz\r\nContent-Disposition: form-data; name="value"\r\n\r\n5\r\n--xyz--',
]
# fmt: on


def deep_text(depth: int) -> bytes:
    """An object holding ``depth`` nested arrays, written as text (no recursion here)."""
    return ('{"x":' + "[" * depth + "]" * depth + "}").encode()


raw_bodies = st.one_of(
    st.binary(max_size=2048),
    st.text(max_size=200).map(lambda t: t.encode("utf-8")),
    st.text(max_size=100).map(lambda t: t.encode("utf-16")),
    json_values.map(lambda v: to_json(v).encode()),
    deep_values.map(lambda v: to_json({"x": v}).encode()),
    st.builds(deep_text, st.integers(1, 200_000)),
    st.builds(lambda n: ('{"x":' + "9" * n + "}").encode(), st.integers(4000, 6000)),
    st.builds(lambda n: b'{"pad":"' + b"x" * n + b'"}', st.integers(LIMIT - 20, LIMIT - 5)),
    st.sampled_from(ODD_BODIES),
)


@given(
    body=raw_bodies,
    content_type=content_types,
    value=st.integers(-(10**6), 10**6),
)
@PROPERTY
def test_any_body_and_content_type_is_answered_without_5xx(
    any_vaulted: Vaulted, body: bytes, content_type: str | None, value: int
) -> None:
    """``value`` comes from the query: the body only decides whether the event runs."""
    vaulted = any_vaulted
    before = vaulted.snapshot()
    headers = dict(DATASTAR_HEADERS)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = vaulted.client.post(f"/Vault/set_i?value={value}", content=body, headers=headers)
    hypothesis.event(f"status {response.status_code}")
    assert response.status_code < 500, (response.status_code, response.text[:300])
    main = (content_type or "").split(";", 1)[0].strip().lower()
    if main in ("", "application/json"):
        status, _ = body_verdict(body)
        if status is not None:
            assert response.status_code == status, response.text[:300]
    elif main not in ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain"):
        assert response.status_code == 415
    if response.status_code >= 400:
        check_refusal(response, before, vaulted)
    else:
        assert response.status_code in (200, 204)
        assert stored(vaulted.app, "global:Vault", Vault).i == value
        after = vaulted.snapshot()
        assert {k: v for k, v in after.items() if k != "global:Vault"} == {
            k: v for k, v in before.items() if k != "global:Vault"
        }


@pytest.mark.parametrize("depth", [33, 500, 1_000, 100_000])
def test_deeply_nested_body_is_400_on_fasthtml_too(depth: int) -> None:
    """FastHTML parses a JSON body before the endpoint runs; nesting past the limit must
    still be a 400 there, not the RecursionError of FastHTML's parser (a 500)."""
    with serve(vault_fasthtml_app()) as vaulted:
        before = vaulted.snapshot()
        response = post_raw(vaulted.client, "/Vault/set_i?value=1", deep_text(depth))
        assert response.status_code == 400, (response.status_code, response.text[:100])
        assert vaulted.snapshot() == before


@given(
    raw=st.binary(min_size=1, max_size=64),
    duplicates=st.integers(1, 3),
    event_name=st.sampled_from(["set_i", "set_text", "set_li", "set_slug", "set_color"]),
)
@PROPERTY
def test_undecodable_query_bytes_are_validated_like_any_text(
    vaulted: Vaulted, raw: bytes, duplicates: int, event_name: str
) -> None:
    """Invalid UTF-8 in the query never reaches state undecoded, nor causes a 5xx."""
    before = vaulted.snapshot()
    encoded = "".join(f"%{byte:02X}" for byte in raw)
    url = f"/Vault/{event_name}?" + "&".join([f"value={encoded}"] * duplicates)
    response = post_raw(vaulted.client, url, b"{}")
    assert response.status_code == 200, (response.status_code, response.text[:300])
    if page_errors(response) is not None:
        check_refusal(response, before, vaulted)
        return
    text = raw.decode("utf-8", "replace")
    param = SINGLE[event_name]
    raw_value: Any = [text] * duplicates if param.many or duplicates > 1 else text
    expected = param.adapter.validate_python(raw_value)
    assert getattr(stored(vaulted.app, "global:Vault", Vault), param.field) == expected


# --- bugs the properties lead to: values the wire cannot carry ----------------------------


@pytest.mark.parametrize(
    "body",
    [b'{"value": "\\ud800"}', b'{"value": "a\\udfffb"}', b'{"value": "\xed\xa0\x80"}'],
    ids=["escaped high surrogate", "escaped low surrogate", "raw surrogate bytes"],
)
def test_lone_surrogate_in_a_string_parameter_is_refused(fresh: Vaulted, body: bytes) -> None:
    """JSON may spell a lone surrogate (``"\\ud800"``), Python's json.loads reads it, and
    pydantic's ``str`` accepts it; no UTF-8 response can carry it.  It must be refused
    (4xx) before it reaches state; stored, it breaks every later render of the instance."""
    before = fresh.snapshot()
    response = post_raw(fresh.client, "/Vault/set_text", body)
    assert response.status_code < 500, "lone surrogate: the server failed"
    assert 400 <= response.status_code < 500
    assert fresh.snapshot() == before
    assert fresh.client.get("/").status_code == 200


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\x85"], ids=["LS", "PS", "NEL"])
def test_signal_patch_survives_unicode_line_separators(fresh: Vaulted, char: str) -> None:
    """A text param with U+2028/U+2029/U+0085 is valid; the patch must still be one JSON
    document to a client that splits SSE lines at CR/LF only."""
    value = f"a{char}b"
    result = fire(fresh.client, "/Vault/set_text", signals={"value": value})
    assert result.status_code == 200
    assert client_signals(result.text) == [{"Vault": {"text": value}}]


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity", "1e400"])
def test_non_finite_float_never_reaches_the_wire_as_non_json(fresh: Vaulted, value: str) -> None:
    """``float`` validates "nan"/"inf"; the signal patch must still be JSON
    (JSON.parse refuses NaN and Infinity), or the value must be refused."""
    before = fresh.snapshot()
    result = fire(fresh.client, f"/Vault/set_f?value={value}")
    assert result.status_code < 500
    if result.status_code >= 400:
        assert fresh.snapshot() == before
        return
    assert client_signals(result.text), "the change was not sent"


def test_event_making_state_unsendable_is_rolled_back(fresh: Vaulted) -> None:
    """``add_i`` of two valid 4300-digit ints makes a 4301-digit int, which JSON encoding
    refuses (Python's int-to-str limit).  The event must then count as failed: an error
    answer and the instance as before, not a 500 after the change was saved and pushed."""
    big = "9" * 4300
    assert fire(fresh.client, f"/Vault/add_i?value={big}").status_code == 200
    result = fire(fresh.client, f"/Vault/add_i?value={big}")
    vault = stored(fresh.app, "global:Vault", Vault)
    if result.status_code >= 400:
        unchanged = vault.i == int(big)  # type: ignore[attr-defined]
        assert unchanged, f"answered {result.status_code}, yet the event's change was kept"
    else:
        assert client_signals(result.text)
    assert fresh.client.get("/").status_code == 200, "the page no longer renders"


def test_single_form_value_fills_a_list_parameter(fresh: Vaulted) -> None:
    """A list parameter takes one value from a form as it does from the query."""
    headers = {**DATASTAR_HEADERS, "Content-Type": "application/x-www-form-urlencoded"}
    by_query = fresh.client.post("/Vault/set_li?value=3", headers=headers)
    assert by_query.status_code == 200
    by_form = fresh.client.post("/Vault/set_li", content=b"value=4", headers=headers)
    assert by_form.status_code == 200, by_form.text
    assert stored(fresh.app, "global:Vault", Vault).li == [4]  # type: ignore[attr-defined]
