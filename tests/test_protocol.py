"""Wire format of both Datastar dialects, byte for byte."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from datastar_py import ServerSentEventGenerator
from datastar_py.consts import ElementPatchMode
from fasthtml.common import Li, Ul
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from faststate import ReactiveState, event, on, use_state
from faststate._protocol import PATCH_MODES, dump_json, get_protocol

from .apps import state_app


class Todo(ReactiveState):
    title: str = ""
    done: bool = False

    @event
    def rename(self, title: str) -> None:
        self.title = title

    @event(selector="#list", mode="inner")
    def show(self) -> object:
        return Ul(Li("a"), Li("b"))

    @event(selector="#list", mode="replace")
    def swap(self) -> object:
        return '<ul id="list">\n<li>x</li>\n</ul>'

    @event(selector="#gone", mode="remove")
    def drop(self) -> object:
        return ""


def make_app(protocol: str) -> Starlette:
    async def page(request: Request) -> HTMLResponse:
        todo = use_state(request, Todo)
        attrs = on("click", todo.rename, title="x")
        return HTMLResponse(next(iter(attrs)) + "=" + attrs[next(iter(attrs))])

    return state_app({Todo: {}}, routes=[Route("/", page)], protocol=protocol)


HEADERS = {"Datastar-Request": "true", "Content-Type": "application/json"}


@pytest.fixture(params=["v1", "beta"])
def client(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    with TestClient(make_app(request.param)) as test_client:
        yield test_client


EXPECTED = {
    "v1": {
        "rename": 'event: datastar-patch-signals\ndata: signals {"Todo":{"title":"héllo"}}\n\n',
        "show": "event: datastar-patch-elements\ndata: mode inner\ndata: selector #list\n"
        "data: elements <ul><li>a</li><li>b</li></ul>\n\n",
        "swap": "event: datastar-patch-elements\ndata: mode replace\ndata: selector #list\n"
        'data: elements <ul id="list">\ndata: elements <li>x</li>\ndata: elements </ul>\n\n',
        "drop": "event: datastar-patch-elements\ndata: mode remove\ndata: selector #gone\n\n",
        "attr": 'data-on:click=@post("/Todo/rename?title=x", {"retry": "never", '
        '"filterSignals": {"exclude": '
        '(new RegExp("^(?!Todo\\\\._errors$|_faststatePage$)(?:(^|\\\\.)_|^Todo(\\\\.|$))"))}})',
    },
    "beta": {
        "rename": 'event: datastar-merge-signals\ndata: signals {"Todo":{"title":"héllo"}}\n\n',
        "show": "event: datastar-merge-fragments\ndata: selector #list\ndata: mergeMode inner\n"
        "data: fragments <ul><li>a</li><li>b</li></ul>\n\n",
        "swap": "event: datastar-merge-fragments\ndata: selector #list\ndata: mergeMode outer\n"
        'data: fragments <ul id="list">\ndata: fragments <li>x</li>\ndata: fragments </ul>\n\n',
        "drop": "event: datastar-remove-fragments\ndata: selector #gone\n\n",
        "attr": 'data-on-click=@post("/Todo/rename?title=x", '
        "{retryMaxCount: 0, includeLocal: true})",
    },
}


def protocol_of(client: TestClient) -> str:
    return "beta" if "data-on-click" in client.get("/").text else "v1"


@pytest.mark.parametrize("name", ["rename", "show", "swap", "drop"])
def test_event_bytes(client: TestClient, name: str) -> None:
    protocol = protocol_of(client)
    query = "?title=h%C3%A9llo" if name == "rename" else ""
    response = client.post(f"/Todo/{name}{query}", headers=HEADERS, content="{}")
    assert response.status_code == 200
    assert response.content.decode() == EXPECTED[protocol][name]


def test_action_attribute(client: TestClient) -> None:
    protocol = protocol_of(client)
    assert client.get("/").text == EXPECTED[protocol]["attr"]


def test_beta_null_and_morph() -> None:
    beta = get_protocol("beta")
    assert beta.patch_signals({"A": {"x": None}}) == (
        'event: datastar-merge-signals\ndata: signals {"A":{"x":null}}\n\n'
    )
    assert beta.patch_elements("<p id=a>x</p>") == (
        "event: datastar-merge-fragments\ndata: fragments <p id=a>x</p>\n\n"
    )
    assert beta.on_attribute("click") == "data-on-click"
    assert beta.init_attribute() == "data-on-load"


def test_v1_event_id_and_attributes() -> None:
    v1 = get_protocol("v1")
    assert v1.patch_signals({"A": 1}, event_id="7") == (
        'event: datastar-patch-signals\nid: 7\ndata: signals {"A":1}\n\n'
    )
    assert v1.on_attribute("click") == "data-on:click"
    assert v1.init_attribute() == "data-init"


@pytest.mark.parametrize(
    ("mode", "selector"),
    [(mode, selector) for mode in sorted(PATCH_MODES) for selector in (None, "#feed")
     if (mode, selector) != ("remove", None)],  # refused, below
)
@pytest.mark.parametrize("html", ["", "<li id=a>x</li>", "<li>one</li>\n<li>two</li>"])
def test_v1_element_patches_are_written_as_datastar_py_writes_them(
    mode: str, selector: str | None, html: str
) -> None:
    ours = get_protocol("v1").patch_elements(html, selector, mode, event_id="3")  # type: ignore[arg-type]
    if mode == "remove":
        theirs = ServerSentEventGenerator.remove_elements(selector or "", event_id="3")
    else:
        theirs = ServerSentEventGenerator.patch_elements(
            html, selector=selector, mode=ElementPatchMode(mode), event_id="3"
        )
    assert ours == theirs


@pytest.mark.parametrize(
    "signals",
    [
        {"A": {"count": 1}},
        {"A": {"text": "two\nlines\r\u2028\u2029\x85 é", "none": None, "list": [1.5, True]}},
        {"A_2d_b": {"nested": {"deep": {"x": ""}}}},
    ],
)
@pytest.mark.parametrize("event_id", [None, "", "7.12"])
def test_v1_signal_patches_are_written_as_datastar_py_writes_them(
    signals: dict[str, Any], event_id: str | None
) -> None:
    ours = get_protocol("v1").patch_signals(signals, event_id)
    theirs = ServerSentEventGenerator.patch_signals(dump_json(signals), event_id=event_id)
    assert ours == theirs
    assert len([line for line in ours.split("\n") if line.startswith("data: ")]) == 1


def test_v1_remove_without_selector_is_refused() -> None:
    with pytest.raises(ValueError, match="selector"):
        get_protocol("v1").patch_elements("", None, "remove")


def test_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValueError, match="v1"):
        get_protocol("v2")


@pytest.mark.parametrize(
    ("trigger", "v1", "beta"),
    [
        ("click", "data-on:click", "data-on-click"),
        ("click__debounce.300ms", "data-on:click__debounce.300ms", "data-on-click__debounce.300ms"),
        ("load", "data-init", "data-on-load"),
        ("init", "data-init", "data-on-load"),
        ("interval", "data-on-interval", "data-on-interval"),
        ("interval__duration.5s", "data-on-interval__duration.5s", "data-on-interval__duration.5s"),
        ("intersect__once", "data-on-intersect__once", "data-on-intersect__once"),
    ],
)
def test_datastar_triggers_are_spelled_as_each_client_expects(
    trigger: str, v1: str, beta: str
) -> None:
    """Datastar 1.0 has its own attributes for its triggers; ``data-on:interval``
    would wait for a DOM event that never comes (checked in Chromium too)."""
    assert get_protocol("v1").on_attribute(trigger) == v1
    assert get_protocol("beta").on_attribute(trigger) == beta
