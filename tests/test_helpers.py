"""Page helpers and __ft__ rendering, as a page would use them."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fasthtml.common import Button, Div, FastHTML, Span, to_xml
from sqlmodel import Field
from starlette.testclient import TestClient

from faststate import (
    ReactiveState,
    StateScope,
    action,
    event,
    on,
    ref,
    signal_name,
    signals,
    text,
    use_state,
)
from faststate.fasthtml import DATASTAR_BETA_SRC, DATASTAR_V1_SRC, FastStateHTML, datastar_script

from .apps import Counter, with_faststate


class Widget(ReactiveState):
    label: str = "w"
    hidden_note: str = Field(default="only-on-server", exclude=True)

    @event
    def relabel(self, label: str, loud: bool = False) -> None:
        self.label = label.upper() if loud else label


def make_app(protocol: str = "v1") -> FastHTML:
    app = with_faststate(
        FastHTML(),
        {Widget: {"scope": StateScope.COMPONENT, "prefix": "/api"}, Counter: {}},
        protocol=protocol,
    )

    @app.route("/")
    def index(req):  # type: ignore[no-untyped-def]
        widget = use_state(req, Widget, key="side-bar.1")
        counter = use_state(req, Counter)
        return Div(
            widget,
            counter,
            Span(**text(widget, "label"), id="label"),
            Span(ref(counter, "count"), id="ref"),
            Span(signal_name(widget), id="ns"),
            Button(**on("click", widget.relabel, label="x", loud=True), id="relabel"),
            Button(**on("click__debounce.200ms", counter.increment, amount=2), id="inc"),
            Div(action(counter.increment), id="action"),
            Div(**signals(counter), id="sig"),
        )

    return app


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(make_app()) as test_client:
        yield test_client


def test_namespace_of_component_is_escaped_to_safe_characters(client: TestClient) -> None:
    html = client.get("/").text
    assert '<span id="ns">Widget_side_2d_bar_2e_1</span>' in html
    assert 'data-text="$Widget_side_2d_bar_2e_1.label"' in html
    assert '<span id="ref">$Counter.count</span>' in html


def test_rendered_state_carries_public_signals_only(client: TestClient) -> None:
    html = client.get("/").text
    assert "only-on-server" not in html and "hidden_note" not in html
    assert '"Widget_side_2d_bar_2e_1":{"id":' in html.replace("&quot;", '"')


def test_action_url_carries_prefix_component_and_params(client: TestClient) -> None:
    html = client.get("/").text.replace("&quot;", '"').replace("&amp;", "&")
    assert '@post("/api/Widget/relabel?component_id=side-bar.1&label=x&loud=true"' in html
    assert 'data-on:click__debounce.200ms=\'@post("/Counter/increment?amount=2"' in html


def test_clicking_the_rendered_action_url_works(client: TestClient) -> None:
    from faststate.testing import fire

    client.get("/")
    result = fire(client, "/api/Widget/relabel?component_id=side-bar.1&label=x&loud=true")
    assert result.signals == {"Widget_side_2d_bar_2e_1": {"label": "X"}}


def test_helpers_follow_beta_protocol() -> None:
    with TestClient(make_app("beta")) as client:
        html = client.get("/").text
    assert "data-on-click" in html and "data-on:click" not in html
    assert "retryMaxCount: 0" in html


def test_ref_rejects_unknown_and_server_only_fields() -> None:
    widget = Widget()
    with pytest.raises(AttributeError):
        ref(widget, "nope")
    with pytest.raises(AttributeError):
        ref(widget, "hidden_note")


def test_action_rejects_non_event_methods() -> None:
    with pytest.raises(TypeError):
        action(Widget().model_dump)
    with pytest.raises(TypeError):
        action(print)


def test_unresolved_instance_uses_class_name() -> None:
    counter = Counter()
    assert signal_name(counter) == "Counter"
    assert text(counter, "count") == {"data-text": "$Counter.count"}
    payload = json.loads(signals(counter)["data-signals"])
    # with the errors the page will show, none yet
    assert payload == {"Counter": {"id": counter.id, "count": 0, "_errors": ""}}
    assert 'data-signals="' in to_xml(counter.__ft__()) or "data-signals='" in to_xml(
        counter.__ft__()
    )


def test_datastar_script_defaults_and_override() -> None:
    assert DATASTAR_V1_SRC in to_xml(datastar_script())
    assert DATASTAR_BETA_SRC in to_xml(datastar_script(protocol="beta"))
    tag = to_xml(datastar_script("/static/datastar.js"))
    assert 'src="/static/datastar.js"' in tag and 'type="module"' in tag


def test_fast_state_html_app_is_ready_to_use() -> None:
    app = FastStateHTML(faststate={"secret_key": "k", "protocol": "beta"})
    app.register_state(Counter)

    @app.route("/")
    def index(req):  # type: ignore[no-untyped-def]
        return Div(use_state(req, Counter), **on("click", use_state(req, Counter).increment))

    with TestClient(app) as client:
        html = client.get("/").text
        assert DATASTAR_BETA_SRC in html
        assert "htmx" not in html
        from faststate.testing import fire

        assert fire(client, "/Counter/increment").signals == {"Counter": {"count": 1}}


def test_fast_state_app_starlette() -> None:
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse

    from faststate import FastStateApp
    from faststate.testing import fire

    app = FastStateApp(faststate={"secret_key": "k"})
    app.register_state(Counter, scope="global")

    async def page(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(use_state(request, Counter).count))

    app.add_route("/", page)
    with TestClient(app) as client:
        fire(client, "/Counter/increment", amount=4)
        assert client.get("/").text == "4"
