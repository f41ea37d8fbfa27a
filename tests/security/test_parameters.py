"""Typed event parameters against random requests (hypothesis).

For every example: a 2xx only when the input is valid for the annotations
(pydantic decides, as the design says), and then the state holds exactly the
validated values and the patch brings the page there; otherwise a 4xx with a
short, clear message, never a 5xx, and every stored instance byte-for-byte as
it was.  The oracle below says what a request binds to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import urlencode

import hypothesis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from faststate._state import public_state
from faststate._stores.codec import encode
from faststate.testing import apply_patch

from .support import (
    INTERESTING,
    PROPERTY,
    REQUIRED,
    SINGLE,
    Color,
    Param,
    Point,
    Raw,
    Slug,
    Vault,
    Vaulted,
    _adapter,
    body_verdict,
    check_refusal,
    client_signals,
    deep_values,
    json_values,
    page_errors,
    post_raw,
    stored,
    to_json,
)

# --- the oracle: what the design says a request binds to ------------------------------


CONFIGURE = [
    Param("i", int, "i"),
    Param("slug", Slug, "slug"),
    Param("li", list[int], "li", many=True),
    Param("p", Point, "p"),
    Param("f", float, "f", default=0.5),
    Param("b", bool, "b", default=False),
    Param("color", Color, "color", default="green"),
    Param("opt", Optional[int], "opt", default=None),  # noqa: UP045
    Param("d", dict[str, int] | None, "d", default=None),
]


def bind_oracle(
    params: list[Param], query: list[tuple[str, str]], body: dict[str, Any]
) -> tuple[dict[str, Any], set[str]]:
    """Arguments (query, then body, then default; pydantic-validated) or the bad names."""
    values: dict[str, Any] = {}
    bad: set[str] = set()
    for param in params:
        given_values = [value for name, value in query if name == param.name]
        if given_values:
            raw = given_values if param.many or len(given_values) > 1 else given_values[0]
        elif param.name in body:
            raw = body[param.name]
        elif param.default is not REQUIRED:
            values[param.field] = param.default
            continue
        else:
            bad.add(param.name)
            continue
        try:
            values[param.field] = param.adapter.validate_python(raw)
        except ValidationError:
            bad.add(param.name)
    return values, bad


# --- strategies of parameter values --------------------------------------------------------


def big_number(sign: str, digits: str, times: int) -> Raw:
    """A JSON integer of up to 6,000 digits (Python reads at most 4,300)."""
    return Raw(sign + ((digits * times)[:6000].lstrip("0") or "0"))


huge_digits = st.builds(
    big_number,
    st.sampled_from(["", "-"]),
    st.text("0123456789", min_size=1, max_size=8),
    st.integers(300, 1200),
)
huge_text = st.builds(  # up to ~200,000 characters
    lambda unit, times: unit * times,
    st.text(min_size=1, max_size=5),
    st.integers(1_000, 40_000),
)


def valid_json_for(annotation: Any) -> st.SearchStrategy[Any]:
    """Values of the right type, so that valid requests are common too."""
    points = st.fixed_dictionaries(
        {"x": st.integers()},
        optional={"y": st.integers(-5, 5), "tag": st.sampled_from(["a", "b"])},
    )
    table: dict[str, st.SearchStrategy[Any]] = {
        "int": st.integers(),
        "float": st.floats(allow_nan=False, allow_infinity=False),
        "bool": st.booleans(),
        "str": st.text(max_size=50),
        "slug": st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True),
        "list": st.lists(st.integers(), max_size=6),
        "dict": st.dictionaries(st.text(max_size=6), st.integers(), max_size=4),
        "point": points,
        "color": st.sampled_from(["red", "green", "blue"]),
        "optional": st.none() | st.integers(),
    }
    return table[_kind(annotation)]


def valid_query_for(annotation: Any) -> st.SearchStrategy[str]:
    table: dict[str, st.SearchStrategy[str]] = {
        "int": st.integers().map(str),
        "float": st.floats(allow_nan=False, allow_infinity=False).map(repr),
        "bool": st.sampled_from(["true", "false", "1", "0", "yes", "off"]),
        "str": st.text(max_size=50),
        "slug": st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True),
        "list": st.integers().map(str),
        "dict": st.just("{}"),
        "point": st.just('{"x": 1}'),
        "color": st.sampled_from(["red", "green", "blue"]),
        "optional": st.integers().map(str),
    }
    return table[_kind(annotation)]


def _kind(annotation: Any) -> str:
    names = {
        repr(int): "int",
        repr(float): "float",
        repr(bool): "bool",
        repr(str): "str",
        repr(Slug): "slug",
        repr(list[int]): "list",
        repr(dict[str, int]): "dict",
        repr(dict[str, int] | None): "dict",
        repr(Point): "point",
        repr(Color): "color",
        repr(Optional[int]): "optional",  # noqa: UP045
    }
    return names[repr(annotation)]


def body_values_for(annotation: Any) -> st.SearchStrategy[Any]:
    return st.one_of(
        valid_json_for(annotation),
        json_values,
        deep_values,
        huge_digits,
        huge_text,
    )


# URLs are bounded (the test client refuses more than 64 kB, servers less): long
# query values are shorter than long body values.
long_query_text = st.builds(
    lambda unit, times: unit * times,
    st.text("abcxyz019-_.~", min_size=1, max_size=5),
    st.integers(1_000, 3_000),
)


def query_values_for(annotation: Any) -> st.SearchStrategy[str]:
    return st.one_of(
        valid_query_for(annotation),
        st.text(max_size=40),
        st.sampled_from(INTERESTING),
        long_query_text,
    )


# fmt: off
NOISE_NAMES = [
    "__class__", "__dict__", "__init__", "__setattr__", "model_config", "model_fields",
    "_token", "_fs_binding", "_fs_version", "note", "i", "f", "b", "text", "slug", "li", "d",
    "p", "color", "opt", "id", "count", "label", "Vault", "Bystander", "Locker",
    "component_id", "record_id", "datastar", "__proto__", "constructor",
]
# fmt: on
noise_names = st.sampled_from(NOISE_NAMES) | st.text(min_size=1, max_size=12)
query_noise = st.lists(st.tuples(noise_names, st.text(max_size=20)), max_size=4)
body_noise = st.dictionaries(noise_names, json_values, max_size=4)


@dataclass
class Source:
    """Where one parameter comes from in a request."""

    query: list[str]
    body: Any  # ABSENT when not in the body


ABSENT: Any = object()


def any_sources_for(param: Param) -> st.SearchStrategy[Source]:
    query = st.lists(query_values_for(param.annotation), min_size=1, max_size=3)
    body = body_values_for(param.annotation)
    return st.one_of(
        st.builds(Source, st.just([]), st.just(ABSENT)),
        st.builds(Source, query, st.just(ABSENT)),
        st.builds(Source, st.just([]), body),
        st.builds(Source, query, body),
    )


def valid_sources_for(param: Param) -> st.SearchStrategy[Source]:
    """Sources that bind: so that accepted requests are as common as refused ones."""
    options = [st.builds(Source, st.just([]), valid_json_for(param.annotation))]
    kind = _kind(param.annotation)
    if kind not in ("dict", "point"):  # no query string is a dict or a model
        count = 3 if param.many else 1
        query = st.lists(valid_query_for(param.annotation), min_size=1, max_size=count)
        options.append(st.builds(Source, query, st.just(ABSENT) | valid_json_for(param.annotation)))
    if param.default is not REQUIRED:
        options.append(st.just(Source([], ABSENT)))
    return st.one_of(options)


def sources_for(param: Param) -> st.SearchStrategy[Source]:
    return valid_sources_for(param) | any_sources_for(param)


# --- running one example and checking every invariant ------------------------------------


def build(
    params: list[Param],
    sources: dict[str, Source],
    q_noise: list[tuple[str, str]],
    b_noise: dict[str, Any],
    ascii_only: bool,
) -> tuple[list[tuple[str, str]], bytes]:
    query = list(q_noise)
    body = dict(b_noise)
    for param in params:
        source = sources[param.name]
        query.extend((param.name, value) for value in source.query)
        if source.body is not ABSENT:
            body[param.name] = source.body
    return query, to_json(body, ascii_only).encode("utf-8", "surrogatepass")


def same_json(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def check_accepted(
    response: Any,
    before: dict[str, str],
    page_before: dict[str, Any],
    expected: dict[str, Any],
    vaulted: Vaulted,
) -> None:
    """A 2xx: the stored Vault holds exactly the validated values; nothing else moved;
    the patch takes the page from what it showed to the new public state."""
    assert response.status_code in (200, 204), (response.status_code, response.text[:300])
    after = vaulted.snapshot()
    for key, text in before.items():
        if key != "global:Vault":
            assert after[key] == text, f"{key} changed"
    vault = stored(vaulted.app, "global:Vault", Vault)
    kept_before = json.loads(before["global:Vault"].split("\n", 1)[1])
    kept_now = json.loads(encode(vault))
    for field, value in expected.items():
        annotation = Vault.__pydantic_fields__[field].annotation
        kept_before["fields"][field] = _adapter(annotation).dump_python(value, mode="json")
    assert same_json(kept_now, kept_before)
    assert type(vault.p) is Point
    page_now = {"Vault": public_state(vault)}
    view = page_before
    for patch in client_signals(response.text):
        view = apply_patch(view, patch)
    assert same_json(view, page_now)


def run_example(
    vaulted: Vaulted,
    event_name: str,
    params: list[Param],
    query: list[tuple[str, str]],
    body: bytes,
) -> None:
    before = vaulted.snapshot()
    page_before = {"Vault": public_state(stored(vaulted.app, "global:Vault", Vault))}
    page_before = json.loads(json.dumps(page_before))
    url = f"/Vault/{event_name}"
    if query:
        url += "?" + urlencode(query)
    response = post_raw(vaulted.client, url, body)
    hypothesis.event(f"status {response.status_code}")
    assert response.status_code < 500, (response.status_code, response.text[:300])
    status, sent = body_verdict(body)
    if status is not None:
        assert response.status_code == status, response.text[:300]
        check_refusal(response, before, vaulted)
        return
    expected, bad = bind_oracle(params, query, sent)
    if bad:
        messages = page_errors(response)
        assert messages is not None, (bad, response.status_code, response.text[:300])
        assert {path.split(".")[0] for path in messages} == bad
        check_refusal(response, before, vaulted)
        return
    if event_name == "configure" and expected.get("d") is None:
        expected.pop("d")
    check_accepted(response, before, page_before, expected, vaulted)


@st.composite
def single_requests(draw: st.DrawFn, event_name: str) -> tuple[list[tuple[str, str]], bytes]:
    param = SINGLE[event_name]
    source = draw(sources_for(param))
    return build(
        [param], {param.name: source}, draw(query_noise), draw(body_noise), draw(st.booleans())
    )


@pytest.mark.parametrize("event_name", list(SINGLE))
@given(data=st.data())
@PROPERTY
def test_typed_parameter_accepts_exactly_what_validates(
    vaulted: Vaulted, event_name: str, data: st.DataObject
) -> None:
    query, body = data.draw(single_requests(event_name))
    run_example(vaulted, event_name, [SINGLE[event_name]], query, body)


@st.composite
def configure_requests(draw: st.DrawFn) -> tuple[list[tuple[str, str]], bytes]:
    """Mostly valid parameters, with up to three of them drawn from anything."""
    names = [p.name for p in CONFIGURE]
    broken = draw(st.sets(st.sampled_from(names), max_size=3))
    sources = {
        p.name: draw(any_sources_for(p) if p.name in broken else valid_sources_for(p))
        for p in CONFIGURE
    }
    query_noise_ = [(k, v) for k, v in draw(query_noise) if k not in names]
    body_noise_ = {k: v for k, v in draw(body_noise).items() if k not in names}
    return build(CONFIGURE, sources, query_noise_, body_noise_, draw(st.booleans()))


@given(request=configure_requests())
@settings(PROPERTY, max_examples=200)
def test_many_parameters_bind_all_or_nothing(
    vaulted: Vaulted, request: tuple[list[tuple[str, str]], bytes]
) -> None:
    query, body = request
    run_example(vaulted, "configure", CONFIGURE, query, body)
