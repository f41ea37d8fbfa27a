"""Session rotation at login, and bounded JSON bodies."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from faststate import ReactiveState, StateScope, event, rotate_session, use_state
from faststate.testing import fire

from .apps import state_app


class Cart(ReactiveState):
    items: int = 0

    @event
    def add(self, payload: object = None) -> None:
        self.items += 1


class Draft(ReactiveState):
    words: int = 0

    @event
    def write(self) -> None:
        self.words += 1


def make_app() -> Starlette:
    async def page(request: Request) -> PlainTextResponse:
        return PlainTextResponse(
            f"{use_state(request, Cart).items}|{use_state(request, Draft).words}"
        )

    async def login(request: Request) -> PlainTextResponse:
        await rotate_session(request, carry=[Cart])
        return PlainTextResponse("welcome")

    return state_app(
        {Cart: StateScope.SESSION, Draft: StateScope.SESSION},
        routes=[Route("/", page), Route("/login", login, methods=["POST"])],
    )


def test_login_rotates_the_session_and_carries_only_what_was_asked() -> None:
    app = make_app()
    with TestClient(app) as victim, TestClient(app) as attacker:
        attacker.get("/")
        planted = attacker.cookies["faststate_session"]
        for cookie in attacker.cookies.jar:  # session fixation: the victim gets his id
            victim.cookies.jar.set_cookie(cookie)
        fire(victim, "/Cart/add")
        fire(victim, "/Draft/write")
        assert victim.get("/").text == "1|1"

        response = victim.post("/login")
        new_cookie = response.cookies["faststate_session"]
        assert new_cookie != planted
        assert victim.get("/").text == "1|0"  # the cart moved, the rest stayed behind

        # The attacker's cookie no longer reaches anything of the victim's.
        assert attacker.get("/").text == "0|1"
        fire(victim, "/Cart/add")
        assert attacker.get("/").text == "0|1"
        assert victim.get("/").text == "2|0"


def test_rotation_without_a_session_just_starts_one() -> None:
    with TestClient(make_app()) as client:
        assert "faststate_session" in client.post("/login").cookies
        assert client.get("/").text == "0|0"


def test_deeply_nested_body_is_refused_and_changes_nothing() -> None:
    with TestClient(make_app()) as client:
        client.get("/")
        deep: object = 1
        for _ in range(40):
            deep = {"a": deep}
        result = fire(client, "/Cart/add", signals={"payload": deep})
        assert result.status_code == 400
        assert "deeper" in result.text
        shallow: object = 1
        for _ in range(10):
            shallow = [shallow]
        assert fire(client, "/Cart/add", signals={"payload": shallow}).status_code == 200
        assert client.get("/").text == "1|0"
