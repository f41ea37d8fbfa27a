"""Fixtures of the security suite: the Vault app served to a test client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .support import Vaulted, serve, vault_app, vault_fasthtml_app


@pytest.fixture(scope="module")
def vaulted() -> Iterator[Vaulted]:
    with serve(vault_app()) as served:
        yield served


@pytest.fixture(scope="module", params=["starlette", "fasthtml"])
def any_vaulted(request: pytest.FixtureRequest) -> Iterator[Vaulted]:
    app = vault_app() if request.param == "starlette" else vault_fasthtml_app()
    with serve(app) as served:
        yield served


@pytest.fixture
def fresh() -> Iterator[Vaulted]:
    with serve(vault_app()) as served:
        yield served
