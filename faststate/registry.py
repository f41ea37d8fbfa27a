"""Explicit registration of state classes on an app.

The registry lives on the app (``app.state``), never in a module global, so
two apps in one process keep their classes apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from faststate.events import EventSpec, event_spec
from faststate.scopes import Authorize, StateConfig, StateScope

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from faststate.context import Runtime
    from faststate.state import ReactiveState

REGISTRY_ATTRIBUTE: Final = "faststate_registry"


@dataclass
class Registration:
    """One registered state class: its config and its event routes."""

    cls: type[ReactiveState]
    config: StateConfig
    prefix: str
    events: dict[str, EventSpec]

    @property
    def name(self) -> str:
        return self.cls.__name__

    def event_path(self, spec: EventSpec) -> str:
        return self.prefix + (spec.path or f"/{self.name}/{spec.name}")


@dataclass
class Registry:
    by_class: dict[type, Registration] = field(default_factory=dict)
    by_name: dict[str, Registration] = field(default_factory=dict)
    event_paths: set[str] = field(default_factory=set)
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


def register_state(
    app: Starlette,
    cls: type[ReactiveState],
    *,
    scope: StateScope | str = StateScope.SESSION,
    ttl: float | None = None,
    auto_persist: bool = False,
    authorize: Authorize | None = None,
    prefix: str = "",
) -> Registration:
    """Register ``cls`` on ``app`` and mount ``POST {prefix}/{cls}/{event}`` routes."""
    from faststate.routing import mount_events, mount_live
    from faststate.state import ReactiveState

    if not (isinstance(cls, type) and issubclass(cls, ReactiveState)):
        raise TypeError(f"register_state needs a ReactiveState subclass, got {cls!r}")
    if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
        raise ValueError("prefix must start with '/' and not end with '/'")
    registry = registry_of(app)
    if registry is None:
        raise TypeError("register_state needs a Starlette or FastHTML app")
    if cls.__name__ in registry.by_name:
        raise ValueError(f"a state class named {cls.__name__} is already registered")
    events = _collect_events(cls)
    config = StateConfig(
        scope=StateScope(scope), ttl=ttl, auto_persist=auto_persist, authorize=authorize
    )
    registration = Registration(cls, config, prefix, events)
    paths = []
    for spec in events.values():
        spec.params()  # fail at startup, not at the first click, on bad annotations
        path = registration.event_path(spec)
        if path in registry.event_paths or path in paths:
            raise ValueError(f"event path {path} is already taken")
        paths.append(path)
    registry.event_paths.update(paths)
    registry.by_class[cls] = registration
    registry.by_name[cls.__name__] = registration
    mount_events(app, registration)
    if not registry.live_mounted:
        mount_live(app)
        registry.live_mounted = True
    return registration


def _collect_events(cls: type) -> dict[str, EventSpec]:
    events: dict[str, EventSpec] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            spec = event_spec(value)
            if spec is not None and not name.startswith("_"):
                events[name] = spec
            elif name in events:  # overridden without @event: no longer reachable
                del events[name]
    return events


class StateApp:
    """Mixin giving an app ``app.register_state(Cls, scope=...)``."""

    def register_state(
        self,
        cls: type[ReactiveState],
        *,
        scope: StateScope | str = StateScope.SESSION,
        ttl: float | None = None,
        auto_persist: bool = False,
        authorize: Authorize | None = None,
        prefix: str = "",
    ) -> Registration:
        return register_state(
            self,  # type: ignore[arg-type]
            cls,
            scope=scope,
            ttl=ttl,
            auto_persist=auto_persist,
            authorize=authorize,
            prefix=prefix,
        )
