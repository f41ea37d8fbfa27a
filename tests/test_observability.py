"""Observability: the ``on_event`` hook's records, the DEBUG log lines, the
gauges, and the OpenTelemetry spans and gauges, through real ASGI apps."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import pytest
from fasthtml.common import Li
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.routing import Mount
from starlette.testclient import TestClient

from faststate import (
    EventRecord,
    FastStateMiddleware,
    Invalid,
    MemoryStore,
    Metrics,
    ReactiveState,
    StateScope,
    StoreUnavailable,
    Upload,
    event,
    metrics,
    otel,
    register_state,
)
from faststate._observe import Observer
from faststate._stores.base import S
from faststate.fasthtml import FastStateHTML
from faststate.testing import DATASTAR_HEADERS

from .apps import SECRET, States, state_app
from .live import HEADERS, Stream, make_app, open_page
from .support import run_server

#: A value the client sends: no record, log line or span may carry it.
SECRET_VALUE = "hunter2-sekrit"


class Vault(ReactiveState):
    balance: int = 0

    @event
    def deposit(self, amount: int, note: str = "") -> None:
        self.balance += amount

    @event
    def check(self, code: str) -> None:
        raise Invalid(code="that code is wrong")

    @event
    def explode(self, note: str = "") -> None:
        self.balance += 1
        raise RuntimeError(f"boom with {note}")

    @event
    def count_up(self, times: int = 2) -> Iterator[Any]:
        for _ in range(times):
            self.balance += 1
            yield Li(f"step {self.balance}", id="step")

    @event
    def count_then_fail(self) -> Iterator[Any]:
        self.balance += 1
        yield Li("one", id="step")
        raise RuntimeError("late")


class Inbox(ReactiveState):
    files: int = 0

    @event
    def receive(self, doc: Annotated[UploadFile, Upload(max_size=99, accept="text/plain")]) -> None:
        self.files += 1


class Locked(ReactiveState):
    n: int = 0

    @event
    def touch(self) -> None:
        self.n += 1


class Slow(ReactiveState):
    n: int = 0

    @event
    async def hold(self, seconds: float = 0.0) -> None:
        await asyncio.sleep(seconds)
        self.n += 1


STATES: States = {
    Vault: StateScope.SESSION,
    Locked: {"scope": StateScope.GLOBAL, "authorize": lambda request, key: False},
    Slow: StateScope.GLOBAL,
    Inbox: StateScope.SESSION,
}


def _app(**options: Any) -> tuple[Starlette, list[EventRecord]]:
    records: list[EventRecord] = []
    options.setdefault("on_event", records.append)
    return state_app(STATES, **options), records


def _post(client: TestClient, path: str, headers: dict[str, str] | None = None) -> Any:
    return client.post(path, headers=DATASTAR_HEADERS if headers is None else headers, json={})


def _only(records: list[EventRecord]) -> EventRecord:
    assert len(records) == 1, records
    return records.pop()


def _plausible(record: EventRecord, response: Any) -> None:
    assert 0 < record.duration < 5
    assert 0 <= record.lock_wait <= record.duration
    assert record.status == response.status_code
    assert SECRET_VALUE not in repr(record)


def test_ok_event() -> None:
    app, records = _app()
    with TestClient(app) as client:
        response = _post(client, f"/Vault/deposit?amount=2&note={SECRET_VALUE}")
        assert response.status_code == 200
        record = _only(records)
    assert (record.state_class, record.event, record.outcome) == ("Vault", "deposit", "ok")
    assert record.patch_bytes == len(response.content) > 0
    _plausible(record, response)


def test_rejected_events_invalid_parameter_and_invalid_raised() -> None:
    app, records = _app()
    with TestClient(app) as client:
        response = _post(client, f"/Vault/deposit?amount={SECRET_VALUE}")
        assert response.status_code == 200 and "_errors" in response.text
        record = _only(records)
        assert (record.event, record.outcome) == ("deposit", "rejected")
        assert record.patch_bytes == len(response.content)
        _plausible(record, response)

        response = _post(client, f"/Vault/check?code={SECRET_VALUE}")
        record = _only(records)
        assert (record.event, record.outcome, record.status) == ("check", "rejected", 200)
        assert record.patch_bytes == len(response.content)
        _plausible(record, response)


def test_refused_by_the_guard_before_routing() -> None:
    app, records = _app()
    with TestClient(app) as client:
        response = _post(client, "/Vault/deposit?amount=1", headers={})  # no Datastar-Request
        assert response.status_code == 403
        record = _only(records)
    assert (record.state_class, record.event, record.outcome) == ("Vault", "deposit", "refused")
    assert (record.status, record.patch_bytes, record.lock_wait) == (403, 0, 0.0)
    _plausible(record, response)


def test_refused_by_authorize() -> None:
    app, records = _app()
    with TestClient(app) as client:
        response = _post(client, "/Locked/touch")
        assert response.status_code == 403
        record = _only(records)
    assert (record.state_class, record.event, record.outcome) == ("Locked", "touch", "refused")
    _plausible(record, response)


class _DownStore(MemoryStore):
    async def load(self, key: str, cls: type[S]) -> S | None:
        raise StoreUnavailable("the store is down")


def test_refused_when_the_store_is_unavailable() -> None:
    app, records = _app(store=_DownStore())
    with TestClient(app) as client:
        response = _post(client, "/Vault/deposit?amount=1")
        assert response.status_code == 503
        record = _only(records)
    assert (record.outcome, record.status, record.patch_bytes) == ("refused", 503, 0)


def test_failed_event(caplog: pytest.LogCaptureFixture) -> None:
    app, records = _app()
    with TestClient(app) as client:
        response = _post(client, f"/Vault/explode?note={SECRET_VALUE}")
        assert response.status_code == 200
        record = _only(records)
    assert (record.event, record.outcome, record.status) == ("explode", "failed", 200)
    assert record.patch_bytes == len(response.content) > 0
    _plausible(record, response)
    # Failures were logged before any hook existed; that stays so.
    assert any(r.levelno >= logging.ERROR and "Vault.explode" in r.message for r in caplog.records)


def test_generator_event_one_record_when_it_finishes() -> None:
    app, records = _app()
    with TestClient(app) as client:
        response = _post(client, "/Vault/count_up?times=3")
        assert response.status_code == 200 and response.text.count("step") >= 3
        record = _only(records)
        assert (record.event, record.outcome, record.status) == ("count_up", "ok", 200)
        assert record.patch_bytes == len(response.content)
        _plausible(record, response)

        response = _post(client, "/Vault/count_then_fail")
        record = _only(records)
        assert (record.event, record.outcome) == ("count_then_fail", "failed")
        assert record.patch_bytes == len(response.content)


def test_upload_events_one_record_each() -> None:
    app, records = _app()
    with TestClient(app) as client:
        for name, body, kind in (("a.txt", b"hello", "text/plain"), ("a.bin", b"x", "image/png")):
            files = {"doc": (name, body, kind)}
            response = client.post("/Inbox/receive", files=files, headers=DATASTAR_HEADERS)
            assert response.status_code == 200
    assert [(r.event, r.outcome) for r in records] == [("receive", "ok"), ("receive", "rejected")]


async def test_lock_wait_is_measured() -> None:
    app, records = _app()
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

        async def hold(seconds: float) -> None:
            response = await client.post(
                f"/Slow/hold?seconds={seconds}", headers=DATASTAR_HEADERS, json={}
            )
            assert response.status_code == 200

        first = asyncio.create_task(hold(0.5))
        await asyncio.sleep(0.1)  # the first holds the lock now
        await hold(0)
        await first
    held, waited = records  # the first ends first: the second waits for its lock
    assert held.duration >= 0.5 and held.lock_wait < 0.05
    assert 0.1 < waited.lock_wait <= waited.duration


def test_a_raising_hook_breaks_nothing(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[EventRecord] = []

    def broken(record: EventRecord) -> None:
        raise ValueError("hook bug")

    app, _ = _app(on_event=[broken, seen.append])
    with TestClient(app) as client:
        response = _post(client, "/Vault/deposit?amount=5")
        assert response.status_code == 200
        assert '"balance":5' in response.text
        assert [r.outcome for r in seen] == ["ok"]  # the next hook still ran
    assert any("on_event hook" in r.message and r.exc_info for r in caplog.records)


def test_async_hooks_are_refused_up_front() -> None:
    async def hook(record: EventRecord) -> None: ...

    with pytest.raises(TypeError, match="synchronously"):
        FastStateMiddleware(Starlette(), secret_key=SECRET, on_event=hook)
    with pytest.raises(TypeError, match="callables"):
        FastStateMiddleware(Starlette(), secret_key=SECRET, on_event=["not a hook"])  # type: ignore[list-item]


def test_unwatched_events_take_no_clock() -> None:
    logging.getLogger("faststate.events").setLevel(logging.INFO)
    try:
        assert Observer().watch() is None
        assert Observer(lambda record: None).watch() is not None
    finally:
        logging.getLogger("faststate.events").setLevel(logging.NOTSET)


def test_debug_lines_without_a_hook(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="faststate.events")
    app = state_app(STATES)
    with TestClient(app) as client:
        _post(client, f"/Vault/deposit?amount=1&note={SECRET_VALUE}")
        _post(client, "/Vault/deposit?amount=oops")
    lines = [r.getMessage() for r in caplog.records if r.name == "faststate.events"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("faststate: Vault.deposit ok (200) in ")
    assert "ms, lock wait " in lines[0] and lines[0].endswith(" bytes")
    assert "Vault.deposit rejected (200)" in lines[1]
    assert all(SECRET_VALUE not in line and "oops" not in line for line in lines)


def test_events_of_an_app_mounted_below_the_middleware() -> None:
    """The endpoint guards these itself, and watches them from there."""
    inner = Starlette()
    register_state(inner, Vault)
    records: list[EventRecord] = []
    outer = state_app(routes=[Mount("/api", inner)], on_event=records.append)
    with TestClient(outer) as client:
        assert _post(client, "/api/Vault/deposit?amount=1").status_code == 200
        assert _post(client, "/api/Vault/deposit?amount=1", headers={}).status_code == 403
    assert [(r.event, r.outcome, r.status) for r in records] == [
        ("deposit", "ok", 200),
        ("deposit", "refused", 403),
    ]


def test_fasthtml_app_takes_the_hook_through_its_options() -> None:
    records: list[EventRecord] = []
    app = FastStateHTML(faststate={"secret_key": SECRET, "on_event": records.append})
    app.register_state(Vault, scope="session")
    with TestClient(app) as client:
        assert _post(client, "/Vault/deposit?amount=1").status_code == 200
        assert _post(client, "/Vault/deposit?amount=1", headers={}).status_code == 403
    assert [(r.event, r.outcome) for r in records] == [("deposit", "ok"), ("deposit", "refused")]


def test_otel_one_span_per_event() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    records: list[EventRecord] = []
    app, _ = _app(on_event=[otel.span_hook(provider), records.append])
    with TestClient(app) as client:
        _post(client, f"/Vault/deposit?amount=3&note={SECRET_VALUE}")
        _post(client, f"/Vault/explode?note={SECRET_VALUE}")
        _post(client, "/Vault/count_up")
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == [
        "faststate.event Vault.deposit",
        "faststate.event Vault.explode",
        "faststate.event Vault.count_up",
    ]
    for span, record in zip(spans, records, strict=True):
        assert span.attributes == otel.span_attributes(record)
        assert span.start_time is not None and span.end_time is not None
        assert span.end_time - span.start_time == round(record.duration * 1e9)
        assert SECRET_VALUE not in repr(dict(span.attributes or {}))
    ok, failed, streamed = spans
    assert ok.attributes is not None and ok.attributes["faststate.outcome"] == "ok"
    assert ok.attributes["faststate.state_class"] == "Vault"
    assert ok.attributes["faststate.event"] == "deposit"
    assert ok.attributes["faststate.patch_bytes"] == records[0].patch_bytes > 0
    assert ok.status.status_code is StatusCode.UNSET
    assert failed.status.status_code is StatusCode.ERROR
    assert streamed.attributes is not None and streamed.attributes["faststate.outcome"] == "ok"


def _gauges(reader: InMemoryMetricReader) -> dict[str, list[int | float]]:
    data = reader.get_metrics_data()
    found: dict[str, list[int | float]] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found[metric.name] = [point.value for point in metric.data.data_points]  # type: ignore[union-attr]
    return found


def test_metrics_before_the_app_has_served() -> None:
    assert metrics(Starlette()) == Metrics(0, None)
    app, _ = _app()
    assert metrics(app) == Metrics(0, None)


async def test_gauges_see_an_open_live_stream_and_stored_instances() -> None:
    app = make_app()
    reader = InMemoryMetricReader()
    otel.observe_gauges(app, MeterProvider(metric_readers=[reader]))
    with run_server(app) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            url = await open_page(client, "board,note")
            await client.post("/Board/bump", headers=HEADERS, content="{}")
            headers = {"Datastar-Request": "true"}
            async with client.stream("GET", url, headers=headers) as response:
                assert response.status_code == 200
                stream = Stream(response)
                await stream.nothing_within(0.2)  # subscribed by now
                assert metrics(app) == Metrics(1, 2)  # Board and this session's Note
                assert _gauges(reader) == {
                    "faststate.live_streams": [1],
                    "faststate.stored_instances": [2],
                }
                stream.reader.cancel()
        for _ in range(50):  # the server notices the closed stream
            if metrics(app).live_streams == 0:
                break
            await asyncio.sleep(0.05)
        assert _gauges(reader)["faststate.live_streams"] == [0]


def test_stores_that_cannot_count_observe_no_instances() -> None:
    class Uncounted(MemoryStore):
        def instance_count(self) -> None:  # type: ignore[override]
            return None

    app, _ = _app(store=Uncounted())
    reader = InMemoryMetricReader()
    otel.observe_gauges(app, MeterProvider(metric_readers=[reader]))
    with TestClient(app) as client:
        _post(client, "/Vault/deposit?amount=1")
        assert metrics(app) == Metrics(0, None)
        assert _gauges(reader) == {"faststate.live_streams": [0]}
