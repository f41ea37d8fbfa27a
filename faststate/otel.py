"""OpenTelemetry for faststate: one span per event, and gauges of an app.

Needs the ``otel`` extra (``pip install 'faststate[otel]'``, the OpenTelemetry
API); an SDK and an exporter are the app's choice, as usual::

    from faststate import otel
    from faststate.fasthtml import FastStateHTML

    app = FastStateHTML(faststate={"on_event": otel.span_hook()})
    otel.observe_gauges(app)

``span_hook()`` is an ``on_event`` hook: each event becomes a span named
``faststate.event <Class>.<event>``, covering the event from when faststate
took the request until its answer was ready, as a child of the span current
in the request (an OpenTelemetry ASGI middleware's server span, say).
``observe_gauges(app)`` registers the observable gauges
``faststate.live_streams`` and ``faststate.stored_instances``.
Neither carries a value of the state or of the request.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue

from faststate._metrics import metrics
from faststate._observe import FAILED, EventHook, EventRecord

__all__ = ["observe_gauges", "span_attributes", "span_hook"]

#: The instrumentation scope of faststate's spans and gauges.
SCOPE = "faststate"


def span_attributes(record: EventRecord) -> dict[str, AttributeValue]:
    """The attributes of an event's span: names and measures, never values.

    Args:
        record: The event's record, as an ``on_event`` hook gets it.
    """
    return {
        "faststate.state_class": record.state_class,
        "faststate.event": record.event,
        "faststate.outcome": record.outcome,
        "http.response.status_code": record.status,
        "faststate.duration_s": record.duration,
        "faststate.lock_wait_s": record.lock_wait,
        "faststate.patch_bytes": record.patch_bytes,
    }


def span_hook(tracer_provider: TracerProvider | None = None) -> EventHook:
    """An ``on_event`` hook making one span per event.

    The span is named ``faststate.event <Class>.<event>``, starts when
    faststate took the request and ends when its answer was ready (the hook
    runs right then, so both times are exact), carries ``span_attributes``,
    and has status ERROR when the event failed.

    Args:
        tracer_provider: Where the spans go; by default the global tracer
            provider (``opentelemetry.trace.set_tracer_provider``).
    """
    tracer = trace.get_tracer(SCOPE, tracer_provider=tracer_provider)

    def faststate_span(record: EventRecord) -> None:
        end = time.time_ns()
        span = tracer.start_span(
            f"faststate.event {record.state_class}.{record.event}",
            kind=SpanKind.INTERNAL,
            attributes=span_attributes(record),
            start_time=end - round(record.duration * 1e9),
        )
        if record.outcome == FAILED:
            span.set_status(Status(StatusCode.ERROR, f"event failed ({record.status})"))
        span.end(end_time=end)

    return faststate_span


def observe_gauges(app: Any, meter_provider: MeterProvider | None = None) -> None:
    """Register the observable gauges of ``app``, read by ``faststate.metrics(app)``.

    ``faststate.live_streams``: live page streams open in this process.
    ``faststate.stored_instances``: instances the store keeps; observed only
    for stores that can count them without a round trip (``MemoryStore``, not
    ``RedisStore``), and once the app has started up or served a request.

    Args:
        app: The Starlette or FastHTML app with ``FastStateMiddleware`` and
            registered states.
        meter_provider: Where the gauges go; by default the global meter
            provider (``opentelemetry.metrics.set_meter_provider``).
    """
    meter = otel_metrics.get_meter(SCOPE, meter_provider=meter_provider)

    def live_streams(options: CallbackOptions) -> Iterator[Observation]:
        yield Observation(metrics(app).live_streams)

    def stored_instances(options: CallbackOptions) -> Iterator[Observation]:
        count = metrics(app).stored_instances
        if count is not None:
            yield Observation(count)

    meter.create_observable_gauge(
        "faststate.live_streams",
        callbacks=[live_streams],
        unit="{stream}",
        description="Live page streams open in this process",
    )
    meter.create_observable_gauge(
        "faststate.stored_instances",
        callbacks=[stored_instances],
        unit="{instance}",
        description="State instances the store keeps",
    )
