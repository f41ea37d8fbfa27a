"""Smoke tests of the browser infrastructure and of the two real Datastar clients.

No faststate here: a tiny Starlette app answers Datastar SSE (v1 formatted with
datastar-py, beta written by hand) and headless Chromium runs the real client
(v1 = Datastar v1.0.1 as shipped in the starhtml 0.7.0 wheel, beta =
@starfederation/datastar 1.0.0-beta.11), served from the local cache.

Client behaviours observed in the real browser (each pinned by a test below):

a. Signal patched to null
   - v1: JSON-merge-patch semantics: ``{"count": null}`` DELETES the signal
     (``{"S": {"name": null}}`` deletes ``S.name``, leaving ``S == {}``). The
     ``data-text`` element is NOT updated: it keeps showing the old value ("5" /
     "x"), and no console error is logged. A later non-null patch
     (``{"count": 7}`` / ``{"S": {"name": "bob"}}``) re-creates the signal but
     the existing ``data-text`` binding stays stale (still "5" / "x"); only
     elements bound afterwards see the new value. The deleted signal is absent
     from the next request body. => a v1 server must never send null for a
     signal that is bound in the page.
   - beta: the value is set to null: the text shows "null" (flat and nested),
     no console error, and a later patch brings the value back ("7" / "bob").
     The next request body carries ``"count": null``.
b. Nested namespace ``{"CounterState": {"count": 0}}`` with
   ``data-text="$CounterState.count"``: case survives in both clients; the patch
   ``{"CounterState": {"count": 1}}`` updates the text to "1", and request bodies
   carry ``{"CounterState": {"count": ...}}``.
c. Retry options
   - v1: ``@post('/inc', {"retry": "never"})`` parses and works. A 500 answer is
     NOT re-sent, with or without the option (default ``retry: "auto"`` only
     retries network errors; ``retry: "error"`` would re-send on 4xx/5xx,
     forever, every retryInterval ms).
   - beta: ``@post('/inc', {"retryMaxCount": 0})`` parses and works. A 500 is
     NOT re-sent, with or without the option (beta only retries thrown fetch
     errors).
   In both, the only console error is Chromium's own network log line
   "Failed to load resource: the server responded with a status of 500 ...".
d. ``datastar_py.action_generator.post(url, exclude_signals=...)`` produces
   ``@post("/echo", {"filterSignals": {"exclude":
   (new RegExp("(^|\\.)_|^CounterState(\\.|$)"))}})`` (one line).
   - v1: parses; ``CounterState`` (and ``_``-prefixed signals) are excluded from
     the body, ``CounterStateX``/``Other``/``title`` are kept. Without options
     v1 sends everything except ``_``-prefixed signals (the option REPLACES that
     default exclusion, hence the ``(^|\\.)_`` part).
   - beta: the option parses but is ignored (beta has no filterSignals): the
     body carries every non-``_`` signal, ``CounterState`` included.
e. ``datastar-patch-elements`` (v1) / ``datastar-merge-fragments`` (beta) with
   ``<ul id="items"><li>a</li></ul>`` replaces the empty ``<ul id="items">``: the
   ``<li>a</li>`` appears (both).
f. ``<input data-bind:title>`` (v1) / ``<input data-bind-title>`` (beta): after
   typing "hello" the POST body is ``{"title": "hello"}`` (top-level key, both).

Every POST carries ``Datastar-Request: true`` and ``Content-Type: application/json``
with the signals as a JSON body, in both clients.
"""

from __future__ import annotations

import html
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from datastar_py import ServerSentEventGenerator as SSE
from datastar_py import action_generator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

# --------------------------------------------------------------------------- #
# the app under test
# --------------------------------------------------------------------------- #

CDN = {
    "v1": "https://cdn.jsdelivr.net/gh/starfederation/datastar@v1.0.1/bundles/datastar.js",
    "beta": "https://cdn.jsdelivr.net/gh/starfederation/datastar@v1.0.0-beta.11/bundles/datastar.js",
}

# Named signal patches a page asks for with @post('/signals/<name>'); "seq" lets
# the test know the patch has been applied.
SIGNAL_PATCHES: dict[str, dict[str, Any]] = {
    "count-null": {"count": None, "seq": 1},
    "count-7": {"count": 7, "seq": 2},
    "name-null": {"S": {"name": None}, "seq": 1},
    "name-bob": {"S": {"name": "bob"}, "seq": 2},
    "cs-1": {"CounterState": {"count": 1}},
}

ITEMS_FRAGMENT = '<ul id="items"><li>a</li></ul>'
EXCLUDE_REGEX = r"(^|\.)_|^CounterState(\.|$)"
EXCLUDE_EXPR = action_generator.post("/echo", exclude_signals=EXCLUDE_REGEX)
RETRY_OPTION = {"v1": '{"retry": "never"}', "beta": '{"retryMaxCount": 0}'}


def signals_event(protocol: str, signals: dict[str, Any]) -> str:
    if protocol == "v1":
        return str(SSE.patch_signals(signals))
    data = json.dumps(signals, separators=(",", ":"))
    return f"event: datastar-merge-signals\ndata: signals {data}\n\n"


def fragment_event(protocol: str, fragment: str) -> str:
    if protocol == "v1":
        return str(SSE.patch_elements(fragment))
    return f"event: datastar-merge-fragments\ndata: fragments {fragment}\n\n"


def sse(body: str) -> Response:
    return Response(body, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def attr(protocol: str, plugin: str, key: str) -> str:
    """Keyed attribute name: ``data-on:click`` (v1) / ``data-on-click`` (beta)."""
    return f"data-{plugin}{':' if protocol == 'v1' else '-'}{key}"


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: str

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class DatastarTestApp:
    protocol: str
    requests: list[RecordedRequest] = field(default_factory=list)
    count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.count = 0

    def posts(self, path: str) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def wait_posts(
        self, page: Any, path: str, n: int, timeout: float = 5.0
    ) -> list[RecordedRequest]:
        """Wait until ``n`` requests to ``path`` arrived; waits via ``page`` so that
        Playwright keeps processing events (console errors) meanwhile."""
        deadline = time.monotonic() + timeout
        while len(self.posts(path)) < n and time.monotonic() < deadline:
            page.wait_for_timeout(20)
        return self.posts(path)

    def button(self, id_: str, expr: str) -> str:
        on_click = attr(self.protocol, "on", "click")
        return f'<button id="{id_}" {on_click}="{html.escape(expr, quote=True)}">{id_}</button>'

    def html_page(self, body: str) -> HTMLResponse:
        return HTMLResponse(
            "<!doctype html><html><head><meta charset='utf-8'><title>datastar client test</title>"
            "<link rel='icon' href='data:,'>"
            f"<script type='module' src='{CDN[self.protocol]}'></script></head>"
            f"<body>{body}</body></html>"
        )

    def pages(self) -> dict[str, str]:
        btn = self.button
        opt = RETRY_OPTION[self.protocol]
        return {
            "counter": (
                """<div data-signals='{"count": 0}'>"""
                '<span id="count" data-text="$count"></span>'
                + btn("inc", "@post('/inc')")
                + "</div>"
            ),
            "null": (
                """<div data-signals='{"count": 5, "seq": 0}'>"""
                '<span id="out" data-text="$count"></span>|<span id="seq" data-text="$seq"></span>'
                + btn("null", "@post('/signals/count-null')")
                + btn("value", "@post('/signals/count-7')")
                + "</div>"
            ),
            "nested-null": (
                """<div data-signals='{"S": {"name": "x"}, "seq": 0}'>"""
                '<span id="out" data-text="$S.name"></span>|<span id="seq" data-text="$seq"></span>'
                + btn("null", "@post('/signals/name-null')")
                + btn("value", "@post('/signals/name-bob')")
                + "</div>"
            ),
            "namespace": (
                """<div data-signals='{"CounterState": {"count": 0}}'>"""
                '<span id="out" data-text="$CounterState.count"></span>'
                + btn("go", "@post('/signals/cs-1')")
                + "</div>"
            ),
            "retry": (
                """<div data-signals='{"count": 0}'>"""
                '<span id="count" data-text="$count"></span>'
                + btn("ok-opt", f"@post('/inc', {opt})")
                + btn("fail-plain", "@post('/fail/plain')")
                + btn("fail-opt", f"@post('/fail/opt', {opt})")
                # positive control (v1 only): proves the wait is long enough to see re-sends
                + btn(
                    "fail-retry",
                    """@post('/fail/retry', {"retry": "error", "retryInterval": 200})""",
                )
                + "</div>"
            ),
            "exclude": (
                """<div data-signals='{"CounterState": {"count": 3}, "title": "t", """
                """"_local": 1, "Other": {"x": 1}, "CounterStateX": 2}'>"""
                + btn("filtered", EXCLUDE_EXPR)
                + btn("plain", "@post('/echo')")
                + "</div>"
            ),
            "fragment": '<ul id="items"></ul>' + btn("go", "@post('/fragment')"),
            "bind": f'<input id="title" {attr(self.protocol, "bind", "title")}>'
            + btn("go", "@post('/echo')"),
        }

    def build(self) -> Starlette:
        pages = self.pages()

        async def record(request: Request) -> None:
            body = (await request.body()).decode()
            headers = {k.lower(): v for k, v in request.headers.items()}
            with self.lock:
                self.requests.append(RecordedRequest(request.url.path, headers, body))

        async def index(request: Request) -> Response:
            return self.html_page(pages["counter"])

        async def page(request: Request) -> Response:
            name = request.path_params["name"]
            if name not in pages:
                return PlainTextResponse("no such page", status_code=404)
            return self.html_page(pages[name])

        async def inc(request: Request) -> Response:
            await record(request)
            with self.lock:
                self.count += 1
                n = self.count
            return sse(signals_event(self.protocol, {"count": n}))

        async def signals(request: Request) -> Response:
            await record(request)
            return sse(signals_event(self.protocol, SIGNAL_PATCHES[request.path_params["name"]]))

        async def fail(request: Request) -> Response:
            await record(request)
            return PlainTextResponse("boom", status_code=500)

        async def echo(request: Request) -> Response:
            await record(request)
            return sse("")

        async def fragment(request: Request) -> Response:
            await record(request)
            return sse(fragment_event(self.protocol, ITEMS_FRAGMENT))

        return Starlette(
            routes=[
                Route("/", index),
                Route("/page/{name}", page),
                Route("/inc", inc, methods=["POST"]),
                Route("/signals/{name}", signals, methods=["POST"]),
                Route("/fail/{name}", fail, methods=["POST"]),
                Route("/echo", echo, methods=["POST"]),
                Route("/fragment", fragment, methods=["POST"]),
            ]
        )


# --------------------------------------------------------------------------- #
# fixtures
# --------------------------------------------------------------------------- #


@dataclass
class Site:
    protocol: str
    app: DatastarTestApp
    base_url: str


@pytest.fixture(scope="module", params=["v1", "beta"])
def site(request: pytest.FixtureRequest, serve) -> Site:
    app = DatastarTestApp(request.param)
    return Site(request.param, app, serve(app.build()))


@pytest.fixture
def open_page(site: Site, new_context, page_errors):
    """``open_page(path) -> (page, errors)`` in a fresh context; resets the app log."""
    site.app.reset()

    def _open(path: str):
        page = new_context(site.protocol).new_page()
        errors = page_errors(page)
        page.goto(site.base_url + path)  # waits for "load": the deferred module has run
        return page, errors

    return _open


# --------------------------------------------------------------------------- #
# tests
# --------------------------------------------------------------------------- #


def test_counter_roundtrip(site: Site, open_page) -> None:
    from playwright.sync_api import expect

    page, errors = open_page("/")
    expect(page.locator("#count")).to_have_text("0")
    page.click("#inc")
    expect(page.locator("#count")).to_have_text("1")
    page.click("#inc")
    expect(page.locator("#count")).to_have_text("2")

    posts = site.app.posts("/inc")
    assert len(posts) == 2
    for i, req in enumerate(posts):
        assert req.headers.get("datastar-request") == "true"
        assert req.headers.get("content-type") == "application/json"
        assert req.json == {"count": i}
    assert errors == []


@pytest.mark.parametrize("variant", ["null", "nested-null"])
def test_null_signal_patch(site: Site, open_page, variant: str) -> None:
    """Finding a: what a null signal patch does to data-text."""
    from playwright.sync_api import expect

    initial, later = ("5", "7") if variant == "null" else ("x", "bob")
    page, errors = open_page(f"/page/{variant}")
    out, seq = page.locator("#out"), page.locator("#seq")
    expect(out).to_have_text(initial)

    page.click("#null")
    expect(seq).to_have_text("1")
    page.wait_for_timeout(100)
    if site.protocol == "v1":
        assert out.text_content() == initial  # signal deleted, binding left stale
    else:
        assert out.text_content() == "null"

    page.click("#value")
    expect(seq).to_have_text("2")
    page.wait_for_timeout(100)
    if site.protocol == "v1":
        assert out.text_content() == initial  # still stale: the re-created signal is not re-bound
    else:
        assert out.text_content() == later

    first, second = _posts_for(site, page, variant)
    if variant == "null":
        assert first.json == {"count": 5, "seq": 0}
        if site.protocol == "v1":
            assert second.json == {"seq": 1}  # deleted: absent from the body
        else:
            assert second.json == {"count": None, "seq": 1}
    else:
        assert first.json == {"S": {"name": "x"}, "seq": 0}
        if site.protocol == "v1":
            assert second.json == {"seq": 1}  # S == {} has no leaf left to send
        else:
            assert second.json == {"S": {"name": None}, "seq": 1}
    assert errors == []

    if site.protocol == "v1":
        # the signal store itself holds the new value: a newly bound element sees it
        page.evaluate(
            """() => { const s = document.createElement('span'); s.id = 'late';
                const expr = document.querySelector('#out').getAttribute('data-text');
                s.setAttribute('data-text', expr);
                document.body.appendChild(s) }"""
        )
        expect(page.locator("#late")).to_have_text(later)


def _signal_path(variant: str, n: int) -> str:
    names = {"null": ("count-null", "count-7"), "nested-null": ("name-null", "name-bob")}
    return f"/signals/{names[variant][n - 1]}"


def _posts_for(site: Site, page: Any, variant: str) -> tuple[RecordedRequest, RecordedRequest]:
    first = site.app.wait_posts(page, _signal_path(variant, 1), 1)
    second = site.app.wait_posts(page, _signal_path(variant, 2), 1)
    return first[0], second[0]


def test_namespace_case_survives(site: Site, open_page) -> None:
    """Finding b."""
    from playwright.sync_api import expect

    page, errors = open_page("/page/namespace")
    expect(page.locator("#out")).to_have_text("0")
    page.click("#go")
    expect(page.locator("#out")).to_have_text("1")
    (req,) = site.app.wait_posts(page, "/signals/cs-1", 1)
    assert req.json == {"CounterState": {"count": 0}}
    assert errors == []


def test_retry_options_and_500(site: Site, open_page) -> None:
    """Finding c: the retry options parse, and a 500 is not re-sent."""
    from playwright.sync_api import expect

    page, errors = open_page("/page/retry")
    page.click("#ok-opt")
    expect(page.locator("#count")).to_have_text("1")

    page.click("#fail-plain")
    page.click("#fail-opt")
    if site.protocol == "v1":
        page.click("#fail-retry")
    site.app.wait_posts(page, "/fail/plain", 1)
    site.app.wait_posts(page, "/fail/opt", 1)
    page.wait_for_timeout(3000)  # > default retryInterval (1 s) plus one backoff step
    assert len(site.app.posts("/fail/plain")) == 1
    assert len(site.app.posts("/fail/opt")) == 1
    if site.protocol == "v1":
        assert len(site.app.posts("/fail/retry")) >= 3  # positive control: re-sent
    page.close()  # stop the v1 positive control's endless re-sends

    expected = 3 if site.protocol == "v1" else 2
    network_500 = [e for e in errors if "status of 500" in e]
    assert len(network_500) >= expected
    assert [e for e in errors if "status of 500" not in e] == []


def test_filter_signals_exclude(site: Site, open_page) -> None:
    """Finding d."""
    assert EXCLUDE_EXPR == (
        '@post("/echo", {"filterSignals": {"exclude": '
        '(new RegExp("(^|\\\\.)_|^CounterState(\\\\.|$)"))}})'
    )
    page, errors = open_page("/page/exclude")
    page.click("#filtered")
    (filtered,) = site.app.wait_posts(page, "/echo", 1)
    page.click("#plain")
    plain = site.app.wait_posts(page, "/echo", 2)[1]

    everything_public = {
        "CounterState": {"count": 3},
        "title": "t",
        "Other": {"x": 1},
        "CounterStateX": 2,
    }
    assert plain.json == everything_public  # default: only _-prefixed signals are left out
    if site.protocol == "v1":
        assert filtered.json == {"title": "t", "Other": {"x": 1}, "CounterStateX": 2}
    else:
        assert filtered.json == everything_public  # beta ignores filterSignals
    assert errors == []


def test_patch_elements_fragment(site: Site, open_page) -> None:
    """Finding e."""
    from playwright.sync_api import expect

    page, errors = open_page("/page/fragment")
    expect(page.locator("#items li")).to_have_count(0)
    page.click("#go")
    expect(page.locator("#items li")).to_have_text(["a"])
    expect(page.locator("ul#items")).to_have_count(1)
    assert errors == []


def test_bind_input_in_body(site: Site, open_page) -> None:
    """Finding f."""
    page, errors = open_page("/page/bind")
    page.fill("#title", "hello")
    page.click("#go")
    (req,) = site.app.wait_posts(page, "/echo", 1)
    assert req.json == {"title": "hello"}
    assert errors == []


def test_nothing_leaves_the_machine(site: Site, new_context, blocked_requests) -> None:
    """Non-loopback requests are aborted; the other protocol's bundle is refused."""
    context = new_context(site.protocol)
    page = context.new_page()
    page.goto(site.base_url + "/")
    other = "beta" if site.protocol == "v1" else "v1"
    status = page.evaluate(
        "async (url) => { try { return (await fetch(url)).status } catch (e) { return 'error' } }",
        CDN[other],
    )
    assert status == 404
    outside = page.evaluate(
        """async () => { try { await fetch('https://example.invalid/'); return 'reached' }
                        catch (e) { return 'blocked' } }"""
    )
    assert outside == "blocked"
    assert "https://example.invalid/" in blocked_requests(context)
    assert CDN[other] in blocked_requests(context)
