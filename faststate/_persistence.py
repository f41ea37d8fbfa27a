"""Durable state through SQLAlchemy (SQLModel's engine): SQLite or PostgreSQL.

One row per instance key holds the class name, the JSON the codec writes,
the instance's version in the store, and the expiry.  Expired rows are never
loaded and are swept now and then.

Every database call is bounded by ``timeout``.  The driver's own limits end a
database that refuses or is slow (PostgreSQL's connect, statement and
idle-in-transaction timeouts, SQLite's busy timeout); a stalled network never
answers at all, so the caller also stops waiting at a deadline.  The engine
is synchronous and runs in daemon threads: one that a stalled network keeps
blocked may outlive its caller's wait, but then it commits nothing, and its
connection is discarded rather than handed out again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Final, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    MetaData,
    String,
    Table,
    Text,
    delete,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import create_engine

from faststate._state import ReactiveState, set_stored_version, stored_version
from faststate._stores.base import StaleState, StoreUnavailable
from faststate._stores.codec import decode, encode

logger = logging.getLogger("faststate")

DEFAULT_URL: Final = "sqlite:///faststate.db"
DEFAULT_TIMEOUT: Final = 2.0
#: How long past the database's own limits a commit's answer is awaited: it may
#: be on its way, and an answer given up on leaves the outcome unknown.
_GRACE: Final = 0.25
S = TypeVar("S", bound=ReactiveState)
T = TypeVar("T")

# Its own MetaData: SQLModel.metadata.create_all() in the user's app must not
# create (or drop) faststate's table, nor the reverse.
metadata = MetaData()
states = Table(
    "faststate_states",
    metadata,
    Column("key", String(512), primary_key=True),
    Column("class_name", String(255), nullable=False),
    Column("data", Text, nullable=False),
    # The store's version of the instance (an incarnation in its high bits):
    # loaded back into an empty store, the instance keeps it, so open pages
    # take its next change as the next one, not as a new copy.
    Column("version", BigInteger, nullable=False),
    Column("expires_at", Float, nullable=True, index=True),
    Column("updated_at", Float, nullable=False),
)


class SQLPersistence:
    """Writes ``auto_persist`` states through to a database after each event.

    ``url`` is any SQLAlchemy URL (``sqlite:///faststate.db`` by default,
    ``postgresql+psycopg://user@host/db``); ``engine`` may be given instead,
    in which case only the caller-side deadline applies.  ``timeout``
    (seconds) bounds each database call: a database that refuses, stalls or
    is too slow gets the event answered 503 within about that long, with
    nothing written.

    One table, ``faststate_states``, with one row per instance (class, key,
    JSON of public and private fields, version, expiry), created on first use.

    Args:
        url: A SQLAlchemy URL; ``None``: SQLite in ``faststate.db``.
        engine: A SQLAlchemy engine to use instead of ``url``.
        sweep_every: Delete expired rows once every this many saves.
        timeout: Seconds each database call may take.

    Raises:
        ValueError: ``timeout`` is not positive.
    """


    def __init__(
        self,
        url: str | None = None,
        *,
        engine: Engine | None = None,
        sweep_every: int = 1000,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if engine is None:
            engine = _engine(url or DEFAULT_URL, timeout)
        self.engine = engine
        self.timeout = timeout
        self.sweep_every = sweep_every
        self._saves_since_sweep = 0
        self._ready = False
        self._preparing = threading.Lock()
        self._threads = _Threads()

    def _prepare(self) -> None:
        if self._ready:
            return
        # Concurrent first uses would each try to create the table and all but one fail.
        with self._preparing:
            if self._ready:
                return
            try:
                metadata.create_all(self.engine)
            except SQLAlchemyError:
                if not inspect(self.engine).has_table(states.name):
                    raise
                # Another process created it at the same moment.
            _widen_versions(self.engine)
            self._ready = True

    def load_sync(self, key: str, cls: type[S]) -> S | None:
        call = _Call(self.timeout)
        return self._decoded(key, cls, self._wait(call, partial(self._read, call, key)))

    async def load(self, key: str, cls: type[S]) -> S | None:
        call = _Call(self.timeout)
        return self._decoded(key, cls, await self._run(call, partial(self._read, call, key)))

    def _read(self, call: _Call, key: str) -> tuple[str, str, int] | None:
        """The row's class name, data and version, unless it is missing or expired."""
        self._prepare()
        connection = self.engine.connect()
        try:
            row = connection.execute(
                select(states.c.data, states.c.class_name, states.c.version).where(
                    states.c.key == key,
                    or_(states.c.expires_at.is_(None), states.c.expires_at > time.time()),
                )
            ).first()
        except BaseException:
            _discard(connection)
            raise
        call.release(connection)
        return None if row is None else (row.class_name, row.data, int(row.version))

    @staticmethod
    def _decoded(key: str, cls: type[S], row: tuple[str, str, int] | None) -> S | None:
        if row is None:
            return None
        class_name, data, version = row
        if class_name != cls.__name__:
            logger.warning("faststate: %s holds a %s, not a %s", key, class_name, cls.__name__)
            return None
        state = decode(cls, data)
        if state is not None:
            set_stored_version(state, version)
        return state

    async def write(
        self,
        rows: Sequence[tuple[str, ReactiveState, float | None]],
        may_commit: Callable[[], bool],
    ) -> OpenWrite:
        """Write ``(key, instance, ttl)`` rows in one database transaction, left open.

        Each row records the version the instance gets from the store save
        that follows (one more than it has).

        The caller commits it (``OpenWrite.commit``) once the rest of its work
        succeeded, or rolls it back.  ``may_commit`` is asked, in a worker
        thread, right before COMMIT goes out: false (a lock lost) rolls back.
        """
        encoded = [
            (key, _row(state, ttl, stored_version(state) + 1)) for key, state, ttl in rows
        ]
        pending = OpenWrite(self, encoded, may_commit, asyncio.get_running_loop())
        self._threads.submit(pending.run)
        await self._await(pending, pending.opened)
        return pending

    def save_sync(self, key: str, state: ReactiveState, ttl: float | None) -> None:
        """Write one instance at once (outside an event's transaction)."""
        call = _Call(self.timeout)
        values = _row(state, ttl, stored_version(state))
        self._wait(call, partial(self._transact, call, lambda c: _upsert(c, key, values)))

    async def save(self, key: str, state: ReactiveState, ttl: float | None) -> None:
        """``save_sync`` without blocking the event loop."""
        pending = await self.write([(key, state, ttl)], _always)
        await pending.commit()

    def delete_sync(self, key: str) -> None:
        call = _Call(self.timeout)
        self._wait(call, partial(self._transact, call, _deleting(key)))

    async def delete(self, key: str) -> None:
        call = _Call(self.timeout)
        await self._run(call, partial(self._transact, call, _deleting(key)))

    def sweep(self) -> int:
        """Delete expired rows; returns how many."""
        self._saves_since_sweep = 0
        call = _Call(self.timeout)
        return self._wait(call, partial(self._transact, call, _sweeping))

    async def _count_saves(self, saves: int) -> None:
        self._saves_since_sweep += saves
        if self._saves_since_sweep < self.sweep_every:
            return
        self._saves_since_sweep = 0
        call = _Call(self.timeout)
        try:
            await self._run(call, partial(self._transact, call, _sweeping))
        except StoreUnavailable as exc:
            # The event this follows is committed: a failed sweep waits for the next one.
            logger.warning("faststate: sweeping expired rows failed: %s", exc)

    def _transact(self, call: _Call, work: Callable[[Connection], T]) -> T:
        """``work`` in a database transaction, committed only while ``call`` still waits."""
        self._prepare()
        connection = self.engine.connect()
        try:
            transaction = connection.begin()
            result = work(connection)
            if call.abandoned or time.monotonic() >= call.commit_by:
                raise StoreUnavailable("database: too slow to commit in time; rolled back")
            transaction.commit()
        except BaseException:
            _discard(connection)
            raise
        call.release(connection)
        return result

    async def _run(self, call: _Call, work: Callable[[], T]) -> T:
        """``work()`` in a worker thread, awaited until ``call.deadline``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def job() -> None:
            try:
                outcome: tuple[Any, BaseException | None] = (_unless_abandoned(call, work), None)
            except BaseException as exc:
                outcome = (None, exc)
            # A closed loop: nobody waits for this answer any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, outcome)

        self._threads.submit(job)
        return await self._await(call, future)

    async def _await(self, call: _Call, future: asyncio.Future[T]) -> T:
        """What a worker thread settles ``future`` with, awaited until ``call.deadline``."""
        try:
            async with asyncio.timeout(call.deadline - time.monotonic()):
                return await future
        except BaseException as exc:
            call.abandon()
            error = self._unavailable(exc)
            if error is exc:
                raise
            raise error from exc

    def _wait(self, call: _Call, work: Callable[[], T]) -> T:
        """``_run`` for sync callers (``use_state`` in a sync page handler)."""
        done = threading.Event()
        outcome: list[tuple[Any, BaseException | None]] = []

        def job() -> None:
            try:
                outcome.append((_unless_abandoned(call, work), None))
            except BaseException as exc:
                outcome.append((None, exc))
            done.set()

        self._threads.submit(job)
        if not done.wait(max(0.0, call.deadline - time.monotonic())):
            call.abandon()
            raise self._unavailable(TimeoutError())
        result, error = outcome[0]
        if error is not None:
            call.abandon()
            raised = self._unavailable(error)
            if raised is error:
                raise error
            raise raised from error
        value: T = result
        return value

    def _unavailable(self, exc: BaseException) -> BaseException:
        """The error a caller sees: ``StoreUnavailable`` (503) for a database failing."""
        if isinstance(exc, TimeoutError):
            return StoreUnavailable(f"database: no answer within {self.timeout:g}s")
        if isinstance(exc, SQLAlchemyError):
            return StoreUnavailable(f"database: {exc.__class__.__name__}")
        return exc

    async def aclose(self) -> None:
        self.engine.dispose()


class _Call:
    """One database call, which its caller stops waiting for at ``deadline``.

    Its COMMIT goes out only before ``commit_by``, half way, so that the
    answer is back before the caller gives up: a healthy database answers at
    once, and SQLite's busy timeout (the other half) ends a COMMIT waiting for
    another writer.
    """

    __slots__ = ("abandoned", "commit_by", "deadline")

    def __init__(self, timeout: float) -> None:
        now = time.monotonic()
        self.deadline = now + timeout
        self.commit_by = now + timeout / 2
        self.abandoned = False

    def abandon(self) -> None:
        self.abandoned = True

    def release(self, connection: Connection) -> None:
        """Back to the pool; discarded when the caller gave up on it (it may be on a
        stalled network, and its answer came too late to be trusted)."""
        if self.abandoned:
            _discard(connection)
        else:
            connection.close()


class OpenWrite(_Call):
    """Rows written in a database transaction not yet committed.

    One worker thread holds the transaction from the writes to the end: a
    COMMIT never waits for a free thread while its writes hold locks that
    other threads wait for (SQLite locks the whole database).  It sends
    COMMIT only when asked within half the timeout of the rows being written,
    and while ``may_commit()`` holds; the caller waits for the answer up to
    the timeout.  PostgreSQL itself drops a transaction left idle for half
    the timeout, so a COMMIT held up in the network cannot land after the
    caller gave up.  ``abandon``, no COMMIT asked for in time, or any failure
    rolls back.
    """

    __slots__ = (
        "_asked",
        "_decided",
        "_loop",
        "_may_commit",
        "_persistence",
        "_rows",
        "ended",
        "opened",
    )

    def __init__(
        self,
        persistence: SQLPersistence,
        rows: list[tuple[str, dict[str, Any]]],
        may_commit: Callable[[], bool],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(persistence.timeout)
        self._persistence = persistence
        self._rows = rows
        self._may_commit = may_commit
        self._loop = loop
        self.opened: asyncio.Future[None] = loop.create_future()  # the rows are written
        self.ended: asyncio.Future[None] = loop.create_future()  # committed
        self._decided = threading.Event()  # the caller asked for a COMMIT, or gave up
        self._asked = False

    def run(self) -> None:
        """In a worker thread: connect, begin, write every row, await the verdict, end."""
        if self.abandoned:  # it waited for a free thread too long
            return
        persistence = self._persistence
        try:
            persistence._prepare()
            connection = persistence.engine.connect()
        except BaseException as exc:
            self._report(self.opened, exc)
            return
        try:
            if self.abandoned:  # the connection itself took too long
                raise StoreUnavailable("database: its caller gave up")
            transaction = connection.begin()
            for key, values in self._rows:
                _upsert(connection, key, values)
        except BaseException as exc:
            _discard(connection)
            self._report(self.opened, exc)
            return
        written = time.monotonic()
        self.commit_by = written + persistence.timeout / 2
        self.deadline = written + persistence.timeout + _GRACE
        self._report(self.opened, None)
        asked = self._decided.wait(max(0.0, self.commit_by - written))
        try:
            if not asked or not self._asked or self.abandoned:
                raise StoreUnavailable("database: no COMMIT asked for in time; rolled back")
            if time.monotonic() >= self.commit_by:
                raise StoreUnavailable("database: too slow to commit in time; rolled back")
            if not self._may_commit():
                raise StaleState("a lock was lost before the database commit; rolled back")
            transaction.commit()
        except BaseException as exc:
            _discard(connection)
            self._report(self.ended, exc)
            return
        self.release(connection)
        self._report(self.ended, None)

    async def commit(self) -> None:
        """Commit, or roll back and raise ``StoreUnavailable`` (``StaleState``: lock lost)."""
        self._asked = True
        self._decided.set()
        await self._persistence._await(self, self.ended)
        await self._persistence._count_saves(len(self._rows))

    def abandon(self) -> None:
        """Give up: the written rows are rolled back (closing the connection does it)."""
        self.abandoned = True
        self._decided.set()

    def _report(self, future: asyncio.Future[None], error: BaseException | None) -> None:
        # A closed loop: nobody waits for this answer any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_settle, future, (None, error))


class _Threads:
    """Up to ``limit`` daemon threads for database calls, each kept ``idle`` seconds.

    Daemon, because a call that a stalled network keeps blocked must not hold
    up the process's exit.  Calls beyond the limit wait their turn (their
    callers' deadlines still run) and are skipped if their caller gave up.
    """

    def __init__(self, limit: int = 32, idle: float = 10.0) -> None:
        self.limit = limit
        self.idle = idle
        self._lock = threading.Lock()
        self._threads = 0
        self._waiting = 0  # idle threads not yet promised a job
        self._promised: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._backlog: deque[Callable[[], None]] = deque()  # while every thread is busy

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._waiting:
                self._waiting -= 1
                self._promised.put(job)
                return
            if self._threads >= self.limit:
                self._backlog.append(job)
                return
            self._threads += 1
        threading.Thread(
            target=self._work, args=(job,), name="faststate-database", daemon=True
        ).start()

    def _work(self, job: Callable[[], None]) -> None:
        while True:
            job()
            with self._lock:
                if self._backlog:
                    job = self._backlog.popleft()
                    continue
                self._waiting += 1
            try:
                job = self._promised.get(timeout=self.idle)
            except queue.Empty:
                with self._lock:
                    if self._waiting:
                        self._waiting -= 1
                        self._threads -= 1
                        return
                # A job was promised to an idle thread just as this one timed
                # out: every idle thread is promised one, so this one takes it.
                job = self._promised.get()


def _always() -> bool:
    return True


def _unless_abandoned(call: _Call, work: Callable[[], T]) -> T:
    # A call that waited for a free thread past its deadline is not started.
    if call.abandoned:
        raise StoreUnavailable("database: its caller gave up")
    return work()


def _settle(future: asyncio.Future[Any], outcome: tuple[Any, BaseException | None]) -> None:
    if future.done():  # its caller gave up
        return
    result, error = outcome
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _discard(connection: Connection) -> None:
    """Close the connection for good: the database rolls back what it left open."""
    try:
        connection.invalidate()
        connection.close()
    except SQLAlchemyError:
        logger.debug("faststate: discarding a database connection failed", exc_info=True)


def _widen_versions(engine: Engine) -> None:
    """Tables made before versions carried an incarnation keep them in 32 bits on
    PostgreSQL (SQLite's integers have 64 already): widen them once."""
    if engine.dialect.name != "postgresql":
        return
    column = {c["name"]: c for c in inspect(engine).get_columns(states.name)}["version"]
    if isinstance(column["type"], BigInteger):
        return
    with engine.begin() as connection:
        connection.execute(text(f"ALTER TABLE {states.name} ALTER COLUMN version TYPE BIGINT"))


def _row(state: ReactiveState, ttl: float | None, version: int) -> dict[str, Any]:
    # Encoded by the caller, not the thread: a thread that runs late must not
    # encode an instance an event has changed since.
    now = time.time()
    return {
        "version": version,
        "class_name": type(state).__name__,
        "data": encode(state),
        "expires_at": None if ttl is None else now + ttl,
        "updated_at": now,
    }


def _upsert(connection: Connection, key: str, values: dict[str, Any]) -> None:
    changing = update(states).where(states.c.key == key).values(**values)
    if connection.execute(changing).rowcount:
        return
    try:
        with connection.begin_nested():
            connection.execute(states.insert().values(key=key, **values))
    except IntegrityError:
        # Another worker inserted the same key first: update it instead.
        connection.execute(changing)


def _deleting(key: str) -> Callable[[Connection], None]:
    def work(connection: Connection) -> None:
        connection.execute(delete(states).where(states.c.key == key))

    return work


def _sweeping(connection: Connection) -> int:
    result = connection.execute(
        delete(states).where(states.c.expires_at.is_not(None), states.c.expires_at <= time.time())
    )
    return int(result.rowcount or 0)


def _engine(url: str, timeout: float) -> Engine:
    """An engine whose driver gives up by itself within ``timeout``."""
    parsed = make_url(url)
    options: dict[str, Any] = {"pool_pre_ping": True}
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        # The busy timeout: how long a statement waits for another writer's lock.
        # Half, so that a COMMIT sent in time is answered before the caller gives up.
        connect_args = {"check_same_thread": False, "timeout": timeout / 2}
    elif parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in (
        "psycopg",
        "psycopg2",
    ):
        statement = max(1, int(timeout * 1000))
        idle = max(1, int(timeout * 500))
        server = f"-c statement_timeout={statement} -c idle_in_transaction_session_timeout={idle}"
        given = parsed.query.get("options")
        connect_args = {
            # libpq counts whole seconds (and waits at least 2).
            "connect_timeout": max(1, math.ceil(timeout)),
            # The URL's own options come last, so that they win.
            "options": f"{server} {given}" if isinstance(given, str) else server,
        }
        # A pool whose connections are all stuck on a stalled network must not
        # keep a new call waiting for one longer than the call may take.
        options["pool_timeout"] = timeout
    return create_engine(url, connect_args=connect_args, **options)
