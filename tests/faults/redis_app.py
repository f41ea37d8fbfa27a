"""The app the Redis fault tests serve with uvicorn, one process per worker.

``uvicorn --factory tests.faults.redis_app:app_from_env`` reads
``FASTSTATE_REDIS_URL``, ``FASTSTATE_REDIS_PREFIX`` and
``FASTSTATE_STORE_OPTIONS`` (JSON keyword arguments of ``RedisStore``), so
each test picks its server, its own keys and its lock settings.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from faststate import ReactiveState, RedisStore, StateScope, ause_state, event
from tests.apps import state_app


class Visits(ReactiveState):
    """One per session."""

    count: int = 0

    @event
    async def increment(self, pause: float = 0.0) -> None:
        self.count += 1
        await asyncio.sleep(pause)  # keeps many events in flight at once


class Shared(ReactiveState):
    """One for everybody: every event of every worker contends for its lock."""

    count: int = 0

    @event
    async def add(self, amount: int = 1, pause: float = 0.0) -> None:
        self.count += amount
        await asyncio.sleep(pause)  # the change is made, not yet saved


def create_app(store: RedisStore) -> Starlette:
    async def visits(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str((await ause_state(request, Visits)).count))

    async def shared(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str((await ause_state(request, Shared)).count))

    return state_app(
        {Visits: StateScope.SESSION, Shared: StateScope.GLOBAL},
        routes=[Route("/", visits), Route("/shared", shared)],
        store=store,
    )


def app_from_env() -> Starlette:
    # The expected 503s and 409s would flood the test output through logging's last resort.
    logging.getLogger("faststate").addHandler(logging.NullHandler())
    options: dict[str, Any] = json.loads(os.environ.get("FASTSTATE_STORE_OPTIONS", "{}"))
    store = RedisStore(
        os.environ["FASTSTATE_REDIS_URL"], prefix=os.environ["FASTSTATE_REDIS_PREFIX"], **options
    )
    return create_app(store)
