"""The registered state classes of an app: data only.

The registry lives on the app (``app.state``), never in a module global, so
two apps in one process keep their classes apart.  Mounting the routes is
``_app``'s business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from faststate._events import EventSpec, event_spec
from faststate._scopes import StateConfig
from faststate._state import ReactiveState
from faststate._uploads import UploadPolicy

if TYPE_CHECKING:
    from faststate._protocol import Dialect
    from faststate._runtime import Runtime

REGISTRY_ATTRIBUTE: Final = "faststate_registry"


@dataclass(eq=False)
class Registration:
    """One registered state class: its config and its event routes."""

    cls: type[ReactiveState]
    config: StateConfig
    prefix: str
    events: dict[str, EventSpec]
    #: Its ``_address.Site`` per dialect and root path (``site_of``; typed
    #: loosely because ``_address`` builds on this module).
    sites: dict[tuple[Dialect, str], Any] = field(default_factory=dict, repr=False)
    last_site: Any = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.cls.__name__

    def event_path(self, spec: EventSpec) -> str:
        return self.prefix + (spec.path or f"/{self.name}/{spec.name}")


@dataclass
class Registry:
    by_class: dict[type, Registration] = field(default_factory=dict)
    by_name: dict[str, Registration] = field(default_factory=dict)
    #: Every event path, with the names of its class and event.
    event_paths: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: The event paths with upload parameters, and their limits.
    uploads: dict[str, UploadPolicy] = field(default_factory=dict)
    live_mounted: bool = False
    #: The middleware's shared parts, known once the app has served (for mutate(app)).
    runtime: Runtime | None = None

    def get(self, cls: type) -> Registration:
        try:
            return self.by_class[cls]
        except KeyError:
            raise LookupError(
                f"{cls.__name__} is not registered: call register_state(app, {cls.__name__}, ...)"
            ) from None


def registry_of(app: Any, create: bool = True) -> Registry | None:
    """The registry kept on ``app.state`` (created on first registration)."""
    state = getattr(app, "state", None)
    if state is None:
        return None
    registry = getattr(state, REGISTRY_ATTRIBUTE, None)
    if registry is None and create:
        registry = Registry()
        setattr(state, REGISTRY_ATTRIBUTE, registry)
    return registry


def add_registration(
    registry: Registry, cls: type[ReactiveState], config: StateConfig, prefix: str
) -> Registration:
    """Record ``cls`` with its events, refusing clashes and bad annotations now."""
    if not (isinstance(cls, type) and issubclass(cls, ReactiveState)):
        raise TypeError(f"register_state needs a ReactiveState subclass, got {cls!r}")
    if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
        raise ValueError("prefix must start with '/' and not end with '/'")
    if cls.__name__ in registry.by_name:
        raise ValueError(f"a state class named {cls.__name__} is already registered")
    registration = Registration(cls, config, prefix, _collect_events(cls))
    paths: dict[str, tuple[str, str]] = {}
    uploads = {}
    for spec in registration.events.values():
        spec.params()  # fail at startup, not at the first click, on bad annotations
        path = registration.event_path(spec)
        if path in registry.event_paths or path in paths:
            raise ValueError(f"event path {path} is already taken")
        paths[path] = (cls.__name__, spec.name)
        policy = spec.upload_policy()
        if policy is not None:
            uploads[path] = policy
    registry.event_paths.update(paths)
    registry.uploads.update(uploads)
    registry.by_class[cls] = registration
    registry.by_name[cls.__name__] = registration
    return registration


def _collect_events(cls: type) -> dict[str, EventSpec]:
    events: dict[str, EventSpec] = {}
    for klass in reversed(cls.__mro__):
        for name, value in list(vars(klass).items()):
            spec = event_spec(value)
            if spec is not None and not name.startswith("_"):
                events[name] = spec
            elif name in events:  # overridden without @event: no longer reachable
                del events[name]
    return events
