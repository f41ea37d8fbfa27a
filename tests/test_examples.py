"""The counter examples work as served apps (the browser suite clicks them too)."""

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
