"""The README's quick start runs as written: copied into a file, it serves a counter."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from faststate.testing import fire

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_quick_start_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = README.read_text()
    start = text.index("# app.py")
    (tmp_path / "app.py").write_text(text[start : text.index("```", start)])
    monkeypatch.setenv("FASTSTATE_SECRET_KEY", "readme-test")
    spec = importlib.util.spec_from_file_location("readme_app", tmp_path / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with TestClient(module.app) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "datastar" in page.text and "htmx" not in page.text
        assert fire(client, "/CounterState/increment", amount=2).signals == {
            "CounterState": {"count": 2}
        }
