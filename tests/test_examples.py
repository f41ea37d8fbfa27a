"""The examples work as served apps (the browser suite clicks them too)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from faststate.testing import fire

from .support import load_example


@pytest.mark.parametrize("name", ["counter", "starlette_counter"])
@pytest.mark.parametrize("protocol", ["v1", "beta"])
def test_counter_example_counts_per_session(
    name: str, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASTSTATE_SECRET_KEY", "example-test")
    app = load_example(name).create_app(protocol)
    with TestClient(app) as alice, TestClient(app) as bob:
        page = alice.get("/")
        assert page.status_code == 200
        assert 'id="count"' in page.text
        assert ("data-on:click" in page.text) == (protocol == "v1")
        assert fire(alice, "/CounterState/increment", amount=1).signals == {
            "CounterState": {"count": 1}
        }
        assert fire(alice, "/CounterState/increment", amount=1).signals == {
            "CounterState": {"count": 2}
        }
        bob.get("/")
        assert fire(bob, "/CounterState/increment", amount=1).signals == {
            "CounterState": {"count": 1}
        }
        assert '"count":2' in alice.get("/").text.replace("&quot;", '"')


@pytest.mark.parametrize("protocol", ["v1", "beta"])
def test_jinja_todos_example_renders_its_templates(
    protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASTSTATE_SECRET_KEY", "example-test")
    app = load_example("jinja_todos").create_app(protocol)
    with TestClient(app) as client:
        page = client.get("/lists/smoke")
        assert page.status_code == 200
        assert "<h1>Todo list: smoke</h1>" in page.text
        assert ("data-on:submit" in page.text) == (protocol == "v1")
        added = fire(client, "/TodoList/add?record_id=smoke", title="a <b> & c")
        [patch] = added.elements
        assert 'id="items"' in patch.html and "a &lt;b&gt; &amp; c" in patch.html
        assert fire(client, "/TodoList/add?record_id=smoke", title=" ").errors == {
            "title": "String should have at least 1 character"
        }
        assert "a &lt;b&gt; &amp; c" in client.get("/lists/smoke").text


@pytest.mark.parametrize("protocol", ["v1", "beta"])
def test_fastapi_example_serves_the_page_the_api_and_a_schema_without_events(
    protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASTSTATE_SECRET_KEY", "example-test")
    app = load_example("fastapi_app").create_app(protocol)
    assert set(app.openapi()["paths"]) == {"/api/count"}
    with TestClient(app) as client:
        assert 'id="count"' in client.get("/").text
        assert fire(client, "/Counter/increment", amount=10).signals == {"Counter": {"count": 10}}
        assert client.get("/api/count").json() == {"count": 10}
        refused = fire(client, "/Newsletter/subscribe", signals={"Newsletter": {"email": "x"}})
        assert refused.errors == {"email": "enter an address like ada@example.com"}
