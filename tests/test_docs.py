"""The documentation's tutorial runs as written: each step's file (docs/tutorial/code/,
included verbatim into its page) serves its app, and its events answer as the page says."""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path
from types import ModuleType

import pytest
from starlette.testclient import TestClient

from faststate.testing import fire

CODE = Path(__file__).resolve().parent.parent / "docs" / "tutorial" / "code"


def load(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("FASTSTATE_SECRET_KEY", "docs-test")
    spec = importlib.util.spec_from_file_location(f"tutorial_{name}", CODE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_step_1_the_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(load("counter", monkeypatch).app) as client:
        page = client.get("/")
        assert page.status_code == 200 and "data-on:click" in page.text
        assert fire(client, "/CounterState/increment", amount=2).signals == {
            "CounterState": {"count": 2}
        }
        assert fire(client, "/CounterState/reset").signals == {"CounterState": {"count": 0}}


def test_step_2_the_todo_list(monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(load("todos", monkeypatch).app) as client:
        assert client.get("/lists/groceries").status_code == 200
        added = fire(client, "/TodoList/add?record_id=groceries", signals={"title": "milk"})
        assert "milk" in added.elements[0].html and added.signals["title"] == ""
        refused = fire(client, "/TodoList/add?record_id=groceries", signals={"title": "  "})
        assert "title" in refused.errors
        match = re.search(r'id="item-(\w+)"', added.elements[0].html)
        assert match is not None
        toggled = fire(client, "/TodoList/toggle?record_id=groceries", item_id=match.group(1))
        assert "line-through" in toggled.elements[0].html


def test_step_3_the_form(monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(load("forms", monkeypatch).app) as client:
        assert client.get("/").status_code == 200
        closed = {"Signup": {"email": "a@example.org", "age": 20}}
        assert fire(client, "/Signup/submit", signals=closed).errors == {
            "email": "that domain is closed"
        }
        young = {"Signup": {"email": "a@b.c", "age": 12}}
        assert "age" in fire(client, "/Signup/submit", signals=young).errors
        good = {"Signup": {"email": "A@b.c", "age": 20}}
        accepted = fire(client, "/Signup/submit", signals=good)
        assert accepted.errors == {} and accepted.redirect == "/welcome"
        assert "a@b.c" in client.get("/welcome").text


def test_step_4_the_live_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(load("live", monkeypatch).app) as client:
        page = client.get("/")
        assert page.status_code == 200 and "/_faststate/live" in page.text
        voted = fire(client, "/Poll/vote", choice="tea")
        assert voted.signals["Poll"]["votes"]["tea"] == 1
        assert "choice" in fire(client, "/Poll/vote", choice="milk").errors
        deadline = time.monotonic() + 5
        while "&quot;seconds_open&quot;:0," in client.get("/").text.replace('"', "&quot;"):
            assert time.monotonic() < deadline, "the clock task never ran"
            time.sleep(0.2)


def test_step_5_redis_and_postgresql(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, postgres_url: str
) -> None:
    import redis

    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    try:
        with TestClient(load("stores", monkeypatch).app) as client:
            assert client.get("/").status_code == 200
            first = fire(client, "/Visits/visit").signals["Visits"]["count"]
            assert fire(client, "/Visits/visit").signals == {"Visits": {"count": first + 1}}
    finally:
        connection = redis.Redis.from_url(redis_url)
        keys = list(connection.scan_iter("faststate:*Visits*"))
        if keys:
            connection.delete(*keys)
        connection.close()
