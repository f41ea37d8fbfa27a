"""What the security suite shares: the app under attack, the oracle's tables,
JSON strategies and the checks every refusal must pass.

The suite proves the security properties of event endpoints against hostile
input.  Property-based tests (hypothesis) post random parameters and bodies to
events with typed parameters.  For every example: a 2xx only when the input is
valid for the annotations (pydantic decides, as the design says), and then the
state holds exactly the validated values and the patch brings the page there;
otherwise a 4xx with a short, clear message, never a 5xx, and every stored
instance byte-for-byte as it was (test_parameters.py, test_bodies.py).  Then:
nothing from the client picks a class, a type or an attribute
(test_reachability.py); ids and cookies reach only what the caller may reach
(test_isolation.py); failures log no private data (test_logs.py).

The fixtures ``vaulted``, ``any_vaulted`` and ``fresh`` are in conftest.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional

from fasthtml.common import FastHTML
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from pydantic import BaseModel, PrivateAttr, StringConstraints, TypeAdapter
from sqlmodel import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from faststate import (
    MemoryStore,
    ReactiveState,
    StateScope,
    event,
    live,
    signals,
    use_state,
)
from faststate._guards import MAX_JSON_DEPTH
from faststate._stores.codec import encode
from faststate.testing import DATASTAR_HEADERS, parse_sse

from ..apps import state_app, with_faststate

COOKIE = "faststate_session"
LIMIT = 1024 * 1024
PRIVATE_VALUE = "private-7f3a91-token"
EXCLUDED_VALUE = "excluded-2c8e44-note"
JSON_HEADERS = {**DATASTAR_HEADERS, "Content-Type": "application/json"}

PROPERTY = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI failures reproduce
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- the app under attack ----------------------------------------------------------


class Point(BaseModel):
    x: int
    y: int = 0
    tag: Literal["a", "b"] = "a"


Slug = Annotated[str, StringConstraints(min_length=1, max_length=16, pattern=r"^[a-z][a-z0-9-]*$")]
Color = Literal["red", "green", "blue"]


class Vault(ReactiveState):
    i: int = 0
    f: float = 0.0
    b: bool = False
    slug: str = "start"
    text: str = ""
    li: list[int] = Field(default_factory=list)
    d: dict[str, int] = Field(default_factory=dict)
    p: Point = Field(default_factory=lambda: Point(x=0))
    color: Color = "red"
    opt: Optional[int] = 7  # noqa: UP045 - the issue asks for Optional[...]
    note: str = Field(default=EXCLUDED_VALUE, exclude=True)
    _token: str = PrivateAttr(default=PRIVATE_VALUE)

    @event
    def set_i(self, value: int) -> None:
        self.i = value

    @event
    def set_f(self, value: float) -> None:
        self.f = value

    @event
    def set_b(self, value: bool) -> None:
        self.b = value

    @event
    def set_slug(self, value: Slug) -> None:
        self.slug = value

    @event
    def set_text(self, value: str) -> None:
        self.text = value

    @event
    def set_li(self, value: list[int]) -> None:
        self.li = value

    @event
    def set_d(self, value: dict[str, int]) -> None:
        self.d = value

    @event
    def set_p(self, value: Point) -> None:
        self.p = value

    @event
    def set_color(self, value: Color) -> None:
        self.color = value

    @event
    def set_opt(self, value: Optional[int] = None) -> None:  # noqa: UP045
        self.opt = value

    @event
    def configure(
        self,
        i: int,
        slug: Slug,
        li: list[int],
        p: Point,
        f: float = 0.5,
        b: bool = False,
        color: Color = "green",
        opt: Optional[int] = None,  # noqa: UP045
        d: dict[str, int] | None = None,
    ) -> None:
        self.i, self.slug, self.li, self.p = i, slug, li, p
        self.f, self.b, self.color, self.opt = f, b, color, opt
        if d is not None:
            self.d = d

    @event
    def add_i(self, value: int) -> None:
        self.i += value


class Bystander(ReactiveState):
    """Another GLOBAL instance: no event on Vault may touch it."""

    count: int = 0
    label: str = "untouched"

    @event
    def bump(self) -> None:
        self.count += 1


class Locker(ReactiveState):
    """A SESSION instance with server-only data."""

    items: int = 0
    hidden: str = Field(default=EXCLUDED_VALUE, exclude=True)
    _key: str = PrivateAttr(default=PRIVATE_VALUE)

    @event
    def add(self, amount: int = 1) -> None:
        self.items += amount


WATCHED: list[tuple[str, type[ReactiveState]]] = [
    ("global:Vault", Vault),
    ("global:Bystander", Bystander),
]


VAULT_STATES: dict[type[ReactiveState], StateScope] = {
    Vault: StateScope.GLOBAL,
    Bystander: StateScope.GLOBAL,
    Locker: StateScope.SESSION,
}


def vault_app(**options: Any) -> Starlette:
    def page(request: Request) -> JSONResponse:
        vault = use_state(request, Vault)
        use_state(request, Bystander)
        locker = use_state(request, Locker)
        return JSONResponse({"items": locker.items, **signals(vault), **live(request)})

    app = state_app(VAULT_STATES, max_body_size=LIMIT, **options)
    app.add_route("/", page)
    return app


def store_of(app: Starlette) -> MemoryStore:
    runtime = app.state.faststate_registry.runtime
    assert runtime is not None, "a page request sets the runtime up"
    store = runtime.store
    assert isinstance(store, MemoryStore)
    return store


def stored(app: Starlette, key: str, cls: type[ReactiveState]) -> ReactiveState:
    state = store_of(app).load_sync(key, cls)
    assert state is not None, key
    assert type(state) is cls
    return state


def dump(state: ReactiveState) -> str:
    """Everything the server keeps of an instance: public JSON, then excluded and private."""
    return state.model_dump_json() + "\n" + encode(state)


def snapshot(app: Starlette, keys: list[tuple[str, type[ReactiveState]]]) -> dict[str, str]:
    return {key: dump(stored(app, key, cls)) for key, cls in keys}


@dataclass
class Vaulted:
    app: Starlette
    client: TestClient
    keys: list[tuple[str, type[ReactiveState]]]

    def snapshot(self) -> dict[str, str]:
        return snapshot(self.app, self.keys)


def vault_fasthtml_app() -> FastHTML:
    """The same states on FastHTML, which parses bodies itself before the endpoint."""
    app = with_faststate(
        FastHTML(secret_key="fasthtml-secret", htmx=False, surreal=False),
        VAULT_STATES,
        max_body_size=LIMIT,
    )

    @app.route("/")
    def index(req: Request) -> JSONResponse:
        vault = use_state(req, Vault)
        use_state(req, Bystander)
        use_state(req, Locker)
        return JSONResponse(signals(vault))

    return app


@contextmanager
def serve(app: Starlette) -> Iterator[Vaulted]:
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/").status_code == 200
        session_id = client.cookies[COOKIE].split(".", 1)[0]
        yield Vaulted(app, client, [*WATCHED, (f"session:Locker:{session_id}", Locker)])


# --- the oracle's tables: each event's parameters, and what a body alone earns ---------
# (what a request binds to: bind_oracle in test_parameters.py)


REQUIRED: Any = object()


@dataclass(frozen=True)
class Param:
    name: str
    annotation: Any
    field: str
    default: Any = REQUIRED
    many: bool = False  # a list: takes every repeated query value

    @property
    def adapter(self) -> TypeAdapter[Any]:
        return _adapter(self.annotation)


_ADAPTERS: dict[str, TypeAdapter[Any]] = {}


def _adapter(annotation: Any) -> TypeAdapter[Any]:
    key = repr(annotation)
    if key not in _ADAPTERS:
        _ADAPTERS[key] = TypeAdapter(annotation)
    return _ADAPTERS[key]


SINGLE = {
    "set_i": Param("value", int, "i"),
    "set_f": Param("value", float, "f"),
    "set_b": Param("value", bool, "b"),
    "set_slug": Param("value", Slug, "slug"),
    "set_text": Param("value", str, "text"),
    "set_li": Param("value", list[int], "li", many=True),
    "set_d": Param("value", dict[str, int], "d"),
    "set_p": Param("value", Point, "p"),
    "set_color": Param("value", Color, "color"),
    "set_opt": Param("value", Optional[int], "opt", default=None),  # noqa: UP045
}


def container_depth(value: Any) -> int:
    """How deep JSON containers nest (a top-level object is 1; scalars add nothing)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in children)
    return deepest


def body_verdict(body: bytes) -> tuple[int | None, dict[str, Any]]:
    """The status a JSON body alone earns (None: acceptable) and its signals."""
    if len(body) > LIMIT:
        return 413, {}
    if not body.strip():
        return None, {}
    try:  # JSON text exchanged between systems is UTF-8 (RFC 8259, 8.1)
        data = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return 400, {}
    if not isinstance(data, dict):
        return 400, {}
    if container_depth(data) > MAX_JSON_DEPTH:
        return 400, {}
    return None, data


# --- JSON and text strategies ----------------------------------------------------------


class Raw(str):
    """JSON text written as is (numbers Python's json.dumps refuses to write)."""


def to_json(value: Any, ascii_only: bool = True) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        items = (
            f"{json.dumps(k, ensure_ascii=ascii_only)}:{to_json(v, ascii_only)}"
            for k, v in value.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(v, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def nest(value: Any, depth: int, use_list: bool) -> Any:
    for _ in range(depth):
        value = [value] if use_list else {"n": value}
    return value


# fmt: off
UNICODE_EDGES = [
    "\x00", "\t", "\x7f", "\x85", "\xa0", "\ufeff", "\u202e", "\u200d", "\ufffd", "\uffff",
    "\U0001f600", "\U0010ffff", "e\u0301", "\u0130", "\u00df", "\u0663", "\uff11\uff12",
]
INTERESTING = [
    "", " ", "0", "-0", "1", "-1", "+7", " 42 ", "1_000", "0x1f", "0o7", "1e3", "1.0", "1.5",
    "-2.5e-3", "nan", "NaN", "inf", "-inf", "Infinity", "true", "false", "True", "yes", "no",
    "on", "off", "t", "f", "2", "null", "None", "red", "green", "blue", "RED", "a", "b", "abc",
    "abc-1", "a" * 16, "a" * 17, "A", "-a", "[1,2]", "[]", "{}", '{"x": 1}', '{"a": 1}',
    "__class__", "model_config", "9" * 4300, "9" * 4301, "-" + "9" * 4300, "1" * 20,
    *UNICODE_EDGES,
]
# fmt: on


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(INTERESTING)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.text(max_size=8) | st.sampled_from(["x", "y", "tag"]), children, max_size=5
        )
    ),
    max_leaves=25,
)
deep_values = st.builds(nest, json_values, st.integers(0, 40), st.booleans())


# --- checks every refusal and every answer must pass ------------------------------------


def post_raw(
    client: TestClient, url: str, body: bytes, headers: dict[str, str] | None = None
) -> Any:
    return client.post(url, content=body, headers={**JSON_HEADERS, **(headers or {})})


def page_errors(response: Any) -> dict[str, str] | None:
    """The messages of an event refused on the page (a 200 stream patching only the
    instance's errors signal), or None for any other answer."""
    if response.status_code != 200:
        return None
    events = parse_sse(response.text)
    if len(events) != 1 or events[0].type != "datastar-patch-signals":
        return None
    (own,) = events[0].signals.values()
    if set(own) != {"_errors"} or not own["_errors"]:
        return None
    messages: dict[str, str] = json.loads(own["_errors"])
    return messages


def check_refusal(response: Any, before: dict[str, str], vaulted: Vaulted) -> None:
    """Refused: short and clear, nothing reflected, nothing changed.  Invalid values are
    shown on the page (a 200 patching only the errors signal); bad requests are a 4xx."""
    assert len(response.content) < 4096, "the answer must not echo the input"
    messages = page_errors(response)
    if messages is not None:
        assert messages and all(isinstance(m, str) and m for m in messages.values())
    else:
        assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
        assert "text/event-stream" not in response.headers.get("content-type", "")
        assert response.text.strip()
    assert vaulted.snapshot() == before


def strict_json(text: str) -> Any:
    """Parse as the browser's JSON.parse does: no NaN, no Infinity, no raw control characters."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def client_signals(text: str) -> list[Any]:
    """Signal patches as a Datastar client reads them (SSE lines end at CR or LF only)."""
    patches = []
    for sse in parse_sse(text):
        if "signals" not in sse.data:
            continue
        document = "\n".join(sse.data["signals"])
        try:
            patches.append(strict_json(document))
        except ValueError as exc:
            raise AssertionError(
                f"a client cannot parse this signal patch ({exc}): {document[:200]!r}"
            ) from None
    return patches


# --- a forged cookie (test_isolation.py, test_logs.py) ------------------------------------


def tampered(cookie: str) -> str:
    """The cookie with its signature's first character changed.

    Not the last: that one of a base64 signature holds padding bits, and some
    changes to it decode to the same bytes."""
    value, _, signature = cookie.rpartition(".")
    return f"{value}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
