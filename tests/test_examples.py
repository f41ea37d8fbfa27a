"""The counter examples work as served apps (the browser suite clicks them too)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from starlette.testclient import TestClient

from faststate.testing import fire

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["counter", "starlette_counter"])
@pytest.mark.parametrize("protocol", ["v1", "beta"])
def test_counter_example_counts_per_session(
    name: str, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASTSTATE_SECRET_KEY", "example-test")
    app = load(name).create_app(protocol)
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
