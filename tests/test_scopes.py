"""Scopes: which instance a request reaches (GLOBAL, SESSION, COMPONENT, RECORD, USER).

Every test goes through a real ASGI app: pages call ``use_state`` and report
what they see as JSON, events are posted with ``faststate.testing.fire``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fasthtml.common import Beforeware, FastHTML
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    SimpleUser,
    UnauthenticatedUser,
)
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from faststate import StateScope, ause_state, signal_name, use_state
from faststate._helpers import event_url
from faststate.testing import afire, fire

from .apps import Counter, state_app, with_faststate


def describe(state: Counter) -> dict[str, Any]:
    return {"count": state.count, "ns": signal_name(state), "url": event_url(state.increment)}


def starlette_app(
    scope: StateScope,
    *,
    middleware: dict[str, Any] | None = None,
    **registration: Any,
) -> Starlette:
    """A Starlette app with Counter under ``scope`` and a few pages using it."""
    app = state_app({Counter: {"scope": scope, **registration}}, **(middleware or {}))

    def page(request: Request) -> JSONResponse:
        return JSONResponse(describe(use_state(request, Counter)))

    async def async_page(request: Request) -> JSONResponse:
        return JSONResponse(describe(await ause_state(request, Counter)))

    def keyed(request: Request) -> JSONResponse:
        return JSONResponse(describe(use_state(request, Counter, key=request.path_params["key"])))

    def pair(request: Request) -> JSONResponse:
        a = use_state(request, Counter, key="a")
        b = use_state(request, Counter, key="b")
        return JSONResponse({"a": describe(a), "b": describe(b)})

    app.add_route("/", page)
    app.add_route("/async", async_page)
    app.add_route("/keyed/{key}", keyed)
    app.add_route("/pair", pair)
    app.add_route("/lists/{id}", page)  # the record id comes from the path
    return app


def count(client: TestClient, url: str = "/") -> int:
    response = client.get(url)
    assert response.status_code == 200, response.text
    value: int = response.json()["count"]
    return value


# --- SESSION -----------------------------------------------------------------


def test_each_session_has_its_own_instance() -> None:
    app = starlette_app(StateScope.SESSION)
    with TestClient(app) as alice, TestClient(app) as bob:
        assert fire(alice, "/Counter/increment", amount=2).signals == {"Counter": {"count": 2}}
        assert fire(alice, "/Counter/increment").signals == {"Counter": {"count": 3}}
        assert fire(bob, "/Counter/increment").signals == {"Counter": {"count": 1}}

        assert count(alice) == 3
        assert count(bob) == 1
        assert alice.cookies["faststate_session"] != bob.cookies["faststate_session"]


def test_same_client_keeps_its_count_across_requests() -> None:
    app = starlette_app(StateScope.SESSION)
    with TestClient(app) as client:
        assert count(client) == 0
        for _ in range(3):
            assert fire(client, "/Counter/increment").status_code == 200
        assert count(client) == 3
        assert count(client, "/async") == 3
        assert client.get("/").json()["ns"] == "Counter"


def test_a_cookieless_client_starts_from_scratch_every_time() -> None:
    app = starlette_app(StateScope.SESSION)
    with TestClient(app) as client:
        fire(client, "/Counter/increment", amount=5)
        client.cookies.clear()
        assert count(client) == 0


# --- GLOBAL ------------------------------------------------------------------


def test_global_instance_is_shared_by_every_client() -> None:
    app = starlette_app(StateScope.GLOBAL)
    with TestClient(app) as alice, TestClient(app) as bob:
        fire(alice, "/Counter/increment", amount=2)
        assert fire(bob, "/Counter/increment").signals == {"Counter": {"count": 3}}
        assert count(alice) == 3
        assert count(bob, "/async") == 3
        assert alice.get("/").json()["ns"] == "Counter"


# --- COMPONENT ---------------------------------------------------------------


def test_two_components_on_one_session_keep_separate_counts() -> None:
    app = starlette_app(StateScope.COMPONENT)
    with TestClient(app) as client:
        page = client.get("/pair").json()
        assert page["a"]["ns"] == "Counter_a"
        assert page["b"]["ns"] == "Counter_b"
        assert page["a"]["url"] == "/Counter/increment?component_id=a"
        assert page["b"]["url"] == "/Counter/increment?component_id=b"

        assert fire(client, page["a"]["url"]).signals == {"Counter_a": {"count": 1}}
        assert fire(client, page["a"]["url"]).signals == {"Counter_a": {"count": 2}}
        assert fire(client, page["b"]["url"], amount=10).signals == {"Counter_b": {"count": 10}}

        page = client.get("/pair").json()
        assert (page["a"]["count"], page["b"]["count"]) == (2, 10)
        # The same components reached through ?component_id= on a plain page.
        assert count(client, "/?component_id=a") == 2
        assert count(client, "/?component_id=b") == 10
        assert count(client, "/async?component_id=b") == 10
        assert count(client, "/?component_id=c") == 0


def test_component_event_url_from_query_page_hits_that_component() -> None:
    app = starlette_app(StateScope.COMPONENT)
    with TestClient(app) as client:
        url = client.get("/?component_id=sidebar").json()["url"]
        assert url == "/Counter/increment?component_id=sidebar"
        result = fire(client, url, amount=4)
        assert result.signals == {"Counter_sidebar": {"count": 4}}
        assert count(client, "/keyed/sidebar") == 4
        assert count(client, "/?component_id=main") == 0


def test_component_is_bound_to_the_session() -> None:
    app = starlette_app(StateScope.COMPONENT)
    with TestClient(app) as alice, TestClient(app) as mallory:
        fire(alice, "/Counter/increment?component_id=a", amount=7)
        # Same component id from another session: a separate instance.
        assert count(mallory, "/?component_id=a") == 0
        assert fire(mallory, "/Counter/increment?component_id=a").signals == {
            "Counter_a": {"count": 1}
        }
        assert count(alice, "/?component_id=a") == 7
        assert count(mallory, "/?component_id=a") == 1


def test_component_without_id_is_400() -> None:
    app = starlette_app(StateScope.COMPONENT)
    with TestClient(app) as client:
        assert client.get("/").status_code == 400
        assert fire(client, "/Counter/increment").status_code == 400


def test_component_event_through_bound_method() -> None:
    """``fire`` accepts the bound event method of an instance a page resolved."""
    captured: list[Counter] = []
    app = starlette_app(StateScope.COMPONENT)

    def capture(request: Request) -> JSONResponse:
        captured.append(use_state(request, Counter, key="x-1"))
        return JSONResponse({})

    app.add_route("/capture", capture)

    with TestClient(app) as client:
        client.get("/capture")
        result = fire(client, captured[0].increment, amount=3)
        assert result.signals == {"Counter_x_2d_1": {"count": 3}}
        assert count(client, "/keyed/x-1") == 3


# --- RECORD ------------------------------------------------------------------


def test_record_from_path_and_query_shared_between_sessions() -> None:
    app = starlette_app(StateScope.RECORD)
    with TestClient(app) as alice, TestClient(app) as bob:
        page = alice.get("/lists/42").json()
        assert page["ns"] == "Counter_42"
        assert page["url"] == "/Counter/increment?record_id=42"

        assert fire(alice, page["url"]).signals == {"Counter_42": {"count": 1}}
        assert fire(bob, page["url"], amount=2).signals == {"Counter_42": {"count": 3}}

        assert count(bob, "/lists/42") == 3
        assert count(alice, "/?record_id=42") == 3
        assert count(alice, "/?id=42") == 3
        assert count(alice, "/async?record_id=42") == 3
        assert count(bob, "/lists/43") == 0


def test_record_event_accepts_id_in_query() -> None:
    app = starlette_app(StateScope.RECORD)
    with TestClient(app) as client:
        assert fire(client, "/Counter/increment?id=7").signals == {"Counter_7": {"count": 1}}
        assert count(client, "/lists/7") == 1


def test_record_namespaces_are_safe_and_never_shared() -> None:
    app = starlette_app(StateScope.RECORD)
    with TestClient(app) as client:
        page = client.get("/?record_id=a-b.c d").json()
        assert page["ns"] == "Counter_a_2d_b_2e_c_20_d"
        assert fire(client, page["url"]).signals == {"Counter_a_2d_b_2e_c_20_d": {"count": 1}}
        # Ids that a lossy reduction would merge get namespaces of their own.
        other = client.get("/?record_id=a_b_c_d").json()
        assert other["ns"] == "Counter_a__b__c__d"
        assert fire(client, other["url"]).signals == {"Counter_a__b__c__d": {"count": 1}}
        assert count(client, "/?record_id=a-b.c d") == 1


def test_record_without_id_is_400_on_page_and_event() -> None:
    app = starlette_app(StateScope.RECORD)
    with TestClient(app) as client:
        assert client.get("/").status_code == 400
        assert fire(client, "/Counter/increment").status_code == 400
        assert client.get("/async").status_code == 400


def test_record_uses_no_session_cookie() -> None:
    app = starlette_app(StateScope.RECORD)
    with TestClient(app) as client:
        assert fire(client, "/Counter/increment?record_id=1").status_code == 200
        assert "set-cookie" not in client.get("/lists/1").headers
        assert "faststate_session" not in client.cookies


# --- bad ids -----------------------------------------------------------------


def test_overlong_or_repeated_ids_are_400() -> None:
    app = starlette_app(StateScope.RECORD)
    longest = "x" * 128
    with TestClient(app) as client:
        assert client.get(f"/?record_id={longest}").status_code == 200
        assert client.get(f"/?record_id={longest}x").status_code == 400
        assert fire(client, f"/Counter/increment?record_id={longest}x").status_code == 400
        assert client.get(f"/lists/{longest}x").status_code == 400
        assert client.get("/?record_id=1&record_id=2").status_code == 400
        assert fire(client, "/Counter/increment?record_id=1&record_id=2").status_code == 400
        assert count(client, "/?record_id=1") == 0
        assert count(client, "/?record_id=2") == 0


def test_overlong_or_repeated_component_ids_are_400() -> None:
    app = starlette_app(StateScope.COMPONENT)
    with TestClient(app) as client:
        assert client.get("/keyed/" + "y" * 129).status_code == 400
        assert client.get("/?component_id=" + "y" * 129).status_code == 400
        assert fire(client, "/Counter/increment?component_id=a&component_id=b").status_code == 400
        assert count(client, "/?component_id=a") == 0


# --- USER --------------------------------------------------------------------


def test_user_scope_without_auth_is_401_on_page_and_event() -> None:
    app = starlette_app(StateScope.USER)
    with TestClient(app) as client:
        assert client.get("/").status_code == 401
        assert client.get("/async").status_code == 401
        assert fire(client, "/Counter/increment").status_code == 401


def fasthtml_user_app(**registration: Any) -> FastHTML:
    """A FastHTML app whose beforeware logs users in from ``X-User`` or ``?user=``."""

    def login(req: Request) -> None:
        user = req.headers.get("x-user") or req.query_params.get("user")
        if user:
            req.scope["auth"] = user

    app = with_faststate(
        FastHTML(before=Beforeware(login), secret_key="fasthtml-secret", htmx=False, surreal=False),
        {Counter: {"scope": StateScope.USER, **registration}},
    )

    @app.route("/")
    def index(req: Request) -> JSONResponse:
        return JSONResponse(describe(use_state(req, Counter)))

    return app


def test_user_scope_with_fasthtml_beforeware() -> None:
    app = fasthtml_user_app()
    alice = {"X-User": "alice"}
    with TestClient(app) as laptop, TestClient(app) as phone, TestClient(app) as other:
        # The event route sees scope["auth"]: beforeware ran for it.
        assert fire(laptop, "/Counter/increment", headers=alice).signals == {
            "Counter": {"count": 1}
        }
        assert fire(phone, "/Counter/increment", headers=alice, amount=2).signals == {
            "Counter": {"count": 3}
        }
        # Two sessions (clients) of one user share the instance.
        assert laptop.get("/", headers=alice).json()["count"] == 3
        assert phone.get("/?user=alice").json()["count"] == 3
        # A different user has their own.
        assert other.get("/?user=bob").json()["count"] == 0
        assert fire(other, "/Counter/increment?user=bob").signals == {"Counter": {"count": 1}}
        assert laptop.get("/", headers=alice).json()["count"] == 3
        # Without a login the event is refused and nothing changes.
        assert fire(other, "/Counter/increment").status_code == 401
        assert other.get("/").status_code == 401
        assert other.get("/?user=bob").json()["count"] == 1


def test_user_key_option_of_the_middleware() -> None:
    def api_user(connection: HTTPConnection) -> str | None:
        return connection.headers.get("x-api-user")

    app = starlette_app(StateScope.USER, middleware={"user_key": api_user})
    with TestClient(app) as one, TestClient(app) as two:
        fire(one, "/Counter/increment", headers={"X-Api-User": "u1"}, amount=5)
        assert two.get("/", headers={"X-Api-User": "u1"}).json()["count"] == 5
        assert two.get("/", headers={"X-Api-User": "u2"}).json()["count"] == 0
        assert two.get("/").status_code == 401
        assert fire(two, "/Counter/increment").status_code == 401


class HeaderAuth(AuthenticationBackend):
    async def authenticate(
        self, conn: HTTPConnection
    ) -> tuple[AuthCredentials, SimpleUser | UnauthenticatedUser] | None:
        name = conn.headers.get("x-login")
        if not name:
            return None
        return AuthCredentials(["authenticated"]), SimpleUser(name)


def test_user_scope_from_starlette_authentication() -> None:
    app = starlette_app(StateScope.USER)
    app.add_middleware(AuthenticationMiddleware, backend=HeaderAuth())
    with TestClient(app) as one, TestClient(app) as two:
        fire(one, "/Counter/increment", headers={"X-Login": "carol"}, amount=2)
        assert two.get("/", headers={"X-Login": "carol"}).json()["count"] == 2
        assert two.get("/", headers={"X-Login": "dave"}).json()["count"] == 0
        # request.user is UnauthenticatedUser here: not a user.
        assert two.get("/").status_code == 401
        assert fire(two, "/Counter/increment").status_code == 401


async def test_user_scope_with_async_client_and_beforeware() -> None:
    app = fasthtml_user_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        result = await afire(client, "/Counter/increment", headers={"X-User": "eve"})
        assert result.signals == {"Counter": {"count": 1}}
        page = await client.get("/", headers={"X-User": "eve"})
        assert page.json()["count"] == 1


# --- authorize ---------------------------------------------------------------


def allow_header(request: Request, key: str) -> bool:
    return request.headers.get("x-allow") == "yes"


async def allow_header_async(request: Request, key: str) -> bool:
    return request.headers.get("x-allow") == "yes"


def check_authorize(authorize: Callable[..., Any]) -> None:
    app = starlette_app(StateScope.GLOBAL, authorize=authorize)
    yes = {"X-Allow": "yes"}
    with TestClient(app) as client:
        assert client.get("/", headers=yes).json()["count"] == 0
        assert fire(client, "/Counter/increment", headers=yes).signals == {"Counter": {"count": 1}}

        assert client.get("/").status_code == 403
        assert client.get("/async").status_code == 403
        refused = fire(client, "/Counter/increment", amount=100)
        assert refused.status_code == 403
        assert refused.signals == {}

        assert client.get("/", headers=yes).json()["count"] == 1
        assert client.get("/async", headers=yes).json()["count"] == 1


def test_sync_authorize_refuses_page_and_event() -> None:
    check_authorize(allow_header)


def test_async_authorize_refuses_page_and_event() -> None:
    check_authorize(allow_header_async)


def test_authorize_receives_the_record_id() -> None:
    """An allow-list of ids works as written: the owner of record "1" gets it."""
    seen: list[str] = []

    def only_record_1(request: Request, key: str) -> bool:
        seen.append(key)
        return key == "1"

    app = starlette_app(StateScope.RECORD, authorize=only_record_1)
    with TestClient(app) as client:
        assert fire(client, "/Counter/increment?record_id=1").status_code == 200
        assert fire(client, "/Counter/increment?record_id=2").status_code == 403
        assert client.get("/lists/2").status_code == 403
        assert count(client, "/lists/1") == 1
    assert set(seen) == {"1", "2"}


def test_authorize_sees_the_session_id() -> None:
    seen: list[str] = []

    def record(request: Request, key: str) -> bool:
        seen.append(key)
        return True

    app = starlette_app(StateScope.SESSION, authorize=record)
    with TestClient(app) as client:
        fire(client, "/Counter/increment")
        count(client)
    session_id = client.cookies["faststate_session"].split(".", 1)[0]
    assert seen == [session_id] * 2


def test_use_state_on_the_event_loop_with_async_authorize_says_use_ause_state() -> None:
    app = starlette_app(StateScope.GLOBAL, authorize=allow_header_async)

    async def wrong(request: Request) -> JSONResponse:
        return JSONResponse(describe(use_state(request, Counter)))

    app.add_route("/wrong", wrong)
    with TestClient(app) as client, pytest.raises(RuntimeError, match="ause_state"):
        client.get("/wrong", headers={"X-Allow": "yes"})


def test_record_id_from_an_int_path_convertor() -> None:
    app = starlette_app(StateScope.RECORD)

    def item(request: Request) -> JSONResponse:
        return JSONResponse(describe(use_state(request, Counter)))

    app.add_route("/items/{id:int}", item)
    with TestClient(app) as client:
        page = client.get("/items/42").json()
        assert page["ns"] == "Counter_42"
        fire(client, page["url"], amount=2)
        assert count(client, "/lists/42") == 2


def test_id_with_control_characters_is_400() -> None:
    app = starlette_app(StateScope.RECORD)
    with TestClient(app) as client:
        assert client.get("/?record_id=a%0Ab").status_code == 400
        assert fire(client, "/Counter/increment?record_id=a%00b").status_code == 400
        assert client.get("/?record_id=").status_code == 400
