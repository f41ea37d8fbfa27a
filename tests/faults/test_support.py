"""The fault tools themselves do what the fault tests rely on."""

from __future__ import annotations

import threading

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from tests.faults.support import PrivateRedis, TcpProxy, proxied_postgres_url


def test_a_private_redis_loses_its_data_when_restarted(private_redis: PrivateRedis) -> None:
    client = redis.Redis.from_url(private_redis.url, socket_timeout=2)
    client.set("k", "v")
    private_redis.stop()
    with pytest.raises(redis.ConnectionError):
        client.get("k")
    private_redis.start()
    assert client.get("k") is None


def test_the_proxy_cuts_and_stalls_postgres(postgres_proxy: TcpProxy) -> None:
    engine = create_engine(
        proxied_postgres_url(postgres_proxy),
        connect_args={"connect_timeout": 2, "options": "-c statement_timeout=1000"},
        pool_pre_ping=False,
    )
    with engine.connect() as connection:
        assert connection.execute(text("select 1")).scalar() == 1
        postgres_proxy.kill()
        with pytest.raises(OperationalError):
            connection.execute(text("select 1"))
    with pytest.raises(OperationalError):
        engine.connect().close()
    postgres_proxy.restore()
    engine.dispose()
    with engine.connect() as connection:
        assert connection.execute(text("select 1")).scalar() == 1
        postgres_proxy.pause()
        answers: list[int] = []
        query = threading.Thread(
            target=lambda: answers.append(connection.execute(text("select 2")).scalar())
        )
        query.start()
        query.join(1.0)
        assert query.is_alive() and answers == []  # stalled, not failed
        postgres_proxy.resume()
        query.join(5.0)
        assert answers == [2]
    engine.dispose()
