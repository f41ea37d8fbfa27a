"""Gauges of an app: open live streams and stored instances, read on demand.

Nothing is counted in advance: ``metrics(app)`` reads what the middleware's
runtime (found through the app's registry on ``app.state``) already keeps,
so a metrics exporter may call it as often as it likes, from any thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faststate._registry import registry_of


@dataclass(frozen=True, slots=True)
class Metrics:
    """What ``metrics(app)`` read.

    Attributes:
        live_streams: Live page streams open in this process.
        stored_instances: Instances the store keeps, when it can tell without
            a round trip: ``MemoryStore`` counts its table (expired instances
            not swept yet included); ``RedisStore`` cannot (counting its keys
            needs a scan of the database) and gives None, as does an app that
            has not served a request or started up yet.
    """

    live_streams: int
    stored_instances: int | None


def metrics(app: Any) -> Metrics:
    """The gauges of ``app``, read now (cheap: no I/O).

    Args:
        app: The Starlette or FastHTML app that ``FastStateMiddleware`` serves
            and states are registered on.  Until it has started up (lifespan)
            or served a request, its middleware does not exist yet: 0 streams,
            instances unknown.
    """
    registry = registry_of(app, create=False)
    runtime = registry.runtime if registry is not None else None
    if runtime is None:
        return Metrics(0, None)
    return Metrics(len(runtime.streams), runtime.store.instance_count())
