"""Two-way binding: ``Bindable`` fields travel with events; every other field stays
the server's."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from faststate import Bindable, ReactiveState, StateScope, action, bind, event, use_state
from faststate._errors import FAILED_MESSAGE
from faststate.testing import fire
from tests.apps import state_app


class Signup(ReactiveState):
    email: Bindable[str] = ""
    age: Bindable[Annotated[int, Field(ge=18)]] = 18
    welcomed: bool = False
    seen: str = ""

    @event
    def submit(self) -> None:
        self.seen = f"{self.email}/{self.age}"
        self.welcomed = True

    @event
    def fail(self) -> None:
        raise RuntimeError("the mail server is down")


def _client() -> TestClient:
    def page(request: Request) -> JSONResponse:
        signup = use_state(request, Signup)
        return JSONResponse(
            {
                "state": signup.model_dump(exclude={"id"}),
                "bind": bind(signup, "email"),
                "action": action(signup.submit),
            }
        )

    app = state_app({Signup: StateScope.SESSION})
    app.add_route("/", page)
    return TestClient(app)


def test_bindable_values_reach_the_event_and_server_owned_ones_do_not() -> None:
    with _client() as client:
        sent = {"Signup": {"email": "ada@example.com", "age": "36", "welcomed": True, "seen": "x"}}
        result = fire(client, "/Signup/submit", signals=sent)
        assert result.status_code == 200
        # The page's copy of welcomed and seen was never read: the event set them.
        assert result.signals["Signup"]["seen"] == "ada@example.com/36"
        state = client.get("/").json()["state"]
        assert state == {
            "email": "ada@example.com",
            "age": 36,
            "welcomed": True,
            "seen": "ada@example.com/36",
        }


def test_an_invalid_bindable_value_is_refused_by_name_and_changes_nothing() -> None:
    with _client() as client:
        result = fire(client, "/Signup/submit", signals={"Signup": {"email": "x@y.z", "age": 12}})
        assert result.errors == {"age": "Input should be greater than or equal to 18"}
        assert client.get("/").json()["state"]["email"] == ""


def test_bound_values_are_rolled_back_with_a_failing_event() -> None:
    with _client() as client:
        result = fire(client, "/Signup/fail", signals={"Signup": {"email": "lost@y.z"}})
        assert result.errors == {"": FAILED_MESSAGE}
        assert "mail server" not in result.text
        assert client.get("/").json()["state"]["email"] == ""


def test_bind_and_action_let_the_page_send_only_bindable_fields() -> None:
    with _client() as client:
        page = client.get("/").json()
        assert page["bind"]["data-bind"] == "Signup.email"
        # marked invalid while the page shows an error for the field
        assert "$Signup._errors" in page["bind"]["data-attr:aria-invalid"]
        # v1 filters the namespace down to its bindable fields.
        assert "^Signup(\\\\.(?!(?:age|email)$)|$)" in page["action"]
    with pytest.raises(TypeError, match="Bindable"):
        bind(Signup(), "welcomed")
