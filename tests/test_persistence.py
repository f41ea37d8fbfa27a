"""SQLPersistence on SQLite and PostgreSQL: write-through, reload, expiry, schema changes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import PrivateAttr
from sqlalchemy import text
from sqlmodel import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from faststate import (
    FastStateMiddleware,
    MemoryStore,
    ReactiveState,
    SQLPersistence,
    StateScope,
    event,
    register_state,
    use_state,
)
from faststate._errors import FAILED_MESSAGE
from faststate._state import stored_version
from faststate.testing import afire, fire

from .apps import state_app


class Notes(ReactiveState):
    count: int = 0
    lines: list[str] = Field(default_factory=list)
    owner_email: str = Field(default="owner@example.org", exclude=True)
    _edits: int = PrivateAttr(default=0)

    @event
    def add(self, line: str) -> None:
        self.lines.append(line)
        self.count += 1
        self._edits += 1

    @event
    def explode(self) -> None:
        self.count += 100
        raise RuntimeError("no")


class NotesV2(ReactiveState):
    """The same record after a deploy: a field renamed, one added."""

    count: int = 0
    title: str = "untitled"
    lines: list[str] = Field(default_factory=list)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


def make_app(
    persistence: SQLPersistence,
    cls: type[ReactiveState] = Notes,
    ttl: float | None = None,
    **options: Any,
) -> Starlette:
    async def page(request: Request) -> PlainTextResponse:
        notes = use_state(request, cls)
        return PlainTextResponse(f"{notes.count}|{','.join(notes.lines)}")  # type: ignore[attr-defined]

    return state_app(
        {cls: {"scope": StateScope.RECORD, "auto_persist": True, "ttl": ttl}},
        routes=[Route("/lists/{id}", page)],
        persistence=persistence,
        **options,
    )


def test_state_survives_a_new_process(database_url: str) -> None:
    with TestClient(make_app(SQLPersistence(database_url))) as client:
        client.get("/lists/a")
        fire(client, "/Notes/add?record_id=a", line="milk")
        fire(client, "/Notes/add?record_id=a", line="eggs")
    # A new app and a new persistence object: as after a restart.
    with TestClient(make_app(SQLPersistence(database_url))) as client:
        assert client.get("/lists/a").text == "2|milk,eggs"
        assert client.get("/lists/b").text == "0|"


def test_server_side_values_are_stored_too(database_url: str) -> None:
    persistence = SQLPersistence(database_url)
    with TestClient(make_app(persistence)) as client:
        client.get("/lists/a")
        fire(client, "/Notes/add?record_id=a", line="x")
    loaded = SQLPersistence(database_url).load_sync("record:Notes:a", Notes)
    assert loaded is not None
    assert loaded.owner_email == "owner@example.org"
    assert loaded._edits == 1


def test_failed_event_is_not_written(database_url: str) -> None:
    with TestClient(make_app(SQLPersistence(database_url))) as client:
        client.get("/lists/a")
        fire(client, "/Notes/add?record_id=a", line="keep")
        assert fire(client, "/Notes/explode?record_id=a").errors == {"": FAILED_MESSAGE}
    with TestClient(make_app(SQLPersistence(database_url))) as client:
        assert client.get("/lists/a").text == "1|keep"


def test_the_row_keeps_the_store_version_and_a_reload_takes_it_back(database_url: str) -> None:
    """The row's version is the instance's version in the store, so an instance
    loaded back after a restart goes on from it (pages need no resync)."""
    persistence = SQLPersistence(database_url)
    store = MemoryStore()
    with TestClient(make_app(persistence, store=store)) as client:
        client.get("/lists/a")
        for line in "abc":
            fire(client, "/Notes/add?record_id=a", line=line)
    kept = store.load_sync("record:Notes:a", Notes)
    assert kept is not None and stored_version(kept) & 0xFFFFFFFF == 3  # three saves
    with persistence.engine.connect() as connection:
        version = connection.execute(
            text("SELECT version FROM faststate_states WHERE key = 'record:Notes:a'")
        ).scalar_one()
    assert version == stored_version(kept)
    reloaded = SQLPersistence(database_url).load_sync("record:Notes:a", Notes)
    assert reloaded is not None and stored_version(reloaded) == version


def test_expired_rows_are_not_loaded_and_are_swept(database_url: str) -> None:
    persistence = SQLPersistence(database_url)
    persistence.save_sync("record:Notes:old", Notes(count=5), ttl=0.001)
    persistence.save_sync("record:Notes:kept", Notes(count=6), ttl=3600)
    import time

    time.sleep(0.01)
    assert persistence.load_sync("record:Notes:old", Notes) is None
    assert persistence.load_sync("record:Notes:kept", Notes) is not None
    assert persistence.sweep() == 1
    with persistence.engine.connect() as connection:
        keys = connection.execute(text("SELECT key FROM faststate_states")).scalars().all()
    assert keys == ["record:Notes:kept"]


def test_changed_class_loads_with_defaults(database_url: str) -> None:
    persistence = SQLPersistence(database_url)
    persistence.save_sync("record:NotesV2:a", Notes(count=4, lines=["a"]), ttl=None)
    # The row says Notes; rewrite it as NotesV2's own, with an unknown field kept.
    with persistence.engine.begin() as connection:
        connection.execute(text("UPDATE faststate_states SET class_name = 'NotesV2'"))
    loaded = persistence.load_sync("record:NotesV2:a", NotesV2)
    assert loaded is not None
    assert (loaded.count, loaded.lines, loaded.title) == (4, ["a"], "untitled")


def test_row_that_no_longer_validates_is_replaced(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    persistence = SQLPersistence(database_url)
    persistence.save_sync("record:Notes:a", Notes(), ttl=None)
    with persistence.engine.begin() as connection:
        connection.execute(
            text('UPDATE faststate_states SET data = \'{"fields": {"count": "many"}}\'')
        )
    with (
        caplog.at_level(logging.WARNING, logger="faststate"),
        TestClient(make_app(persistence)) as client,
    ):
        assert client.get("/lists/a").text == "0|"
        assert fire(client, "/Notes/add?record_id=a", line="fresh").status_code == 200
    assert "no longer validates" in caplog.text
    with TestClient(make_app(SQLPersistence(database_url))) as client:
        assert client.get("/lists/a").text == "1|fresh"


def test_auto_persist_without_persistence_is_a_clear_error() -> None:
    app = Starlette(routes=[Route("/", lambda r: PlainTextResponse(str(use_state(r, Notes))))])
    app.add_middleware(FastStateMiddleware, secret_key="k")
    register_state(app, Notes, scope=StateScope.GLOBAL, auto_persist=True)
    with (
        TestClient(app, raise_server_exceptions=True) as client,
        pytest.raises(RuntimeError, match="persistence"),
    ):
        client.get("/")


async def _burst(persistence: SQLPersistence, records: int, warm: bool) -> tuple[list[int], int]:
    """Statuses of ``records`` concurrent first events, and how many rows they left."""
    transport = httpx.ASGITransport(make_app(persistence))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        if warm:
            assert (await afire(client, "/Notes/add?record_id=warm", line="x")).status_code == 200
        results = await asyncio.gather(
            *(afire(client, f"/Notes/add?record_id=n{i}", line="x") for i in range(records))
        )
    with persistence.engine.connect() as connection:
        written = connection.execute(
            text("SELECT count(*) FROM faststate_states WHERE key LIKE 'record:Notes:n%'")
        ).scalar_one()
    await persistence.aclose()
    return [result.status_code for result in results], written


async def test_many_first_uses_at_once_create_the_table_once(database_url: str) -> None:
    assert await _burst(SQLPersistence(database_url), 20, warm=False) == ([200] * 20, 20)


async def test_more_concurrent_events_than_database_threads_are_all_written(
    database_url: str,
) -> None:
    """A COMMIT never waits for a free thread behind writes that wait for its locks.

    Such a wait never ends: it would still answer 503 with a generous deadline,
    which spares the test a loaded machine's slow SQLite writes (2 s by default).
    """
    persistence = SQLPersistence(database_url, timeout=10.0)
    assert await _burst(persistence, 100, warm=True) == ([200] * 100, 100)


def test_unreachable_database_gives_503() -> None:
    persistence = SQLPersistence("postgresql+psycopg://postgres@127.0.0.1:1/none")
    with TestClient(make_app(persistence)) as client:
        assert client.get("/lists/a").status_code == 503


def test_persistence_true_means_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    middleware = FastStateMiddleware(Starlette(), secret_key="k", persistence=True)
    persistence = middleware.runtime.persistence
    assert persistence is not None
    persistence.save_sync("k", Notes(), ttl=None)
    assert (tmp_path / "faststate.db").exists()
