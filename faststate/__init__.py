"""faststate: server-side reactive state for Starlette and FastHTML, driven by Datastar.

Everything public is importable from here; ``faststate.fasthtml`` adds the
FastHTML app class and script tag, ``faststate.testing`` the test helpers,
``faststate.otel`` OpenTelemetry spans and gauges (extra ``otel``).
Modules starting with ``_`` are internal.  ``RedisStore``, ``RedisBroker``
and ``SQLPersistence`` are imported on first use, so an app that uses
neither Redis nor a database never loads their clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from faststate._app import FastStateApp, StateApp, register_state
from faststate._collections import Stream, stream
from faststate._errors import Invalid
from faststate._events import event, redirect, set_signals
from faststate._helpers import (
    action,
    bind,
    error,
    on,
    ref,
    signal_name,
    signals,
    stream_view,
    text,
    viewer_count,
    viewer_names,
)
from faststate._live.broker import Broker, LocalBroker
from faststate._live.mutations import mutate, push
from faststate._live.streams import live
from faststate._live.viewers import aviewers, viewers
from faststate._metrics import Metrics, metrics
from faststate._middleware import FastStateMiddleware
from faststate._observe import EventHook, EventOutcome, EventRecord
from faststate._resolve import ause_state, use_state
from faststate._scopes import StateConfig, StateScope
from faststate._sessions import rotate_session
from faststate._state import Bindable, ReactiveState
from faststate._stores.base import StaleState, StateStore, StoreUnavailable
from faststate._stores.memory import MemoryStore
from faststate._uploads import Upload

if TYPE_CHECKING:
    from faststate._live.redis_broker import RedisBroker
    from faststate._persistence import SQLPersistence
    from faststate._stores.redis import RedisStore

__version__ = "0.1.0"

_LAZY = {
    "RedisBroker": "faststate._live.redis_broker",
    "RedisStore": "faststate._stores.redis",
    "SQLPersistence": "faststate._persistence",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'faststate' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Bindable",
    "Broker",
    "EventHook",
    "EventOutcome",
    "EventRecord",
    "FastStateApp",
    "FastStateMiddleware",
    "Invalid",
    "LocalBroker",
    "MemoryStore",
    "Metrics",
    "ReactiveState",
    "RedisBroker",
    "RedisStore",
    "SQLPersistence",
    "StaleState",
    "StateApp",
    "StateConfig",
    "StateScope",
    "StateStore",
    "StoreUnavailable",
    "Stream",
    "Upload",
    "action",
    "ause_state",
    "aviewers",
    "bind",
    "error",
    "event",
    "live",
    "metrics",
    "mutate",
    "on",
    "push",
    "redirect",
    "ref",
    "register_state",
    "rotate_session",
    "set_signals",
    "signal_name",
    "signals",
    "stream",
    "stream_view",
    "text",
    "use_state",
    "viewer_count",
    "viewer_names",
    "viewers",
]
