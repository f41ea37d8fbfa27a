"""Durable state through SQLAlchemy (SQLModel's engine): SQLite or PostgreSQL.

One row per instance key holds the class name, the JSON the codec writes, a
version counting saves, and the expiry.  Expired rows are never loaded and
are swept now and then.  The sync engine runs off the event loop in async
paths; ``use_state`` in a sync handler calls it directly.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final, TypeVar

import anyio.to_thread
from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import create_engine

from faststate._state import ReactiveState
from faststate._stores.base import StoreUnavailable
from faststate._stores.codec import decode, encode

logger = logging.getLogger("faststate")

DEFAULT_URL: Final = "sqlite:///faststate.db"
S = TypeVar("S", bound=ReactiveState)

# Its own MetaData: SQLModel.metadata.create_all() in the user's app must not
# create (or drop) faststate's table, nor the reverse.
metadata = MetaData()
states = Table(
    "faststate_states",
    metadata,
    Column("key", String(512), primary_key=True),
    Column("class_name", String(255), nullable=False),
    Column("data", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("expires_at", Float, nullable=True, index=True),
    Column("updated_at", Float, nullable=False),
)


class SQLPersistence:
    """Writes ``auto_persist`` states through to a database after each event.

    ``url`` is any SQLAlchemy URL (``sqlite:///faststate.db`` by default,
    ``postgresql+psycopg://user@host/db``); ``engine`` may be given instead.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        engine: Engine | None = None,
        sweep_every: int = 1000,
    ) -> None:
        if engine is None:
            url = url or DEFAULT_URL
            connect_args = {"check_same_thread": False} if url.startswith("sqlite") else {}
            engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        self.engine = engine
        self.sweep_every = sweep_every
        self._saves_since_sweep = 0
        self._ready = False

    def _prepare(self) -> None:
        if not self._ready:
            metadata.create_all(self.engine)
            self._ready = True

    def load_sync(self, key: str, cls: type[S]) -> S | None:
        try:
            self._prepare()
            with self.engine.connect() as connection:
                row = connection.execute(
                    select(states.c.data, states.c.class_name).where(
                        states.c.key == key,
                        or_(states.c.expires_at.is_(None), states.c.expires_at > time.time()),
                    )
                ).first()
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"database: {exc.__class__.__name__}") from exc
        if row is None:
            return None
        if row.class_name != cls.__name__:
            logger.warning("faststate: %s holds a %s, not a %s", key, row.class_name, cls.__name__)
            return None
        return decode(cls, row.data)

    async def load(self, key: str, cls: type[S]) -> S | None:
        return await anyio.to_thread.run_sync(self.load_sync, key, cls)

    def save_sync(self, key: str, state: ReactiveState, ttl: float | None) -> None:
        now = time.time()
        values: dict[str, Any] = {
            "class_name": type(state).__name__,
            "data": encode(state),
            "expires_at": None if ttl is None else now + ttl,
            "updated_at": now,
        }
        for attempt in (1, 2):
            try:
                self._prepare()
                with self.engine.begin() as connection:
                    changed = connection.execute(
                        update(states)
                        .where(states.c.key == key)
                        .values(version=states.c.version + 1, **values)
                    ).rowcount
                    if not changed:
                        connection.execute(states.insert().values(key=key, version=1, **values))
                break
            except IntegrityError:
                if attempt == 2:
                    raise
                # Another worker inserted the same key first: update it instead.
            except SQLAlchemyError as exc:
                raise StoreUnavailable(f"database: {exc.__class__.__name__}") from exc
        self._saves_since_sweep += 1
        if self._saves_since_sweep >= self.sweep_every:
            self.sweep()

    async def save(self, key: str, state: ReactiveState, ttl: float | None) -> None:
        await anyio.to_thread.run_sync(self.save_sync, key, state, ttl)

    def delete_sync(self, key: str) -> None:
        self._prepare()
        with self.engine.begin() as connection:
            connection.execute(delete(states).where(states.c.key == key))

    async def delete(self, key: str) -> None:
        await anyio.to_thread.run_sync(self.delete_sync, key)

    def sweep(self) -> int:
        """Delete expired rows; returns how many."""
        self._saves_since_sweep = 0
        with self.engine.begin() as connection:
            result = connection.execute(
                delete(states).where(
                    states.c.expires_at.is_not(None), states.c.expires_at <= time.time()
                )
            )
        return int(result.rowcount or 0)

    async def aclose(self) -> None:
        self.engine.dispose()
