"""FastStateMiddleware: the signed session cookie, secret keys and clear errors."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from itsdangerous import TimestampSigner
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from faststate import (
    FastStateMiddleware,
    MemoryStore,
    ReactiveState,
    StateScope,
    event,
    register_state,
    use_state,
)
from faststate._middleware import SECRET_KEY_ENV
from faststate.testing import fire

from .apps import SECRET, Counter, state_app

COOKIE = "faststate_session"


class Hits(ReactiveState):
    hits: int = 0

    @event
    def hit(self) -> None:
        self.hits += 1


def make_app(*, register: bool = True, middleware: bool = True, **options: Any) -> Starlette:
    """Counter per session, Hits global; ``/`` uses the session, ``/global`` does not."""
    app = state_app(**options) if middleware else Starlette()
    if register:
        register_state(app, Counter, scope=StateScope.SESSION)
        register_state(app, Hits, scope=StateScope.GLOBAL)

    def page(request: Request) -> JSONResponse:
        return JSONResponse({"count": use_state(request, Counter).count})

    def global_page(request: Request) -> JSONResponse:
        return JSONResponse({"hits": use_state(request, Hits).hits})

    def plain(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    app.add_route("/", page)
    app.add_route("/global", global_page)
    app.add_route("/plain", plain)
    return app


def set_cookie_header(response: Any) -> str:
    cookies = response.headers.get_list("set-cookie")
    assert len(cookies) == 1, cookies
    header: str = cookies[0]
    return header


def cookie_flags(header: str) -> dict[str, str]:
    """Attributes of one Set-Cookie header, names lower-cased; the pair under ``""``."""
    pair, *attributes = (part.strip() for part in header.split(";"))
    flags = {"": pair}
    for attribute in attributes:
        name, _, value = attribute.partition("=")
        flags[name.lower()] = value
    return flags


def session_cookie(client: TestClient) -> str:
    value: str = client.cookies[COOKIE]
    return value


def page_count(app: Starlette, cookie: str | None) -> tuple[int, str | None]:
    """Count seen by a request carrying ``cookie``, and the cookie it was given back."""
    with TestClient(app) as client:
        headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie is not None else {}
        response = client.get("/", headers=headers)
        assert response.status_code == 200
        return response.json()["count"], response.cookies.get(COOKIE)


# --- cookie flags ------------------------------------------------------------


def test_session_cookie_flags_on_http() -> None:
    with TestClient(make_app()) as client:
        flags = cookie_flags(set_cookie_header(client.get("/")))
    assert flags[""].startswith(f"{COOKIE}=")
    assert "httponly" in flags
    assert flags["samesite"].lower() == "lax"
    assert flags["path"] == "/"
    assert flags["max-age"] == str(14 * 24 * 3600)
    assert "secure" not in flags


def test_session_cookie_is_secure_on_https() -> None:
    with TestClient(make_app(), base_url="https://testserver") as client:
        flags = cookie_flags(set_cookie_header(client.get("/")))
        assert "secure" in flags
        assert "httponly" in flags
        # The browser sends it back over https: the session holds.
        fire(client, "/Counter/increment", amount=2)
        assert client.get("/").json()["count"] == 2


def test_https_only_forces_secure_and_false_disables_it() -> None:
    with TestClient(make_app(https_only=True)) as client:
        assert "secure" in cookie_flags(set_cookie_header(client.get("/")))
    with TestClient(make_app(https_only=False), base_url="https://testserver") as client:
        assert "secure" not in cookie_flags(set_cookie_header(client.get("/")))


def test_cookie_options() -> None:
    app = make_app(
        session_cookie="sid", max_age=600, path="/app", same_site="strict", domain="example.org"
    )
    with TestClient(app) as client:
        flags = cookie_flags(set_cookie_header(client.get("/")))
    assert flags[""].startswith("sid=")
    assert flags["max-age"] == "600"
    assert flags["path"] == "/app"
    assert flags["samesite"].lower() == "strict"
    assert flags["domain"] == "example.org"


def test_cookie_without_max_age_is_a_browser_session_cookie() -> None:
    app = make_app(max_age=None)
    with TestClient(app) as client:
        flags = cookie_flags(set_cookie_header(client.get("/")))
        fire(client, "/Counter/increment")
        assert client.get("/").json()["count"] == 1
    assert "max-age" not in flags
    assert "expires" not in flags


def test_cookie_is_issued_once_not_on_every_request() -> None:
    with TestClient(make_app()) as client:
        assert "set-cookie" in client.get("/").headers
        first = session_cookie(client)
        assert "set-cookie" not in client.get("/").headers
        assert "set-cookie" not in fire(client, "/Counter/increment").headers
        assert session_cookie(client) == first


def test_first_event_issues_the_session_cookie() -> None:
    with TestClient(make_app()) as client:
        result = fire(client, "/Counter/increment", amount=3)
        assert f"{COOKIE}=" in result.headers["set-cookie"]
        assert client.get("/").json()["count"] == 3


# --- no cookie unless the session is used ------------------------------------


def test_no_cookie_for_pages_that_do_not_use_session_state() -> None:
    with TestClient(make_app()) as client:
        assert "set-cookie" not in client.get("/plain").headers
        assert "set-cookie" not in client.get("/global").headers
        result = fire(client, "/Hits/hit")
        assert result.signals == {"Hits": {"hits": 1}}
        assert "set-cookie" not in result.headers
        assert COOKIE not in client.cookies
        assert client.get("/global").json()["hits"] == 1


# --- signed cookie -----------------------------------------------------------


def tamper(cookie: str) -> str:
    """Change the first character (inside the signed session id)."""
    return ("B" if cookie[0] != "B" else "C") + cookie[1:]


def test_tampered_cookie_gives_a_fresh_session() -> None:
    app = make_app()
    with TestClient(app) as client:
        fire(client, "/Counter/increment", amount=5)
        cookie = session_cookie(client)
    assert page_count(app, cookie)[0] == 5  # the genuine cookie still works

    count, reissued = page_count(app, tamper(cookie))
    assert count == 0
    assert reissued is not None and reissued != cookie
    assert page_count(app, reissued)[0] == 0

    # A cookie naming the victim's session id with a made-up signature.
    session_id = cookie.split(".", 1)[0]
    count, reissued = page_count(app, f"{session_id}.AAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAA")
    assert count == 0
    assert reissued is not None and not reissued.startswith(session_id)


def test_cookies_split_over_several_fields_keep_the_session() -> None:
    # Over HTTP/2 a browser may send each cookie in a Cookie field of its own
    # (Chrome does), and some ASGI servers pass the fields on as they came.
    app = make_app()
    with TestClient(app) as client:
        fire(client, "/Counter/increment", amount=5)
        cookie = session_cookie(client)
    split = [("cookie", "theme=dark"), ("cookie", f"{COOKIE}={cookie}"), ("cookie", "lang=en")]
    with TestClient(app) as client:
        page = client.get("/", headers=split)
        assert page.json() == {"count": 5}
        assert "set-cookie" not in page.headers
        answer = client.post(
            "/Counter/increment?amount=2",
            content=b"{}",
            headers=[
                ("datastar-request", "true"),
                ("content-type", "application/json"),
                ("sec-fetch-site", "same-origin"),
                *split,
            ],
        )
        assert answer.status_code == 200 and "set-cookie" not in answer.headers
        assert '"count":7' in answer.text
        assert client.get("/", headers=split).json() == {"count": 7}


def test_unsigned_cookie_value_is_not_a_session() -> None:
    app = make_app()
    with TestClient(app) as client:
        fire(client, "/Counter/increment", amount=5)
        session_id = session_cookie(client).split(".", 1)[0]
    count, reissued = page_count(app, session_id)
    assert count == 0
    assert reissued is not None


def test_cookie_from_another_secret_key_gives_a_fresh_session() -> None:
    store = MemoryStore()
    app_a = make_app(secret_key="key-a", store=store)
    app_b = make_app(secret_key="key-b", store=store)
    with TestClient(app_a) as client:
        fire(client, "/Counter/increment", amount=4)
        cookie = session_cookie(client)
    assert page_count(app_a, cookie)[0] == 4
    count, reissued = page_count(app_b, cookie)
    assert count == 0
    assert reissued is not None and reissued != cookie


def test_secret_key_rotation_accepts_old_cookies_and_signs_with_newest() -> None:
    store = MemoryStore()
    old_app = make_app(secret_key="old", store=store)
    rotated = make_app(secret_key=["old", "new"], store=store)
    new_only = make_app(secret_key="new", store=store)

    with TestClient(old_app) as client:
        fire(client, "/Counter/increment", amount=2)
        old_cookie = session_cookie(client)
    count, reissued = page_count(rotated, old_cookie)
    assert count == 2
    assert reissued is None  # accepted as is, not replaced

    # Cookies the rotated app issues are signed with the newest key.
    with TestClient(rotated) as client:
        fire(client, "/Counter/increment", amount=7)
        new_cookie = session_cookie(client)
    assert page_count(new_only, new_cookie)[0] == 7
    assert page_count(old_app, new_cookie)[0] == 0


def test_empty_secret_key_is_refused() -> None:
    with pytest.raises(ValueError, match="secret_key"):
        FastStateMiddleware(Starlette(), secret_key="")
    with pytest.raises(ValueError, match="secret_key"):
        FastStateMiddleware(Starlette(), secret_key=[])


# --- clear errors ------------------------------------------------------------


def test_use_state_without_middleware_says_to_add_it() -> None:
    app = make_app(middleware=False)
    with (
        TestClient(app) as client,
        pytest.raises(RuntimeError, match=r"add_middleware\(FastStateMiddleware\)"),
    ):
        client.get("/")


def test_unregistered_class_names_register_state() -> None:
    app = make_app(register=False)
    with (
        TestClient(app) as client,
        pytest.raises(LookupError, match=r"Counter.*register_state"),
    ):
        client.get("/")


# --- secret key from the environment -----------------------------------------


def test_missing_secret_key_logs_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger="faststate"):
        app = make_app(secret_key=None)
        with TestClient(app) as client:
            fire(client, "/Counter/increment")
            # A random key still makes working sessions within the process.
            assert client.get("/").json()["count"] == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert SECRET_KEY_ENV in warnings[0].getMessage()


def test_no_warning_with_a_secret_key(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger="faststate"):
        FastStateMiddleware(Starlette(), secret_key=SECRET)
        monkeypatch.setenv(SECRET_KEY_ENV, "from-env")
        FastStateMiddleware(Starlette())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_random_keys_of_two_apps_do_not_accept_each_others_cookies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
    store = MemoryStore()
    app_a = make_app(secret_key=None, store=store)
    app_b = make_app(secret_key=None, store=store)
    with TestClient(app_a) as client:
        fire(client, "/Counter/increment", amount=3)
        cookie = session_cookie(client)
    assert page_count(app_a, cookie)[0] == 3
    assert page_count(app_b, cookie)[0] == 0


def test_secret_key_from_environment_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_KEY_ENV, "shared-env-key")
    store = MemoryStore()
    app_a = make_app(secret_key=None, store=store)
    app_b = make_app(secret_key=None, store=store)
    with TestClient(app_a) as client:
        fire(client, "/Counter/increment", amount=6)
        cookie = session_cookie(client)
    # The middleware stack is built at the first request: app_b reads the env now.
    assert page_count(app_b, cookie) == (6, None)

    # An app built under another env key refuses the cookie.
    monkeypatch.setenv(SECRET_KEY_ENV, "another-env-key")
    app_c = make_app(secret_key=None, store=store)
    assert page_count(app_c, cookie)[0] == 0


def test_explicit_secret_key_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_KEY_ENV, "env-key")
    store = MemoryStore()
    explicit = make_app(secret_key="explicit", store=store)
    from_env = make_app(secret_key=None, store=store)
    with TestClient(explicit) as client:
        fire(client, "/Counter/increment", amount=1)
        cookie = session_cookie(client)
    assert page_count(from_env, cookie)[0] == 0
    assert page_count(make_app(secret_key="explicit", store=store), cookie)[0] == 1


class SharedMemoryStore(MemoryStore):
    shared = True


def test_shared_store_without_secret_key_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
    with pytest.raises(RuntimeError, match="secret key"):
        FastStateMiddleware(Starlette(), store=SharedMemoryStore())

    # Through an app: the middleware stack is built at startup (lifespan) or
    # at the first request, whichever comes first.
    app = make_app(secret_key=None, store=SharedMemoryStore())
    with pytest.raises(RuntimeError, match=SECRET_KEY_ENV), TestClient(app):
        pass
    app = make_app(secret_key=None, store=SharedMemoryStore())
    with pytest.raises(RuntimeError, match=SECRET_KEY_ENV):
        TestClient(app).get("/plain")


def test_shared_store_starts_with_a_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
    with TestClient(make_app(store=SharedMemoryStore())) as client:
        fire(client, "/Counter/increment")
        assert client.get("/").json()["count"] == 1
    monkeypatch.setenv(SECRET_KEY_ENV, "env-key")
    with TestClient(make_app(secret_key=None, store=SharedMemoryStore())) as client:
        assert client.get("/").json()["count"] == 0


def test_custom_store_is_used() -> None:
    store = MemoryStore()
    with TestClient(make_app(store=store)) as client:
        fire(client, "/Counter/increment", amount=2)
        fire(client, "/Hits/hit")
    assert len(store) == 2


# --- cookie age ----------------------------------------------------------------


def cookie_issued_days_ago(
    app: Starlette, days: float, monkeypatch: pytest.MonkeyPatch, amount: int
) -> str:
    """A session cookie as if issued ``days`` ago, its session holding ``amount``."""
    issued_at = int(time.time() - days * 24 * 3600)
    with monkeypatch.context() as patch:
        patch.setattr(TimestampSigner, "get_timestamp", lambda self: issued_at)
        with TestClient(app) as client:
            fire(client, "/Counter/increment", amount=amount)
            return session_cookie(client)


def test_cookie_past_half_its_max_age_is_reissued(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app()
    old = cookie_issued_days_ago(app, 8, monkeypatch, amount=3)
    count, reissued = page_count(app, old)
    assert count == 3
    assert reissued is not None and reissued != old
    # The renewed cookie names the same session and is not renewed again.
    assert page_count(app, reissued) == (3, None)


def test_young_cookie_is_not_reissued(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app()
    cookie = cookie_issued_days_ago(app, 6, monkeypatch, amount=2)
    assert page_count(app, cookie) == (2, None)


def test_cookie_past_its_max_age_gives_a_fresh_session(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app()
    expired = cookie_issued_days_ago(app, 15, monkeypatch, amount=4)
    count, reissued = page_count(app, expired)
    assert count == 0
    assert reissued is not None and reissued != expired


# --- event requests routed as the app's router routes them -------------------
# The middleware may run an event route without the router's search; whatever
# the app's routes, middleware and exception handlers say must still hold.


class Teapot(ReactiveState):
    cups: int = 0

    @event
    def brew(self) -> None:
        self.cups += 1
        raise HTTPException(418, "short and stout")


class Passthrough:
    """A middleware that changes nothing; inside FastStateMiddleware, it stands
    between it and the router."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("passed", []).append(scope["path"])
        await self.app(scope, receive, send)


def other(request: Request) -> Response:
    return PlainTextResponse("other route")


@pytest.mark.parametrize("inner_middleware", [False, True])
def test_event_errors_reach_the_apps_handlers_with_the_routers_scope(
    inner_middleware: bool,
) -> None:
    seen: list[dict[str, Any]] = []

    async def teapot(request: Request, exc: Exception) -> Response:
        names = ("router", "route", "endpoint", "path_params", "passed")
        seen.append({name: request.scope.get(name) for name in names})
        return PlainTextResponse("handled", 418)

    app = state_app(
        {Teapot: StateScope.SESSION},
        middleware=[Middleware(Passthrough)] if inner_middleware else None,
    )
    app.add_exception_handler(418, teapot)
    (route,) = [r for r in app.routes if isinstance(r, Route) and r.path == "/Teapot/brew"]
    with TestClient(app) as client:
        for _ in range(2):
            result = fire(client, "/Teapot/brew")
            assert (result.status_code, result.text) == (418, "handled")
    expected = {
        "router": app.router,
        "route": route,
        "endpoint": route.endpoint,
        "path_params": {},
        "passed": ["/Teapot/brew"] if inner_middleware else None,
    }
    assert seen == [expected, expected]


@pytest.mark.parametrize(
    "before",
    [
        Route("/Counter/increment", other, methods=["POST"]),
        Route("/{name}/increment", other, methods=["POST"]),
        Mount("/Counter", routes=[Route("/increment", other, methods=["POST"])]),
    ],
    ids=["same path", "path parameter", "mount"],
)
def test_a_route_before_an_event_route_takes_its_requests(before: Route | Mount) -> None:
    app = state_app(routes=[before])
    register_state(app, Counter, scope=StateScope.SESSION)
    with TestClient(app) as client:
        result = fire(client, "/Counter/increment")
    assert (result.status_code, result.text) == (200, "other route")


def test_a_route_before_an_event_route_for_other_methods_leaves_it_the_event() -> None:
    app = state_app(routes=[Route("/Counter/increment", other, methods=["GET", "PUT"])])
    register_state(app, Counter, scope=StateScope.SESSION)
    with TestClient(app) as client:
        assert fire(client, "/Counter/increment").signals == {"Counter": {"count": 1}}
        assert fire(client, "/Counter/increment", headers={"X": "1"}).status_code == 200
        put = client.put("/Counter/increment", headers={"Datastar-Request": "true"})
        assert (put.status_code, put.text) == (200, "other route")


def test_routes_added_while_the_app_runs_are_honoured() -> None:
    app = state_app({Counter: StateScope.SESSION})
    with TestClient(app) as client:
        assert fire(client, "/Counter/increment").signals == {"Counter": {"count": 1}}
        app.router.routes.insert(0, Route("/Counter/increment", other, methods=["POST"]))
        assert fire(client, "/Counter/increment").text == "other route"
        app.router.routes.pop(0)
        assert fire(client, "/Counter/increment").signals == {"Counter": {"count": 2}}


def test_other_methods_on_an_event_path_are_405() -> None:
    app = state_app({Counter: StateScope.SESSION})
    with TestClient(app) as client:
        fire(client, "/Counter/increment")
        response = client.put("/Counter/increment", headers={"Datastar-Request": "true"})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
