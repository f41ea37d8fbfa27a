"""Shared fixtures: real Redis and PostgreSQL when the machine has them, and
the live-stream app of tests/live.py over a real server.

A test needing a service that is down is skipped with the reason, or fails
when ``FASTSTATE_REQUIRE_SERVICES=1`` (as in CI).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette

from .live import make_app
from .redis_cluster import LocalCluster, missing_binaries
from .support import run_server

REDIS_URL = os.environ.get("FASTSTATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "FASTSTATE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def require(reason: str) -> None:
    if os.environ.get("FASTSTATE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        require(f"Redis at {REDIS_URL} is not reachable ({exc})")
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own, deleted afterwards."""
    import redis

    prefix = f"faststate-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    if not _listening("127.0.0.1", 5432):
        require("PostgreSQL is not listening on 127.0.0.1:5432")
    from sqlalchemy import create_engine, text

    engine = create_engine(POSTGRES_URL)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS faststate_states"))
    except Exception as exc:
        require(f"PostgreSQL at {POSTGRES_URL} is not usable ({exc})")
    finally:
        engine.dispose()
    yield POSTGRES_URL


#: The ports of the test cluster: the first free three of 17101-17109 (17111-17113
#: are the benchmark's), so two test runs at once each get one.
CLUSTER_PORTS = [(17101, 17102, 17103), (17104, 17105, 17106), (17107, 17108, 17109)]


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """A real three-node Redis Cluster of this test run's own, torn down at its end."""
    reason = missing_binaries()
    if reason is not None:
        require(f"no Redis Cluster can be started: {reason}")
    for ports in CLUSTER_PORTS:
        if not any(_listening("127.0.0.1", port) for port in ports):
            break
    cluster = LocalCluster(ports).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Starlette]]:
    """``make_app()`` of tests/live.py over uvicorn, one per test module: (base URL, app)."""
    app = make_app()
    with run_server(app) as base:
        yield base, app
