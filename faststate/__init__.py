"""faststate: server-side reactive state for Starlette and FastHTML, driven by Datastar."""

from faststate.apps import FastStateApp
from faststate.broker import Broker, LocalBroker, RedisBroker
from faststate.events import event
from faststate.helpers import action, on, ref, signal_name, signals, text
from faststate.instances import ause_state, use_state
from faststate.middleware import FastStateMiddleware
from faststate.mutations import mutate, push
from faststate.registry import StateApp, register_state
from faststate.scopes import StateConfig, StateScope
from faststate.sessions import rotate_session
from faststate.state import ReactiveState
from faststate.stores import MemoryStore, StateStore
from faststate.stores.redis import RedisStore
from faststate.stores.sql import SQLPersistence
from faststate.streams import live

__version__ = "0.1.0"

__all__ = [
    "Broker",
    "FastStateApp",
    "FastStateMiddleware",
    "LocalBroker",
    "MemoryStore",
    "ReactiveState",
    "RedisBroker",
    "RedisStore",
    "SQLPersistence",
    "StateApp",
    "StateConfig",
    "StateScope",
    "StateStore",
    "action",
    "ause_state",
    "event",
    "live",
    "mutate",
    "on",
    "push",
    "ref",
    "register_state",
    "rotate_session",
    "signal_name",
    "signals",
    "text",
    "use_state",
]
