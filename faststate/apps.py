"""Ready-made Starlette app with ``app.register_state`` and the middleware."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette

from faststate.middleware import FastStateMiddleware
from faststate.registry import StateApp


class FastStateApp(StateApp, Starlette):
    """A Starlette app with FastStateMiddleware installed.

    ``faststate={...}`` passes options to the middleware.
    """

    def __init__(self, *args: Any, faststate: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_middleware(FastStateMiddleware, **(faststate or {}))
