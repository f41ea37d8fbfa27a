"""The documentation's tutorial runs as written: each step's file (docs/tutorial/code/,
included verbatim into its page) serves its app, and its events answer as the page says."""

from __future__ import annotations

import importlib.util
import re
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.testclient import TestClient

from faststate import register_state, use_state
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


DOCS = CODE.parent.parent


def blocks(page: str, language: str) -> list[str]:
    text = (DOCS / page).read_text()
    return re.findall(rf"```{re.escape(language)}\n(.*?)```", text, re.S)


def run_as_file(code: str, folder: Path) -> Any:
    """``code`` imported from a file of its own, as a user would run it."""
    path = folder / "snippet.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location(f"snippet_{folder.name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the annotations there
    spec.loader.exec_module(module)
    return module


def test_the_jinja2_pages_form_refuses_and_accepts_as_it_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FASTSTATE_SECRET_KEY", "docs-test")
    python = blocks("concepts/jinja2.md", "python")
    (counter,) = (block for block in python if 'PAGE = """' in block)
    (form,) = (block for block in python if "class Signup" in block)
    (template,) = blocks("concepts/jinja2.md", "html+jinja")
    module = run_as_file(counter + form, tmp_path)  # the counter's app, and the form
    signup_class, templates, app = module.Signup, module.templates, module.app
    register_state(app, signup_class, scope="session")

    async def page(request: Request) -> HTMLResponse:
        signup = use_state(request, signup_class)
        return HTMLResponse(templates.env.from_string(template).render(signup=signup))

    app.add_route("/signup", page)
    with TestClient(app) as client:
        assert 'data-bind="Signup.email"' in client.get("/signup").text
        young = fire(
            client, "/Signup/submit", signals={"Signup": {"email": "a@example.com", "age": 12}}
        )
        assert young.errors == {"age": "Input should be greater than or equal to 18"}
        elsewhere = fire(
            client, "/Signup/submit", signals={"Signup": {"email": "a@b.org", "age": 20}}
        )
        assert elsewhere.errors == {"email": "use your example.com address"}
        accepted = fire(
            client, "/Signup/submit", signals={"Signup": {"email": "a@example.com", "age": 20}}
        )
        assert (accepted.errors, accepted.signals) == ({}, {"Signup": {"welcomed": True}})


def test_the_fastapi_pages_form_refuses_and_accepts_as_it_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FASTSTATE_SECRET_KEY", "docs-test")
    app = run_as_file("\n".join(blocks("concepts/fastapi.md", "python")), tmp_path).app
    with TestClient(app) as client:
        assert "Subscribe" in client.get("/subscribe").text
        refused = fire(client, "/Subscribe/submit", signals={"Subscribe": {"email": "nope"}})
        assert refused.errors == {"email": "enter an email address"}
        accepted = fire(client, "/Subscribe/submit", signals={"Subscribe": {"email": "a@b.c"}})
        assert (accepted.errors, accepted.signals) == ({}, {"Subscribe": {"subscribed": True}})
