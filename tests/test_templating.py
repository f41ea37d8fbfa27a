"""faststate.templating: the page helpers as Jinja2 functions, and ``{{ state }}``."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fasthtml.common import Div, FastHTML, to_xml
from jinja2 import DictLoader, Environment
from sqlmodel import Field
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.testclient import TestClient

from faststate import (
    Bindable,
    ReactiveState,
    StateScope,
    action,
    bind,
    error,
    event,
    on,
    ref,
    signals,
    text,
    use_state,
)
from faststate.fasthtml import DATASTAR_BETA_SRC, DATASTAR_V1_SRC
from faststate.templating import attributes, install
from faststate.testing import fire

from .apps import state_app, with_faststate

TRICKY = 'say "hi" & <b>it\'s</b>'


class Note(ReactiveState):
    body: Bindable[str] = TRICKY
    secret: str = Field(default="server-only", exclude=True)

    @event
    def save(self, body: str, tag: str = "") -> Any:
        self.body = body
        # An event may answer with a rendered template: patched like elements.
        return ENV.get_template("body.html").render(note=self)


TEMPLATES = {
    "page.html": """<html><head>{{ datastar_script() }}</head>
<body {{ live(request) }}>
{{ note }}
<p id="text" {{ text(note, "body") }}></p>
<input id="bind" {{ bind(note, "body") }}>
<small id="error" {{ error(note, "body") }}></small>
<small id="general" {{ error(note) }}></small>
<button id="on" {{ on("click", note.save, body=tricky, tag="a&b") }}></button>
<div id="signals" {{ signals(note) }}></div>
<input id="action" data-on:keydown="evt.key === 'Enter' && {{ action(note.save, body=tricky) }}">
<span id="ref" data-text="{{ ref(note, 'body') }}"></span>
<span id="name">{{ signal_name(note) }}</span>
</body></html>""",
    "body.html": '<p id="text" {{ text(note, "body") }}>{{ note.body }}</p>',
}
ENV = Environment(loader=DictLoader(TEMPLATES), autoescape=True)
install(ENV)


class Elements(HTMLParser):
    """Each element's attributes by id (``note`` for the data-signals div), unescaped."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str | None]] = {}
        self.divs: list[dict[str, str | None]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "div" and "id" not in found:
            self.divs.append(found)
        if found.get("id"):
            self.by_id[str(found["id"])] = found


def make_app(protocol: str = "v1", seen: list[Note] | None = None) -> Any:
    """``/`` renders page.html; the instance it shows goes to ``seen``."""

    async def page(request: Request) -> Response:
        note = use_state(request, Note, key="n-1")
        if seen is not None:
            seen.append(note)
        html = ENV.get_template("page.html").render(request=request, note=note, tricky=TRICKY)
        return HTMLResponse(html)

    return state_app({Note: StateScope.COMPONENT}, routes=[Route("/", page)], protocol=protocol)


@pytest.mark.parametrize("protocol", ["v1", "beta"])
def test_each_helper_renders_the_attributes_it_returns(protocol: str) -> None:
    seen: list[Note] = []
    with TestClient(make_app(protocol, seen)) as client:
        html = client.get("/").text
    [state] = seen
    page = Elements(html)
    # Every value parses back to exactly what the Python helper returns.
    assert page.by_id["text"] == {"id": "text", **text(state, "body")}
    assert page.by_id["bind"] == {"id": "bind", **bind(state, "body")}
    assert page.by_id["error"] == {"id": "error", **error(state, "body")}
    assert page.by_id["general"] == {"id": "general", **error(state)}
    assert page.by_id["on"] == {"id": "on", **on("click", state.save, body=TRICKY, tag="a&b")}
    assert page.by_id["signals"]["data-signals"] == signals(state)["data-signals"]
    keydown = page.by_id["action"]["data-on:keydown"]
    assert keydown == f"evt.key === 'Enter' && {action(state.save, body=TRICKY)}"
    assert page.by_id["ref"]["data-text"] == ref(state, "body")
    assert '<span id="name">Note_n_2d_1</span>' in html
    # No value gets out of its attribute, and server-only fields stay on the server.
    assert TRICKY not in html
    assert "server-only" not in html


@pytest.mark.parametrize("protocol", ["v1", "beta"])
def test_a_state_renders_as_its_ft_element(protocol: str) -> None:
    seen: list[Note] = []
    with TestClient(make_app(protocol, seen)) as client:
        page = Elements(client.get("/").text)
    [state] = seen
    rendered = Elements(ENV.from_string("{{ note }}").render(note=state)).divs
    from_ft = Elements(to_xml(state.__ft__())).divs
    assert rendered == from_ft == [signals(state)]
    assert page.divs[0] == signals(state)
    assert "server-only" not in state.__html__()


def test_fasthtml_still_renders_a_state_through_ft() -> None:
    app = with_faststate(FastHTML(), {Note: StateScope.COMPONENT})

    @app.route("/")
    def index(req):  # type: ignore[no-untyped-def]
        note = use_state(req, Note, key="n-1")
        return Div(note, id="wrap")

    with TestClient(app) as client:
        html = client.get("/").text
    # FastHTML's own quoting (single quotes around JSON), as before __html__ existed.
    assert 'data-signals=\'{"Note_n_2d_1"' in html


def test_attributes_escape_quotes_ampersands_and_angle_brackets() -> None:
    markup = attributes({"data-text": TRICKY, "title": "a'b"})
    assert markup == (
        'data-text="say &#34;hi&#34; &amp; &lt;b&gt;it&#39;s&lt;/b&gt;" title="a&#39;b"'
    )
    assert Elements(f"<p id='x' {markup}>").by_id["x"] == {
        "id": "x",
        "data-text": TRICKY,
        "title": "a'b",
    }
    assert attributes({}) == ""


@pytest.mark.parametrize("name", ['a"b', "a b", "a>b", "a=b", "", "a/b"])
def test_attributes_refuse_what_is_not_an_attribute_name(name: str) -> None:
    with pytest.raises(ValueError, match="not an attribute name"):
        attributes({name: "x"})


@pytest.mark.parametrize("protocol", ["v1", "beta"])
def test_an_event_answers_with_a_rendered_template(protocol: str) -> None:
    with TestClient(make_app(protocol)) as client:
        client.get("/")
        result = fire(client, "/Note/save?component_id=n-1", body="<i>new</i> & more")
    assert result.status_code == 200
    [patch] = result.elements
    html = patch.html
    assert "&lt;i&gt;new&lt;/i&gt; &amp; more</p>" in html
    assert 'data-text="$Note_n_2d_1.body"' in html


@pytest.mark.parametrize(
    ("protocol", "src"), [("v1", DATASTAR_V1_SRC), ("beta", DATASTAR_BETA_SRC)]
)
def test_datastar_script_follows_the_middleware_protocol(protocol: str, src: str) -> None:
    with TestClient(make_app(protocol)) as client:
        html = client.get("/").text
    assert f'<script type="module" src="{src}"></script>' in html


def test_datastar_script_without_a_request_and_with_a_src() -> None:
    env = install(Environment(autoescape=True))
    assert DATASTAR_V1_SRC in env.from_string("{{ datastar_script() }}").render()
    beta = env.from_string("{{ datastar_script(protocol='beta') }}").render()
    assert DATASTAR_BETA_SRC in beta
    own = env.from_string("{{ datastar_script(src='/static/ds.js?a=1&b=2') }}").render()
    assert own == '<script type="module" src="/static/ds.js?a=1&amp;b=2"></script>'


def test_live_gives_the_stream_attributes_and_nothing_before_use_state(
    tmp_path: Path,
) -> None:
    (tmp_path / "live.html").write_text(
        '<div id="before" {{ live(request) }}></div>'
        "{% set note = use(request) %}"
        '<div id="after" {{ live(request) }}></div>'
    )
    templates = Jinja2Templates(directory=tmp_path)
    assert install(templates) is templates.env

    async def page(request: Request) -> Response:
        def use(request: Request) -> Note:
            return use_state(request, Note, key="n-1")

        return templates.TemplateResponse(request, "live.html", {"use": use})

    app = state_app({Note: StateScope.COMPONENT}, routes=[Route("/", page)])
    with TestClient(app) as client:
        found = Elements(client.get("/").text).by_id
    assert found["before"] == {"id": "before"}
    assert found["after"]["data-init"] is not None
    assert found["after"]["data-init"].startswith('@get("/_faststate/live?t=')
    assert found["after"]["data-signals"] is not None
