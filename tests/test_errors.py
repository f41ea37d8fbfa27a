"""Errors on the page: refused events change nothing and say why, per field; the
next accepted event clears what the page shows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated

import pytest
from pydantic import BaseModel, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from faststate import (
    Bindable,
    Invalid,
    LocalBroker,
    ReactiveState,
    StateScope,
    error,
    event,
    use_state,
)
from faststate._errors import FAILED_MESSAGE
from faststate._live.broker import Change
from faststate.testing import fire
from tests.apps import state_app


class Address(BaseModel):
    street: str
    zip: Annotated[str, Field(pattern=r"^\d{5}$")]


class Signup(ReactiveState):
    email: Bindable[str] = ""
    age: Bindable[Annotated[int, Field(ge=18)]] = 18
    draft: Bindable[str] = ""
    handle: Bindable[Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True)]] = ""
    welcomed: bool = False
    notes: list[str] = Field(default_factory=list)

    @event
    def submit(self) -> None:
        self.notes.append(self.email)  # changed before the refusal: must be undone
        if self.email.endswith("@example.org"):
            raise Invalid(email="that domain is closed")
        if not self.email:
            raise Invalid("fill in the form first")
        self.welcomed = True

    @event
    def post(self) -> None:
        """Accepts the draft and clears the input, as a chat's send button does."""
        self.notes.append(self.draft)
        self.draft = ""

    @event
    def ship(self, to: Address, copies: int = 1) -> None:
        self.notes.append(f"{to.street} {to.zip} x{copies}")

    @event
    def nothing(self) -> None:
        pass

    @event
    def explode(self) -> None:
        self.welcomed = True
        raise ConnectionError("database password hunter2 refused")

    @event
    def steps(self) -> Iterator[None]:
        self.notes.append("first")
        yield None
        raise Invalid(draft="too late")


class Recording(LocalBroker):
    """Reaches every key and keeps what was published."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[Change] = []

    def reaches(self, key: str) -> bool:
        return True

    async def publish(self, change: Change) -> None:
        self.published.append(change)


@pytest.fixture
def broker() -> Recording:
    return Recording()


@pytest.fixture
def client(broker: Recording) -> Iterator[TestClient]:
    def page(request: Request) -> JSONResponse:
        signup = use_state(request, Signup)
        return JSONResponse(
            {"state": signup.model_dump(exclude={"id"}), "error": error(signup, "email")}
        )

    app = state_app({Signup: StateScope.SESSION}, broker=broker)
    app.add_route("/", page)
    with TestClient(app) as client:
        yield client


def stored(client: TestClient) -> dict[str, object]:
    state: dict[str, object] = client.get("/").json()["state"]
    return state


def test_invalid_with_a_field_shows_its_message_and_changes_nothing(
    client: TestClient, broker: Recording
) -> None:
    before = stored(client)
    result = fire(client, "/Signup/submit", signals={"Signup": {"email": "ada@example.org"}})
    assert result.status_code == 200
    assert result.errors == {"email": "that domain is closed"}
    # Only the errors: the page keeps what the user typed, to correct it.
    assert list(result.signals["Signup"]) == ["_errors"]
    assert stored(client) == before  # neither the bound email nor the note was kept
    assert broker.published == []  # and no live page was told anything


def test_invalid_without_a_field_is_the_general_message(client: TestClient) -> None:
    result = fire(client, "/Signup/submit", signals={"Signup": {"email": ""}})
    assert result.errors == {"": "fill in the form first"}


def test_the_next_accepted_event_clears_what_the_page_shows(
    client: TestClient, broker: Recording
) -> None:
    refused = fire(client, "/Signup/submit", signals={"Signup": {"email": "ada@example.org"}})
    shown = refused.signals["Signup"]["_errors"]
    accepted = fire(
        client, "/Signup/submit", signals={"Signup": {"email": "ada@example.com", "_errors": shown}}
    )
    assert accepted.errors == {}
    assert accepted.signals["Signup"]["_errors"] == ""
    assert accepted.signals["Signup"]["welcomed"] is True
    # Errors are the page's own: live pages never get them.
    assert [change.patch for change in broker.published] == [
        {"email": "ada@example.com", "notes": ["ada@example.com"], "welcomed": True}
    ]


def test_an_event_changing_nothing_clears_errors_only_when_some_show(client: TestClient) -> None:
    assert fire(client, "/Signup/nothing").status_code == 204
    shown = json.dumps({"email": "x"})
    result = fire(client, "/Signup/nothing", signals={"Signup": {"_errors": shown}})
    assert result.signals == {"Signup": {"_errors": ""}}


def test_every_error_of_a_model_parameter_shows_at_its_dotted_path(client: TestClient) -> None:
    result = fire(client, "/Signup/ship", signals={"to": {"zip": "12"}, "copies": "many"})
    assert result.errors == {
        "to.street": "Field required",
        "to.zip": "String should match pattern '^\\d{5}$'",
        "copies": "Input should be a valid integer, unable to parse string as an integer",
    }
    assert stored(client)["notes"] == []


def test_invalid_parameters_and_bindable_values_show_together(client: TestClient) -> None:
    result = fire(client, "/Signup/ship", signals={"Signup": {"age": 12}, "to": {}})
    assert set(result.errors) == {"age", "to.street", "to.zip"}
    assert result.errors["age"] == "Input should be greater than or equal to 18"


def test_a_failing_event_shows_a_generic_message_never_its_details(
    client: TestClient, broker: Recording, caplog: pytest.LogCaptureFixture
) -> None:
    before = stored(client)
    result = fire(client, "/Signup/explode", signals={"Signup": {"draft": "kept on the page"}})
    assert result.status_code == 200
    assert result.errors == {"": FAILED_MESSAGE}
    assert "hunter2" not in result.text and "hunter2" in caplog.text  # the log has it
    assert stored(client) == before
    assert broker.published == []


def test_the_server_clears_a_bound_input_it_accepted(client: TestClient) -> None:
    result = fire(client, "/Signup/post", signals={"Signup": {"draft": "hello", "email": ""}})
    # The page showed "hello" in the input: it is told to clear it, though the
    # stored draft was "" before and after.
    assert result.signals == {"Signup": {"draft": "", "notes": ["hello"]}}
    assert stored(client)["draft"] == ""


def test_a_bound_value_the_event_keeps_is_not_sent_back(
    client: TestClient, broker: Recording
) -> None:
    result = fire(client, "/Signup/submit", signals={"Signup": {"email": "ada@example.com"}})
    assert "email" not in result.signals["Signup"]  # the page has it: typing goes on
    assert broker.published[-1].patch["email"] == "ada@example.com"  # other pages do not


def test_a_bound_value_its_type_normalises_is_sent_back(client: TestClient) -> None:
    result = fire(client, "/Signup/nothing", signals={"Signup": {"handle": " Ada ", "draft": "x"}})
    assert result.signals == {"Signup": {"handle": "ada"}}  # the draft is as typed
    assert stored(client)["handle"] == "ada"


def test_a_generator_refused_after_progress_undoes_it_and_keeps_the_input(
    client: TestClient,
) -> None:
    result = fire(client, "/Signup/steps", signals={"Signup": {"draft": "typed"}})
    patches = [e.signals["Signup"] for e in result.events]
    assert patches[0] == {"notes": ["first"]}
    assert patches[-1] == {"notes": [], "_errors": '{"draft":"too late"}'}
    assert result.errors == {"draft": "too late"}
    assert stored(client)["notes"] == [] and stored(client)["draft"] == ""


def test_error_helper_shows_and_hides_one_message(client: TestClient) -> None:
    attributes = client.get("/").json()["error"]
    assert set(attributes) == {"data-text", "data-show"}
    assert "$Signup._errors" in attributes["data-text"] and '["email"]' in attributes["data-text"]
    assert attributes["data-show"] == "!!" + attributes["data-text"]


def test_invalid_needs_a_message() -> None:
    with pytest.raises(TypeError, match="message"):
        Invalid()
    assert Invalid("a", b="c").messages == {"": "a", "b": "c"}
