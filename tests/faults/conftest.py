"""Fixtures of the fault suite: a private Redis and a PostgreSQL proxy (see ``support``)."""

from tests.faults.support import postgres_proxy, private_redis

__all__ = ["postgres_proxy", "private_redis"]
