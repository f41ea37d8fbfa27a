"""Event endpoints refuse cross-site, non-Datastar, oversized and wrongly typed requests.

Each refusal is checked through a real app, and so is the fact that a refused
request changes nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fasthtml.common import Beforeware, FastHTML
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount
from starlette.testclient import TestClient
from starlette.types import Message, Send

from faststate import ReactiveState, StateScope, event, use_state
from faststate._guards import SlowBodies
from faststate.testing import fire

from .apps import state_app, with_faststate

LIMIT = 256
URL = "/Board/post"


class Board(ReactiveState):
    count: int = 0
    title: str = ""

    @event
    def post(self, amount: int = 1, title: str = "") -> None:
        self.count += amount
        if title:
            self.title = title


def starlette_app(max_body_size: int = LIMIT, **options: Any) -> Starlette:
    app = state_app({Board: StateScope.GLOBAL}, max_body_size=max_body_size, **options)

    def page(request: Request) -> JSONResponse:
        state = use_state(request, Board)
        return JSONResponse({"count": state.count, "title": state.title})

    app.add_route("/", page)
    return app


def state_of(client: TestClient) -> dict[str, Any]:
    response = client.get("/")
    assert response.status_code == 200
    value: dict[str, Any] = response.json()
    return value


DATASTAR = {"Datastar-Request": "true", "Content-Type": "application/json"}


def post(client: TestClient, headers: dict[str, str], content: bytes | str = b"{}") -> Any:
    return client.post(URL + "?amount=5", content=content, headers=headers)


REFUSALS = {
    "no Datastar-Request": (
        403,
        {"Sec-Fetch-Site": "same-origin", "Content-Type": "application/json"},
    ),
    "cross-site": (403, {**DATASTAR, "Sec-Fetch-Site": "cross-site"}),
    "cross-site with same Origin": (
        403,
        {**DATASTAR, "Sec-Fetch-Site": "cross-site", "Origin": "http://testserver"},
    ),
    "foreign Origin": (403, {**DATASTAR, "Origin": "https://evil.example"}),
    "foreign Origin same host other port": (403, {**DATASTAR, "Origin": "http://testserver:8080"}),
    "Origin null": (403, {**DATASTAR, "Origin": "null"}),
    "form without proof": (
        403,
        {"Datastar-Request": "true", "Content-Type": "application/x-www-form-urlencoded"},
    ),
    "form same-site": (
        403,
        {
            "Datastar-Request": "true",
            "Sec-Fetch-Site": "same-site",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    ),
    "multipart without proof": (
        403,
        {"Datastar-Request": "true", "Content-Type": "multipart/form-data; boundary=x"},
    ),
    "text/plain without proof": (
        403,
        {"Datastar-Request": "true", "Content-Type": "text/plain;charset=UTF-8"},
    ),
    "xml": (415, {**DATASTAR, "Sec-Fetch-Site": "same-origin", "Content-Type": "application/xml"}),
    "octet-stream": (
        415,
        {**DATASTAR, "Sec-Fetch-Site": "same-origin", "Content-Type": "application/octet-stream"},
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_event_requests_change_nothing(case: str) -> None:
    status, headers = REFUSALS[case]
    with TestClient(starlette_app()) as client:
        assert fire(client, URL, amount=2).signals == {"Board": {"count": 2}}
        response = post(client, headers)
        assert response.status_code == status, response.text
        assert "text/event-stream" not in response.headers.get("content-type", "")
        assert state_of(client) == {"count": 2, "title": ""}


ACCEPTED = {
    "Datastar same-origin": {**DATASTAR, "Sec-Fetch-Site": "same-origin"},
    "no Sec-Fetch-Site, no Origin": DATASTAR,
    "no Sec-Fetch-Site, Origin is the host": {**DATASTAR, "Origin": "http://testserver"},
    "typed into the address bar": {**DATASTAR, "Sec-Fetch-Site": "none"},
    "no content type": {"Datastar-Request": "true", "Sec-Fetch-Site": "same-origin"},
    "json with charset": {
        **DATASTAR,
        "Sec-Fetch-Site": "same-origin",
        "Content-Type": "application/json; charset=utf-8",
    },
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_accepted_event_requests(case: str) -> None:
    with TestClient(starlette_app()) as client:
        response = post(client, ACCEPTED[case])
        assert response.status_code == 200, response.text
        assert state_of(client)["count"] == 5


def test_get_on_an_event_is_405() -> None:
    with TestClient(starlette_app()) as client:
        response = client.get(
            URL + "?amount=5", headers={**DATASTAR, "Sec-Fetch-Site": "same-origin"}
        )
        assert response.status_code == 405
        assert state_of(client)["count"] == 0


def test_trusted_origin_may_call_cross_site() -> None:
    app = starlette_app(trusted_origins=["https://app.example.com/"])
    with TestClient(app) as client:
        cross = {**DATASTAR, "Sec-Fetch-Site": "cross-site"}
        trusted = post(client, {**cross, "Origin": "https://app.example.com"})
        assert trusted.status_code == 200, trusted.text
        assert post(client, {**cross, "Origin": "https://evil.example"}).status_code == 403
        assert post(client, {**cross, "Origin": "https://app.example.com.evil"}).status_code == 403
        assert state_of(client)["count"] == 5


def test_trusted_origin_may_post_a_form() -> None:
    app = starlette_app(trusted_origins=["https://app.example.com"])
    with TestClient(app) as client:
        response = client.post(
            URL,
            data={"amount": "3"},
            headers={
                "Datastar-Request": "true",
                "Sec-Fetch-Site": "cross-site",
                "Origin": "https://app.example.com",
            },
        )
        assert response.status_code == 200, response.text
        assert state_of(client)["count"] == 3


# --- forms ---------------------------------------------------------------------


def test_same_origin_form_binds_fields_to_event_params() -> None:
    with TestClient(starlette_app()) as client:
        response = client.post(
            URL,
            data={"amount": "4", "title": "from a form"},
            headers={"Datastar-Request": "true", "Sec-Fetch-Site": "same-origin"},
        )
        assert response.status_code == 200, response.text
        assert state_of(client) == {"count": 4, "title": "from a form"}


def test_form_with_origin_equal_to_host_is_same_origin() -> None:
    with TestClient(starlette_app()) as client:
        response = client.post(
            URL,
            data={"amount": "6"},
            headers={"Datastar-Request": "true", "Origin": "http://testserver"},
        )
        assert response.status_code == 200, response.text
        assert state_of(client)["count"] == 6


def test_same_origin_multipart_binds_fields() -> None:
    with TestClient(starlette_app(max_body_size=4096)) as client:
        response = client.post(
            URL,
            data={"amount": "2", "title": "multi"},
            files={"ignored": ("a.txt", b"hello", "text/plain")},
            headers={"Datastar-Request": "true", "Sec-Fetch-Site": "same-origin"},
        )
        assert response.status_code == 200, response.text
        assert state_of(client) == {"count": 2, "title": "multi"}


@pytest.mark.parametrize(
    "headers",
    [
        {"Datastar-Request": "true"},
        {"Datastar-Request": "true", "Sec-Fetch-Site": "same-site"},
        {"Datastar-Request": "true", "Origin": "https://evil.example"},
    ],
    ids=["no proof", "same-site", "foreign origin"],
)
def test_form_without_same_origin_proof_is_refused(headers: dict[str, str]) -> None:
    with TestClient(starlette_app()) as client:
        response = client.post(URL, data={"amount": "4", "title": "forged"}, headers=headers)
        assert response.status_code == 403
        assert state_of(client) == {"count": 0, "title": ""}


# --- body size -----------------------------------------------------------------


def json_body(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes."""
    base = json.dumps({"pad": ""}).encode()
    return json.dumps({"pad": "x" * (size - len(base))}).encode()


def test_body_at_the_limit_passes_and_one_byte_more_is_413() -> None:
    with TestClient(starlette_app()) as client:
        headers = {**DATASTAR, "Sec-Fetch-Site": "same-origin"}
        assert len(json_body(LIMIT)) == LIMIT
        assert post(client, headers, json_body(LIMIT)).status_code == 200
        response = post(client, headers, json_body(LIMIT + 1))
        assert response.status_code == 413
        assert state_of(client)["count"] == 5


def test_declared_content_length_over_limit_is_413_before_reading() -> None:
    with TestClient(starlette_app()) as client:
        headers = {**DATASTAR, "Sec-Fetch-Site": "same-origin", "Content-Length": str(10**9)}
        response = client.post(URL, content=b"{}", headers=headers)
        assert response.status_code == 413
        assert state_of(client)["count"] == 0


def event_scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    """The ASGI scope of a same-origin Datastar POST to the event, with ``headers`` more."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"t"),
            (b"datastar-request", b"true"),
            (b"sec-fetch-site", b"same-origin"),
            (b"content-type", b"application/json"),
            *headers,
        ],
        "client": ("127.0.0.1", 1),
        "server": ("t", 80),
    }


@pytest.mark.parametrize("length", [b"\xb2", b"1_0", b" 2", b"-1"])
async def test_a_content_length_that_is_no_number_is_400(length: bytes) -> None:
    """Latin-1 "²" passes str.isdigit but not int(): still a clear 400, never a 500."""
    app = starlette_app()
    messages: list[dict[str, Any]] = []
    scope = event_scope((b"content-length", length))

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(scope, receive, send)
    assert messages[0]["status"] == 400


async def chunks(total: int, size: int = 64) -> AsyncIterator[bytes]:
    sent = 0
    yield b'{"pad": "'
    while sent < total:
        yield b"x" * size
        sent += size
    yield b'"}'


async def post_streamed(app: Any, total: int) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        request = client.build_request(
            "POST",
            URL,
            content=chunks(total),
            headers={**DATASTAR, "Sec-Fetch-Site": "same-origin"},
        )
        assert "content-length" not in request.headers
        assert request.headers["transfer-encoding"] == "chunked"
        return await client.send(request)


async def test_streamed_body_over_limit_without_content_length_is_413() -> None:
    app = starlette_app()
    response = await post_streamed(app, LIMIT * 4)
    assert response.status_code == 413
    assert await app_count(app) == 0
    # The same stream under the limit goes through.
    response = await post_streamed(app, LIMIT // 2)
    assert response.status_code == 200
    assert await app_count(app) == 1


async def test_a_body_in_several_pieces_reaches_the_event_whole() -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for piece in (b'{"ti', b'tle": "spl', b'it", "amount": 2}'):
            yield piece

    app = starlette_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        headers = {**DATASTAR, "Sec-Fetch-Site": "same-origin"}
        response = await client.post(URL, content=pieces(), headers=headers)
        assert response.status_code == 200
        assert (await client.get("/")).json() == {"count": 2, "title": "split"}


async def test_a_client_leaving_mid_body_changes_nothing() -> None:
    app = starlette_app()
    messages: list[Message] = []
    arriving = iter(
        [
            {"type": "http.request", "body": b'{"title": "ha', "more_body": True},
            {"type": "http.disconnect"},
        ]
    )

    async def receive() -> Message:
        return next(arriving)

    async def send(message: Message) -> None:
        messages.append(message)

    await app(event_scope(), receive, send)
    assert messages[0]["status"] == 400
    assert await app_count(app) == 0


async def app_count(app: Any) -> int:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        count: int = (await client.get("/")).json()["count"]
        return count


# --- FastHTML --------------------------------------------------------------------


def fasthtml_app(seen: list[str]) -> FastHTML:
    """A FastHTML app whose beforeware records every request it sees."""

    def before(req: Request) -> None:
        seen.append(req.url.path)

    app = with_faststate(
        FastHTML(before=Beforeware(before), secret_key="fh-secret", htmx=False, surreal=False),
        {Board: StateScope.GLOBAL},
        max_body_size=LIMIT,
    )

    @app.route("/")
    def index(req: Request) -> JSONResponse:
        state = use_state(req, Board)
        return JSONResponse({"count": state.count, "title": state.title})

    return app


@pytest.mark.parametrize(
    ("headers", "content", "status"),
    [
        ({**DATASTAR, "Sec-Fetch-Site": "cross-site"}, b"{not json", 403),
        ({"Content-Type": "application/json", "Sec-Fetch-Site": "same-origin"}, b"{}", 403),
        ({"Datastar-Request": "true", "Content-Type": "multipart/form-data"}, b"--x", 403),
        ({**DATASTAR, "Sec-Fetch-Site": "same-origin"}, json_body(LIMIT + 1), 413),
        ({**DATASTAR, "Sec-Fetch-Site": "same-origin", "Content-Type": "text/xml"}, b"<a/>", 415),
    ],
    ids=["cross-site", "no datastar header", "multipart no proof", "too big", "xml"],
)
def test_fasthtml_event_is_refused_before_the_app_reads_it(
    headers: dict[str, str], content: bytes, status: int
) -> None:
    seen: list[str] = []
    with TestClient(fasthtml_app(seen)) as client:
        response = client.post(URL, content=content, headers=headers)
        assert response.status_code == status, response.text
        # Refused before FastHTML parsed the body or ran beforeware.
        assert seen == []
        assert state_of(client)["count"] == 0
        assert fire(client, URL, amount=3).signals == {"Board": {"count": 3}}
        assert seen == ["/", URL]


async def test_fasthtml_streamed_body_over_limit_is_413() -> None:
    seen: list[str] = []
    app = fasthtml_app(seen)
    response = await post_streamed(app, LIMIT * 4)
    assert response.status_code == 413
    assert seen == []
    assert await app_count(app) == 0


def test_fasthtml_same_origin_form_binds_fields() -> None:
    seen: list[str] = []
    with TestClient(fasthtml_app(seen)) as client:
        response = client.post(
            URL,
            data={"amount": "7", "title": "fh form"},
            headers={"Datastar-Request": "true", "Sec-Fetch-Site": "same-origin"},
        )
        assert response.status_code == 200, response.text
        assert state_of(client) == {"count": 7, "title": "fh form"}


def prefixed_client(how: str, seen: list[str]) -> TestClient:
    """A client for ``fasthtml_app`` served under ``/api``."""
    if how == "mount":
        return TestClient(Starlette(routes=[Mount("/api", fasthtml_app(seen))]))
    # As behind a proxy with ``uvicorn --root-path /api``.
    return TestClient(fasthtml_app(seen), root_path="/api")


@pytest.mark.parametrize("how", ["mount", "root_path"])
@pytest.mark.parametrize("content", [b"{}", b"{not json"], ids=["json", "bad json"])
def test_fasthtml_event_under_a_prefix_is_refused_before_the_app(how: str, content: bytes) -> None:
    """Served under a prefix, the middleware must still refuse a hostile event
    before FastHTML parses its body and runs its beforeware."""
    seen: list[str] = []
    with prefixed_client(how, seen) as client:
        assert fire(client, "/api" + URL, amount=2).signals == {"Board": {"count": 2}}
        assert seen == ["/api" + URL]
        seen.clear()
        response = client.post(
            "/api" + URL, content=content, headers={**DATASTAR, "Sec-Fetch-Site": "cross-site"}
        )
        assert response.status_code == 403, response.text
        assert seen == []
        assert client.get("/api/").json()["count"] == 2


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_hold_for_a_mounted_starlette_app(case: str) -> None:
    status, headers = REFUSALS[case]
    outer = Starlette(routes=[Mount("/api", starlette_app())])
    with TestClient(outer) as client:
        assert fire(client, "/api" + URL, amount=2).signals == {"Board": {"count": 2}}
        response = client.post("/api" + URL + "?amount=5", content=b"{}", headers=headers)
        assert response.status_code == status, response.text
        assert client.get("/api/").json()["count"] == 2


async def form_chunks(total: int) -> AsyncIterator[bytes]:
    yield b"amount=3&pad="
    for _ in range(total // 64):
        yield b"x" * 64


@pytest.mark.parametrize("prefix", ["", "/api"], ids=["direct", "mounted"])
async def test_streamed_form_body_over_limit_is_413(prefix: str) -> None:
    """A same-origin form streamed without Content-Length is still bounded."""
    app = starlette_app()
    outer = Starlette(routes=[Mount(prefix, app)]) if prefix else app
    transport = httpx.ASGITransport(app=outer)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        headers = {
            "Datastar-Request": "true",
            "Sec-Fetch-Site": "same-origin",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        response = await client.post(prefix + URL, content=form_chunks(LIMIT * 8), headers=headers)
        assert response.status_code == 413, response.text
        small = await client.post(prefix + URL, content=form_chunks(64), headers=headers)
        assert small.status_code == 200, small.text
        page = await client.get(prefix + "/")
        assert page.json()["count"] == 3


async def test_slow_bodies_are_answered_408_no_sooner_than_their_deadline() -> None:
    within = 0.3
    bodies = SlowBodies(within)
    loop = asyncio.get_running_loop()
    answered: dict[str, tuple[float, int]] = {}

    def sender(name: str) -> Send:
        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered[name] = (loop.time(), message["status"])

        return send

    names = "abcdefg"
    sends = {name: sender(name) for name in names}
    started, watched = {}, {}
    for name in names:  # one every 0.1 s: some share a slot, some do not
        started[name] = loop.time()
        watched[name] = bodies.watch(sends[name])
        await asyncio.sleep(0.1)
    assert bodies.done(watched["g"], sends["g"])  # its body came in time
    await asyncio.sleep(within + 0.5)
    assert sorted(answered) == list("abcdef")
    for name, (when, status) in answered.items():
        assert status == 408
        assert within <= when - started[name] <= within + 1 / SlowBodies.SLOTS_PER_SECOND + 0.1
        assert not bodies.done(watched[name], sends[name])  # answered: too late now
    late = sender("late")
    assert bodies.done(bodies.watch(late), late)  # a new request after the timers ran


def test_slow_bodies_are_answered_by_the_loop_that_serves_them() -> None:
    """An app served by one loop after another (each TestClient runs its own)."""
    bodies = SlowBodies(0.2)

    async def request(body_in_time: bool) -> list[int]:
        statuses: list[int] = []

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        watched = bodies.watch(send)
        if body_in_time:
            assert bodies.done(watched, send)
        else:
            await asyncio.sleep(0.6)
        return statuses

    assert asyncio.run(request(body_in_time=True)) == []
    # At once, so within the slot the first loop opened: the timer of a loop
    # that has ended would never answer.
    assert asyncio.run(request(body_in_time=False)) == [408]
