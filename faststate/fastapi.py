"""FastAPI: a dependency that resolves a state for a route.

    from typing import Annotated
    from fastapi import FastAPI
    from faststate import FastStateMiddleware, register_state
    from faststate.fastapi import UseState

    app = FastAPI()
    app.add_middleware(FastStateMiddleware)
    register_state(app, Counter, scope="session")

    @app.get("/api/count")
    async def count(counter: Annotated[Counter, UseState(Counter)]) -> int:
        return counter.count

``register_state`` works on a FastAPI app as on any Starlette app: the event
routes it mounts are plain Starlette routes, outside the OpenAPI schema.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Depends
from starlette.requests import HTTPConnection

from faststate._resolve import ause_state
from faststate._state import ReactiveState

__all__ = ["UseState"]

S = TypeVar("S", bound=ReactiveState)


def UseState(cls: type[S], *, key: str | None = None) -> Any:
    """``Depends(...)`` giving the instance of ``cls`` the request reaches (named like
    FastAPI's own parameter functions, ``Depends``, ``Query``).

    Resolved with ``ause_state`` (so an ``async`` ``authorize`` and an
    I/O-backed store never block the loop), with the same rules as
    ``use_state``: ``key`` for COMPONENT and RECORD, else ``component_id``,
    ``record_id`` or ``id`` from the path, then the query; 400, 401 and 403
    as ``HTTPException``.  Use it as ``Annotated[Counter, UseState(Counter)]``
    (or as a default, ``counter: Counter = UseState(Counter)``, like ``Depends``).

    Args:
        cls: A state class registered on the app.
        key: The component or record id; ``None``: from the path or query.

    Returns:
        A FastAPI ``Depends`` marker.
    """


    async def use_state(request: HTTPConnection) -> S:
        return await ause_state(request, cls, key=key)

    use_state.__name__ = f"use_{cls.__name__}"
    return Depends(use_state)
