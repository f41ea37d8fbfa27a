"""faststate.fastapi: ``UseState`` resolves states in FastAPI routes; events stay out of OpenAPI."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import HTTPConnection

from faststate import ReactiveState, StateScope, event
from faststate.fastapi import UseState
from faststate.testing import fire

from .apps import Counter, with_faststate


class Doc(ReactiveState):
    title: str = ""

    @event
    def rename(self, title: str) -> None:
        self.title = title


class Panel(ReactiveState):
    opened: int = 0


async def only_public_docs(request: HTTPConnection, key: str) -> bool:
    """An async authorize: UseState must await it, not call it from a thread."""
    return key.startswith("public-")


def make_app() -> FastAPI:
    app = with_faststate(
        FastAPI(),
        {
            Counter: StateScope.SESSION,
            Doc: {"scope": StateScope.RECORD, "authorize": only_public_docs},
            Panel: StateScope.COMPONENT,
        },
    )

    @app.get("/count")
    async def count(counter: Annotated[Counter, UseState(Counter)]) -> dict[str, int]:
        return {"count": counter.count}

    @app.get("/count-sync")
    def count_sync(counter: Counter = UseState(Counter)) -> dict[str, int]:  # noqa: B008 - the default form works too
        return {"count": counter.count}

    @app.get("/docs/{record_id}")
    async def show(doc: Annotated[Doc, UseState(Doc)]) -> dict[str, str]:
        return {"title": doc.title, "id": doc.id}

    @app.get("/panel")
    async def panel(
        left: Annotated[Panel, UseState(Panel, key="left")],
        right: Annotated[Panel, UseState(Panel, key="right")],
    ) -> dict[str, bool]:
        return {"distinct": left is not right and left.id != right.id}

    return app


def test_session_scope_gives_each_session_its_own_instance() -> None:
    app = make_app()
    with TestClient(app) as alice, TestClient(app) as bob:
        assert alice.get("/count").json() == {"count": 0}
        assert fire(alice, "/Counter/increment", amount=3).signals == {"Counter": {"count": 3}}
        assert alice.get("/count").json() == {"count": 3}
        assert alice.get("/count-sync").json() == {"count": 3}
        assert bob.get("/count").json() == {"count": 0}


def test_record_scope_from_the_path_with_an_async_authorize() -> None:
    app = make_app()
    with TestClient(app) as alice, TestClient(app) as bob:
        first = alice.get("/docs/public-1").json()
        assert first["title"] == ""
        result = fire(alice, "/Doc/rename?record_id=public-1", title="Plan")
        assert result.signals == {"Doc_public_2d_1": {"title": "Plan"}}
        # A record is shared by everyone who may reach it.
        assert bob.get("/docs/public-1").json() == {"title": "Plan", "id": first["id"]}
        assert bob.get("/docs/public-2").json()["title"] == ""
        refused = bob.get("/docs/secret-1")
        assert refused.status_code == 403
        assert refused.json() == {"detail": "not allowed to use Doc"}


def test_component_scope_with_keys() -> None:
    with TestClient(make_app()) as client:
        assert client.get("/panel").json() == {"distinct": True}


def test_without_the_middleware_the_error_says_to_add_it() -> None:
    app = FastAPI()

    @app.get("/")
    async def index(counter: Annotated[Counter, UseState(Counter)]) -> int:
        return counter.count

    with TestClient(app) as client, pytest.raises(RuntimeError, match="FastStateMiddleware"):
        client.get("/")


def test_event_and_live_routes_stay_out_of_the_openapi_schema() -> None:
    app = make_app()
    paths = app.openapi()["paths"]
    assert set(paths) == {"/count", "/count-sync", "/docs/{record_id}", "/panel"}
    # The routes are there all the same, and the dependency adds no parameter.
    mounted = {getattr(route, "path", None) for route in app.routes}
    assert {"/Counter/increment", "/Doc/rename", "/_faststate/live"} <= mounted
    assert "parameters" not in paths["/count"]["get"]
    # Nor is the id it reads from the path: a route documents it by declaring it.
    assert "parameters" not in paths["/docs/{record_id}"]["get"]
