"""Stores keep instances between events; see ``StateStore``."""

from faststate.stores.base import StaleState, StateStore, StoreUnavailable
from faststate.stores.memory import MemoryStore

__all__ = ["MemoryStore", "StaleState", "StateStore", "StoreUnavailable"]
