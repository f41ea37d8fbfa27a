"""Ids, users and cookies reach only what the caller may reach."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from itsdangerous import TimestampSigner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from faststate import ReactiveState, StateScope, event, use_state
from faststate.testing import fire, parse_sse

from ..apps import SECRET, state_app
from .support import (
    COOKIE,
    JSON_HEADERS,
    Locker,
    dump,
    store_of,
    stored,
    tampered,
    vault_app,
)

# --- isolation: ids, users and cookies reach only what the caller may ----------------------
# Proven elsewhere, not repeated here: a component id is bound to the session, records
# are refused by authorize on pages and events, USER without login is 401
# (tests/test_scopes.py); forged, foreign-key and expired cookies on pages
# (tests/test_middleware.py); forged, expired, other-key, other-session and other-user
# live tokens (tests/test_live_streams.py).


class Widget(ReactiveState):
    count: int = 0

    @event
    def increment(self, amount: int = 1) -> None:
        self.count += amount


class Doc(ReactiveState):
    body: str = ""

    @event
    def write(self, body: str) -> None:
        self.body = body


class Profile(ReactiveState):
    likes: int = 0

    @event
    def like(self) -> None:
        self.likes += 1


TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}


def owner_only(request: Any, key: str) -> bool:
    user = TOKENS.get(request.headers.get("authorization", ""))
    return user is not None and key == f"{user}-doc"


def isolation_app(**options: Any) -> Starlette:
    def page(request: Request) -> JSONResponse:
        return JSONResponse({"count": use_state(request, Widget).count})  # type: ignore[attr-defined]

    def profile(request: Request) -> JSONResponse:
        return JSONResponse({"likes": use_state(request, Profile).likes})  # type: ignore[attr-defined]

    app = state_app(
        {
            Widget: StateScope.COMPONENT,
            Doc: {"scope": StateScope.RECORD, "authorize": owner_only},
            Profile: StateScope.USER,
        },
        user_key=lambda request: TOKENS.get(request.headers.get("authorization", "")),
        **options,
    )
    app.add_route("/", page)
    app.add_route("/profile", profile)
    return app


def all_entries(app: Starlette) -> dict[str, str]:
    store = store_of(app)
    entries = {**store._probation.by_key, **store._protected.by_key}
    return {key: dump(state) for key, state in entries.items()}


def test_component_ids_never_reach_another_sessions_component() -> None:
    app = isolation_app()
    with TestClient(app) as alice, TestClient(app) as mallory:
        assert fire(alice, "/Widget/increment?component_id=a", amount=7).status_code == 200
        alice_sid = alice.cookies[COOKIE].split(".", 1)[0]
        victim_key = f"component:Widget:{alice_sid}:a"
        victim = dump(stored(app, victim_key, Widget))
        mallory.get("/?component_id=warmup")
        attempts = [
            "a",
            f"{alice_sid}:a",
            f"{alice_sid}%3Aa",
            victim_key,
            f"Widget:{alice_sid}:a",
            f"../{alice_sid}/a",
        ]
        for component_id in attempts:
            result = fire(mallory, f"/Widget/increment?component_id={quote(component_id)}")
            assert result.status_code == 200, component_id
            (namespace,) = result.signals
            assert result.signals[namespace] == {"count": 1}
            assert dump(stored(app, victim_key, Widget)) == victim
        # An id in the body (the page's signals) does not select a component.
        result = fire(mallory, "/Widget/increment", signals={"component_id": "a"})
        assert result.status_code == 400
        # A visitor without a cookie gets a component of a new session of his own.
        with TestClient(app) as stranger:
            assert fire(stranger, "/Widget/increment?component_id=a").signals == {
                "Widget_a": {"count": 1}
            }
        assert dump(stored(app, victim_key, Widget)) == victim
        assert alice.get("/?component_id=a").json() == {"count": 7}


def test_records_refused_by_authorize_are_never_loaded_or_changed() -> None:
    app = isolation_app()
    alice = {"Authorization": "tok-alice"}
    with TestClient(app) as client:
        written = fire(client, "/Doc/write?record_id=alice-doc", body="mine", headers=alice)
        assert written.status_code == 200
        before = all_entries(app)
        attempts: list[tuple[str, dict[str, str]]] = [
            ("/Doc/write?record_id=alice-doc&body=owned", {"Authorization": "tok-bob"}),
            ("/Doc/write?id=alice-doc&body=owned", {"Authorization": "tok-bob"}),
            ("/Doc/write?record_id=alice-doc&body=owned", {}),
            ("/Doc/write?record_id=alice-doc&body=owned", {"Authorization": "tok-mallory"}),
            ("/Doc/write?record_id=alice-doc&id=bob-doc&body=owned", {"Authorization": "tok-bob"}),
            ("/Doc/write?record_id=bob-doc&body=owned", alice),
            ("/Doc/write?record_id=Alice-Doc&body=owned", alice),
        ]
        for url, headers in attempts:
            result = fire(client, url, headers=headers)
            assert result.status_code == 403, (url, headers)
            assert "owned" not in result.text
        # Refused means not even created: the store holds what it held.
        assert all_entries(app) == before
        assert stored(app, "record:Doc:alice-doc", Doc).body == "mine"  # type: ignore[attr-defined]


def test_user_state_without_a_login_is_401_and_creates_nothing() -> None:
    app = isolation_app()
    with TestClient(app) as client:
        assert fire(client, "/Profile/like", headers={"Authorization": "tok-alice"}).signals == {
            "Profile": {"likes": 1}
        }
        before = all_entries(app)
        for headers, signals, query in [
            ({}, {}, ""),
            ({"Authorization": "tok-nobody"}, {}, ""),
            ({}, {"user": "alice", "uid": "alice", "auth": "alice"}, "?user=alice&auth=alice"),
            ({"Authorization": "alice"}, {"Profile": {"likes": 100}}, ""),
        ]:
            result = fire(client, "/Profile/like" + query, signals=signals, headers=headers)
            assert result.status_code == 401
        assert client.get("/profile").status_code == 401
        assert all_entries(app) == before


def forged_cookies(genuine: str) -> dict[str, str]:
    session_id, _, rest = genuine.partition(".")
    timestamp, _, signature = rest.partition(".")
    other_key = TimestampSigner("another-key", salt="faststate.session").sign(session_id)
    expired = TimestampSigner(SECRET, salt="faststate.session")
    expired.get_timestamp = lambda: int(time.time() - 15 * 24 * 3600)  # type: ignore[method-assign]
    return {
        "unsigned id": session_id,
        "tampered signature": tampered(genuine),
        "no signature": f"{session_id}.{timestamp}.",
        "other key": other_key.decode(),
        "expired": expired.sign(session_id).decode(),
        "id with a suffix": f"{session_id}x.{timestamp}.{signature}",
        "quoted": f'"{session_id}"',
    }


def test_forged_or_expired_cookies_never_reach_the_session_through_events() -> None:
    app = vault_app()
    with TestClient(app) as victim:
        fire(victim, "/Locker/add", amount=5)
        genuine = victim.cookies[COOKIE]
        session_id = genuine.split(".", 1)[0]
        key = f"session:Locker:{session_id}"
        before = dump(stored(app, key, Locker))
        for name, cookie in forged_cookies(genuine).items():
            with TestClient(app) as attacker:
                headers = {**JSON_HEADERS, "Cookie": f"{COOKIE}={cookie}"}
                response = attacker.post("/Locker/add?amount=100", content=b"{}", headers=headers)
                assert response.status_code == 200, name
                assert parse_sse(response.text)[0].signals == {"Locker": {"items": 100}}, name
                issued = response.cookies.get(COOKIE)
                assert issued is not None and not issued.startswith(session_id), name
            assert dump(stored(app, key, Locker)) == before, name
        assert victim.get("/").json()["items"] == 5
