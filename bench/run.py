"""faststate benchmarks: every figure a ratio against a baseline measured in the same run.

    python bench/run.py            # all figures, a table, and bench/RESULTS.md's table rewritten
    python bench/run.py --json     # the same figures as one JSON object (RESULTS.md left alone)
    python bench/run.py --quick    # tiny counts: proves the scripts work (CI)

The machines are shared and noisy, so absolute times mean little; ratios
taken side by side in one run, medians of several rounds, mean more.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.parse
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.connection

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import apps  # noqa: E402
from asgi import EVENT_HEADERS, LivePages, call, scope, session_cookie  # noqa: E402

from faststate import mutate  # noqa: E402
from faststate._resolve import address_from_key  # noqa: E402
from faststate._state import stored_version  # noqa: E402
from faststate._transaction import read  # noqa: E402

REDIS_URL = os.environ.get("FASTSTATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


async def _time_events(app: Any, path: str, cookie: bytes, count: int) -> float:
    """Seconds per event, ``count`` events in a row."""
    request = scope("POST", path, [*EVENT_HEADERS, (b"cookie", cookie)], b"amount=1")
    started = time.perf_counter()
    for _ in range(count):
        status, _, _ = await call(app, request, b"{}")
        if status != 200:
            raise RuntimeError(f"{path} answered {status}")
    return (time.perf_counter() - started) / count


async def _alternate(pairs: list[tuple[Any, str, bytes]], count: int, rounds: int) -> list[float]:
    """Median seconds per event of each (app, path, cookie), rounds interleaved."""
    samples: list[list[float]] = [[] for _ in pairs]
    for app, path, cookie in pairs:  # warm up: first-use costs are not the steady state
        await _time_events(app, path, cookie, max(20, count // 10))
    for _ in range(rounds):
        for index, (app, path, cookie) in enumerate(pairs):
            gc.collect()
            samples[index].append(await _time_events(app, path, cookie, count))
    return [statistics.median(s) for s in samples]


async def event_overhead(count: int, rounds: int) -> dict[str, float]:
    fast = apps.faststate_app()
    hand = apps.handwritten_app()
    cookie = await session_cookie(fast)
    fast_s, hand_s = await _alternate(
        [
            (fast, "/CounterState/increment", cookie),
            (hand, "/CounterState/increment", apps.handwritten_cookie().encode()),
        ],
        count,
        rounds,
    )
    return {
        "event_faststate_us": fast_s * 1e6,
        "event_handwritten_us": hand_s * 1e6,
        "event_overhead_ratio": fast_s / hand_s,
    }


async def state_size(count: int, rounds: int) -> dict[str, float]:
    app = apps.faststate_app()
    cookie = await session_cookie(app)
    big, small = await _alternate(
        [(app, "/BigState/increment", cookie), (app, "/SmallState/increment", cookie)],
        count,
        rounds,
    )
    return {
        "state_big_us": big * 1e6,
        "state_small_us": small * 1e6,
        "state_size_ratio": big / small,
    }


async def stream_append(appended: int, count: int, rounds: int) -> dict[str, float]:
    """One item appended to a stream that ``appended`` items went through before (the
    server keeps its last 100), against a hand-written endpoint answering one ``<li>``."""
    fast = apps.feed_app()
    hand = apps.handwritten_app()
    cookie = await session_cookie(fast)
    await _time_events(fast, "/FeedState/add", cookie, appended)  # the stream's history
    request = scope("POST", "/FeedState/add", [*EVENT_HEADERS, (b"cookie", cookie)], b"")
    status, _, body = await call(fast, request, b"{}")
    if status != 200:
        raise RuntimeError(f"/FeedState/add answered {status}")
    fast_s, hand_s = await _alternate(
        [
            (fast, "/FeedState/add", cookie),
            (hand, "/FeedState/add", apps.handwritten_cookie().encode()),
        ],
        count,
        rounds,
    )
    return {
        "stream_append_us_100k": fast_s * 1e6,
        "stream_append_handwritten_us": hand_s * 1e6,
        "stream_append_ratio": fast_s / hand_s,
        "stream_append_bytes_100k": float(len(body)),
    }


async def collections(count: int, rounds: int) -> dict[str, float]:
    """One item appended to a plain ``list[int]`` of 100,000, the whole list sent back.

    JSON Merge Patch replaces arrays, so both sides send the same bytes; what
    is left to compare is faststate's tracking, rollback copy and diff.  One
    key changed in a ``dict[str, int]`` of 100,000, in the same rounds, shows
    what a dict costs instead (its patch holds that key only).
    """
    fast = apps.faststate_collections_app()
    hand = apps.handwritten_list_app()
    cookie = await session_cookie(fast)
    fast_s, hand_s, dict_s = await _alternate(
        [
            (fast, "/ListState/append", cookie),
            (hand, "/ListState/append", apps.handwritten_cookie().encode()),
            (fast, "/DictState/increment", cookie),
        ],
        count,
        rounds,
    )
    return {
        "list_append_us_100k": fast_s * 1e6,
        "list_append_handwritten_us_100k": hand_s * 1e6,
        "list_append_ratio_100k": fast_s / hand_s,
        "dict_set_us_100k": dict_s * 1e6,
    }


def _redis_reachable(figure: str) -> bool:
    """Whether the benchmarks' Redis answers; if not, says that ``figure`` is skipped."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except Exception as exc:
        print(f"{figure} skipped: Redis unreachable ({exc})", file=sys.stderr)
        return False
    return True


async def redis_vs_memory(count: int, rounds: int) -> dict[str, float | None]:
    if not _redis_reachable("redis_vs_memory"):
        return {"redis_vs_memory_ratio": None}
    from faststate import RedisStore

    store = RedisStore(REDIS_URL, prefix=f"faststate-bench:{os.getpid()}:")
    redis_app = apps.faststate_app(store)
    memory_app = apps.faststate_app()
    memory_cookie = await session_cookie(memory_app)
    reader, writer = await _bare_connection()
    try:
        round_trips = [await _round_trip_s(count)]
        redis_s, memory_s, floor_s = await _alternate(
            [
                (redis_app, "/CounterState/increment", await session_cookie(redis_app)),
                (memory_app, "/CounterState/increment", memory_cookie),
                (
                    _around_round_trips(memory_app, reader, writer),
                    "/CounterState/increment",
                    memory_cookie,
                ),
            ],
            count,
            rounds,
        )
        round_trips.append(await _round_trip_s(count))
    finally:
        writer.close()
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{store.prefix}*"):
            client.delete(key)
        await store.aclose()
    round_trip_s = statistics.median(round_trips)
    return {
        "event_redis_us": redis_s * 1e6,
        "event_memory_us": memory_s * 1e6,
        "redis_vs_memory_ratio": redis_s / memory_s,
        "redis_round_trip_us": round_trip_s * 1e6,
        # What the ratio is when a memory event does nothing but two bare round
        # trips more, one before and one after it: the machine's floor for the
        # figure.  Timed, not added up: each round trip also leaves the event's
        # code to run on caches the kernel and redis-server went through.
        "redis_floor_ratio": floor_s / memory_s,
    }


def _around_round_trips(
    app: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> Any:
    """``app`` with a bare ``PING`` round trip to Redis before and after each request,
    as a Redis event has its lock-and-load before the method and its save after it."""

    async def around(scope: Any, receive: Any, send: Any) -> None:
        await _ping(reader, writer)
        await app(scope, receive, send)
        await _ping(reader, writer)

    return around


async def _bare_connection() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain asyncio connection to the benchmarks' Redis: no client library."""
    parts = urllib.parse.urlsplit(REDIS_URL)
    return await asyncio.open_connection(parts.hostname, parts.port or 6379)


async def _ping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"*1\r\n$4\r\nPING\r\n")
    if await reader.readline() != b"+PONG\r\n":
        raise RuntimeError("Redis did not answer PING with PONG")


async def _round_trip_s(count: int) -> float:
    """Seconds per bare ``PING`` round trip on one kept asyncio connection: no
    client library, nothing but the network, the event loop and Redis."""
    reader, writer = await _bare_connection()
    try:
        started = time.perf_counter()
        for _ in range(count):
            await _ping(reader, writer)
        return (time.perf_counter() - started) / count
    finally:
        writer.close()


async def redis_round_trips(count: int) -> dict[str, float | None]:
    """Round trips to Redis per single-instance event, counted on the client: every
    command (or pipeline) the store's connections send is one."""
    if not _redis_reachable("redis_round_trips"):
        return {"redis_round_trips": None}
    from faststate import RedisStore

    store = RedisStore(REDIS_URL, prefix=f"faststate-bench-rt:{os.getpid()}:")
    app = apps.faststate_app(store)
    sent = 0
    connection = redis.asyncio.connection.AbstractConnection
    original = connection.send_packed_command

    async def counted(self: Any, command: Any, check_health: bool = True) -> None:
        nonlocal sent
        sent += 1
        await original(self, command, check_health)

    try:
        cookie = await session_cookie(app)  # the page creates the instance
        await _time_events(app, "/CounterState/increment", cookie, 3)  # scripts loaded
        connection.send_packed_command = counted  # type: ignore[method-assign]
        try:
            await _time_events(app, "/CounterState/increment", cookie, count)
        finally:
            connection.send_packed_command = original  # type: ignore[method-assign]
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{store.prefix}*"):
            client.delete(key)
        await store.aclose()
    return {"redis_round_trips": sent / count}


async def _cluster_events_and_pushes(url: str, ports: tuple[int, ...], node_of: Any) -> bool:
    """Two "workers" (apps with stores of their own) on one cluster: events on the
    first answer 200, and a page of the second, subscribed to instances on every
    node, gets each change once."""
    from faststate import RedisStore
    from faststate._address import Address
    from faststate._transaction import Transaction

    first = apps.faststate_app(RedisStore(url, prefix="bench-cluster:"))
    second = apps.faststate_app(RedisStore(url, prefix="bench-cluster:"))
    nodes = set()
    try:
        for _ in range(6):  # a new session each: instances on several nodes
            await _time_events(first, "/CounterState/increment", await session_cookie(first), 3)
        await session_cookie(second)
        runtimes = [app.state.faststate_registry.runtime for app in (first, second)]
        registration = first.state.faststate_registry.by_name["CounterState"]
        addresses = []
        for index in range(12):
            address = Address.of(registration, f"s{index}", f"s{index}", runtimes[0].protocol)
            addresses.append(address)
            nodes.add(node_of(runtimes[0].store.keys.state(address.key)))
        got: list[Any] = []
        arrived = asyncio.Event()

        def deliver(change: Any) -> None:
            got.append(change)
            if len(got) >= len(addresses):
                arrived.set()

        for address in addresses:
            await runtimes[1].broker.subscribe(address.key, deliver)
        for address in addresses:
            async with Transaction(runtimes[0], [address]) as tx:
                tx.states[0].count += 1  # type: ignore[attr-defined]
                tx.finish()
                await tx.commit()
        try:
            async with asyncio.timeout(5):
                await arrived.wait()
        except TimeoutError:
            pass  # some never arrived: not ok
        await asyncio.sleep(0.1)  # and none arrives twice
        keys = sorted(change.key for change in got if change is not None)
        return len(nodes) == len(ports) and keys == sorted(a.key for a in addresses)
    finally:
        for app in (first, second):
            runtime = app.state.faststate_registry.runtime
            await runtime.broker.aclose()
            await runtime.store.aclose()


def cluster_ok() -> dict[str, Any]:
    """Events and live pushes on a three-node Redis Cluster the benchmark starts."""
    from tests.redis_cluster import LocalCluster, missing_binaries

    reason = missing_binaries()
    if reason is not None:
        print(f"cluster_ok skipped: {reason}", file=sys.stderr)
        return {"cluster_ok": None}
    cluster = LocalCluster((17111, 17112, 17113)).start()
    try:
        ok = asyncio.run(_cluster_events_and_pushes(cluster.url, cluster.ports, cluster.node_of))
    finally:
        cluster.stop()
    return {"cluster_ok": ok}


def bytes_per_session(count: int) -> dict[str, float]:
    """Memory held per idle SESSION instance, from ``count`` instances in the store."""
    from faststate import MemoryStore, StateConfig, StateScope
    from faststate._address import Address
    from faststate._protocol import get_protocol
    from faststate._registry import Registration
    from faststate._state import place, stored_version

    store = MemoryStore(max_instances=count + 1)
    protocol = get_protocol("v1")
    registration = Registration(apps.IdleState, StateConfig(StateScope.SESSION, 3600), "", {})
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    first = None
    for index in range(count):
        # What use_state leaves behind for one visitor: a key and an instance
        # placed under it, held in the store's table.
        session = f"{index:032x}"
        address = Address.of(registration, session, session, protocol)
        state = store.add_sync(address.key, apps.IdleState(), 3600)
        place(state, address.key, address.site)
        if first is None:
            first = state
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(store) == count
    # The parts of the last one (what each costs; the store's table and the
    # allocator's rounding make up the rest).
    values = state.__dict__
    fields_set, private = state.__pydantic_fields_set__, state.__pydantic_private__
    parts = {
        "instance": sys.getsizeof(state),
        "fields_dict": sys.getsizeof(values),
        # Instances built with their defaults share one empty fields-set.
        "fields_set": sys.getsizeof(fields_set) if type(fields_set) is set else 0,
        "private_dict": sys.getsizeof(private) if private is not None else 0,
        "id_string": sys.getsizeof(values["id"]),
        # The session id is not among them: the key holds it as text, and
        # the address is rebuilt from the key and the class's shared site
        # when asked for.
        "key_string": sys.getsizeof(address.key),
        # Instances created while none left the store share one first version.
        "version": 0 if stored_version(state) is stored_version(first) else sys.getsizeof(
            stored_version(state)
        ),
    }
    return {
        "bytes_per_session": (after - before) / count,
        **{f"session_{name}_bytes": float(size) for name, size in parts.items()},
    }


async def _fanout_delivered_once(subscribers: int) -> tuple[float, float]:
    """Milliseconds from a ``mutate`` of one instance to the moment the last of
    ``subscribers`` live streams handed the change to its ASGI ``send``, and how
    long the ``mutate`` itself took (what an event's caller waits for)."""
    app = apps.faststate_app()
    await session_cookie(app)  # builds the middleware and its runtime
    runtime, address, version = await _bench_instance(app)
    pages = LivePages(runtime, address, version, subscribers, time.perf_counter)
    await pages.ready()
    gc.collect()
    pages.arm()
    started = time.perf_counter()
    async with mutate(app, apps.CounterState, key="bench") as state:
        state.count += 1
    answered = time.perf_counter()
    last = await pages.last_sent()
    await pages.close()
    return (last - started) * 1000, (answered - started) * 1000


async def _bench_instance(app: Any) -> tuple[Any, Any, int]:
    """The runtime of ``app``, and the address and stored version of its
    ``CounterState`` of session ``bench`` (created if need be)."""
    registry = app.state.faststate_registry
    runtime = registry.runtime
    address = address_from_key(runtime, registry.by_name["CounterState"], "bench")
    committed = await read(runtime, address)
    if committed is None:
        async with mutate(app, apps.CounterState, key="bench"):
            pass
        committed = await read(runtime, address)
    assert committed is not None
    return runtime, address, stored_version(committed)


def fanout_delivered(subscribers: dict[str, int], rounds: int) -> dict[str, float]:
    """One change of an instance that real ``LiveStream`` responses show, timed
    from its ``mutate`` to the last stream's ``send`` (medians of ``rounds``)."""
    figures: dict[str, float] = {}
    for label, count in subscribers.items():
        results = [asyncio.run(_fanout_delivered_once(count)) for _ in range(rounds)]
        figures[f"fanout_delivered_ms_{label}"] = statistics.median(r[0] for r in results)
        figures[f"fanout_caller_ms_{label}"] = statistics.median(r[1] for r in results)
    return figures


def fanout_redis(subscribers: int, rounds: int) -> dict[str, float | None]:
    """A ``mutate`` in this process (a ``RedisStore`` app), to the moment the last of
    ``subscribers`` live streams of another worker handed the change to its ``send``."""
    if not _redis_reachable("fanout_redis"):
        return {"fanout_redis_ms": None}
    return {"fanout_redis_ms": statistics.median(asyncio.run(_fanout_redis(subscribers, rounds)))}


async def _fanout_redis(subscribers: int, rounds: int) -> list[float]:
    from faststate import RedisStore

    prefix = f"faststate-bench:{os.getpid()}:"
    store = RedisStore(REDIS_URL, prefix=prefix)
    app = apps.faststate_app(store)
    await session_cookie(app)
    await _bench_instance(app)  # the instance the worker's pages show
    results = []
    try:
        for _ in range(rounds):
            worker = await asyncio.create_subprocess_exec(
                sys.executable,
                str(HERE / "fanout_worker.py"),
                REDIS_URL,
                prefix,
                str(subscribers),
                stdout=subprocess.PIPE,
            )
            assert worker.stdout is not None
            if (await worker.stdout.readline()).strip() != b"ready":
                raise RuntimeError("fan-out worker did not start")
            await asyncio.sleep(0.2)
            sent = time.time()
            async with mutate(app, apps.CounterState, key="bench") as state:
                state.count += 1
            line = await asyncio.wait_for(worker.stdout.readline(), 60)
            await asyncio.wait_for(worker.wait(), 30)
            results.append((json.loads(line)["last_sent"] - sent) * 1000)
    finally:
        runtime = app.state.faststate_registry.runtime
        await runtime.broker.aclose()
        client = redis.asyncio.Redis.from_url(REDIS_URL)
        async for key in client.scan_iter(f"{prefix}*"):
            await client.delete(key)
        await client.aclose()
        await store.aclose()
    return results


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(name: str) -> tuple[subprocess.Popen[bytes], str]:
    """``serve:<name>`` under uvicorn in a process of its own, once it answers."""
    import httpx

    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(HERE),
            f"serve:{name}",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(base + "/", timeout=1)
            return server, base
        except httpx.TransportError:
            if time.monotonic() > deadline:
                server.terminate()
                raise
            time.sleep(0.1)


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def upload_rss(megabytes: int) -> dict[str, float]:
    """Peak resident memory a real uvicorn server gains while one file of
    ``megabytes`` MB is uploaded to an event (the file streams to disk)."""
    import httpx

    server, base = _serve("uploads")
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            client.get("/")
            headers = {"Datastar-Request": "true", "Sec-Fetch-Site": "same-origin"}

            def upload(size: int) -> None:
                boundary = "faststate-bench"
                head = (
                    f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                    'filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
                ).encode()
                tail = f"\r\n--{boundary}--\r\n".encode()
                block = os.urandom(2**16)
                blocks = size // len(block)

                def body() -> Any:  # streamed: the client holds no copy either
                    yield head
                    for _ in range(blocks):
                        yield block
                    yield tail

                response = client.post(
                    "/UploadState/store",
                    content=body(),
                    headers={
                        **headers,
                        "Content-Type": f"multipart/form-data; boundary={boundary}",
                        "Content-Length": str(len(head) + blocks * len(block) + len(tail)),
                    },
                )
                response.raise_for_status()
                if "received" not in response.text:
                    raise RuntimeError(f"upload not received: {response.text[:200]}")

            upload(2**20)  # warm up: every code path of an upload loaded once
            pid = server.pid
            try:  # start the peak afresh (Linux: "5" resets VmHWM to the current RSS)
                with open(f"/proc/{pid}/clear_refs", "w") as handle:
                    handle.write("5")
            except OSError:
                pass
            before = _status_kib(pid, "VmHWM")
            upload(megabytes * 10**6)
            after = _status_kib(pid, "VmHWM")
    finally:
        server.terminate()
        server.wait(10)
    return {"upload_rss_mb": max(0, after - before) / 1024}


def over_http(seconds: int, rounds: int, processes: int) -> dict[str, float | None]:
    """The apps under uvicorn, each in ``processes`` servers of one worker (all
    started once), loaded by wrk from another process: ``rounds`` rounds of one
    ``seconds``-long run of every server, in an order reversed every round.
    A round's figure for an app is the median of its servers; each ratio is
    the median of the rounds' ratios (a neighbour's burst on the shared
    machine then spoils one round, not the figure).

    Several servers of each app because one process is luckier than another:
    three servers of the same code, loaded in turn, spent 93, 98 and 100 µs
    of CPU per request, round after round (where the process's memory and
    hash tables fall differs with every start).

    ``http_ratio`` is against the hand-written counter, which never reads the
    body; ``http_ratio_reading`` against the same counter reading the page's
    signals with datastar-py's ``read_signals``.  ``http_cpu_ratio`` is the
    servers' CPU time per request, the hand-written counter's over
    faststate's: what a server spends on a request, whatever wrk and the
    neighbours took of the machine meanwhile."""
    if shutil.which("wrk") is None:
        print("over_http skipped: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return {"http_ratio": None}
    import httpx

    names = ("faststate", "handwritten", "handwritten_reading")
    targets: list[tuple[str, str, str, int]] = []  # app, base URL, cookie, server pid
    servers: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(processes):
            for name in names:
                server, base = _serve(name)
                servers.append(server)
                cookie = (
                    httpx.get(base + "/").headers.get("set-cookie", "").split(";", 1)[0]
                    if name == "faststate"
                    else apps.handwritten_cookie()
                )
                targets.append((name, base, cookie, server.pid))
                _wrk(base, cookie, 1)  # warm up: first-use costs are not the steady state
        results: dict[str, list[float]] = {name: [] for name in names}
        cpu: dict[str, list[float]] = {name: [] for name in names}
        for round_number in range(rounds):
            rates: dict[str, list[float]] = {name: [] for name in names}
            spent: dict[str, list[float]] = {name: [] for name in names}
            # Neither app (nor server) always runs first.
            for name, base, cookie, pid in targets[:: -1 if round_number % 2 else 1]:
                before = _cpu_seconds(pid)
                rps, requests = _wrk(base, cookie, seconds)
                spent[name].append((_cpu_seconds(pid) - before) / requests)
                rates[name].append(rps)
            for name in names:
                results[name].append(statistics.median(rates[name]))
                cpu[name].append(statistics.median(spent[name]))
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)
    fast = results["faststate"]

    def ratio(baseline: str) -> float:
        return statistics.median(f / b for f, b in zip(fast, results[baseline], strict=True))

    return {
        "http_faststate_rps": statistics.median(fast),
        "http_handwritten_rps": statistics.median(results["handwritten"]),
        "http_ratio": ratio("handwritten"),
        "http_handwritten_reading_rps": statistics.median(results["handwritten_reading"]),
        "http_ratio_reading": ratio("handwritten_reading"),
        "http_cpu_us_faststate": statistics.median(cpu["faststate"]) * 1e6,
        "http_cpu_us_handwritten": statistics.median(cpu["handwritten"]) * 1e6,
        "http_cpu_ratio": statistics.median(
            h / f for f, h in zip(cpu["faststate"], cpu["handwritten"], strict=True)
        ),
    }


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far (Linux)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wrk(base: str, cookie: str, seconds: int) -> tuple[float, int]:
    """Requests per second, and requests answered, of one wrk run."""
    script = f"""
wrk.method = "POST"
wrk.body = "{{}}"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Datastar-Request"] = "true"
wrk.headers["Sec-Fetch-Site"] = "same-origin"
wrk.headers["Cookie"] = "{cookie}"
"""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        output = subprocess.run(
            [
                "wrk",
                "-t1",
                "-c16",
                f"-d{seconds}s",
                "-s",
                handle.name,
                f"{base}/CounterState/increment?amount=1",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(handle.name)
    if "Non-2xx" in output:
        raise RuntimeError(f"wrk saw errors:\n{output}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    answered = re.search(r"(\d+) requests in", output)
    assert rate and answered, output
    return float(rate.group(1)), int(answered.group(1))


TARGETS = {
    "event_overhead_ratio": ("<=", 1.1),
    "http_ratio": (">=", 0.95),
    "state_size_ratio": ("<=", 1.5),
    "list_append_ratio_100k": ("<=", 1.5),
    "fanout_delivered_ms_1k": ("<=", 15.0),
    "fanout_delivered_ms_10k": ("<=", 120.0),
    "fanout_redis_ms": ("<=", 250.0),
    "bytes_per_session": ("<=", 600.0),
    "redis_vs_memory_ratio": ("<=", 8.0),
    "redis_round_trips": ("<=", 2.0),
    "stream_append_ratio": ("<=", 2.0),
    "stream_append_bytes_100k": ("<=", 1024.0),
    "upload_rss_mb": ("<=", 10.0),
}


def run(quick: bool) -> dict[str, Any]:
    events, rounds = (200, 3) if quick else (3000, 7)
    figures: dict[str, Any] = {}
    figures.update(asyncio.run(event_overhead(events, rounds)))
    figures.update(asyncio.run(state_size(events, rounds)))
    figures.update(asyncio.run(stream_append(1000 if quick else 100_000, events, rounds)))
    # Each event costs milliseconds here: far fewer of them, same rounds.
    figures.update(asyncio.run(collections(5 if quick else 40, rounds)))
    figures.update(asyncio.run(redis_vs_memory(events // 3, rounds)))
    figures.update(asyncio.run(redis_round_trips(20 if quick else 200)))
    figures.update(cluster_ok())
    figures.update(bytes_per_session(1000 if quick else 100_000))
    fanout_counts = {"1k": 100, "10k": 100} if quick else {"1k": 1000, "10k": 10_000}
    figures.update(fanout_delivered(fanout_counts, 3 if quick else 5))
    figures.update(fanout_redis(100 if quick else 1000, 1 if quick else 5))
    figures.update(over_http(1, 1, 1) if quick else over_http(3, 5, 3))
    figures.update(upload_rss(4 if quick else 50))
    return figures


def table(figures: dict[str, Any]) -> str:
    lines = ["| figure | value | target | met |", "|---|---|---|---|"]
    for name, value in figures.items():
        target = TARGETS.get(name)
        if isinstance(value, bool):
            shown = "yes" if value else "NO"
        else:
            shown = "n/a" if value is None else f"{value:,.2f}"
        if target is None or target[1] is None or value is None:
            lines.append(f"| {name} | {shown} | | |")
            continue
        op, limit = target
        met = value <= limit if op == "<=" else value >= limit
        lines.append(f"| {name} | {shown} | {op} {limit:g} | {'yes' if met else 'NO'} |")
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    python = f"Python {platform.python_version()}, {platform.system()}"
    return f"{cpu}, {os.cpu_count()} cores, {python}; faststate {build()}"


def build() -> str:
    """Which faststate the figures are of: pure Python, or the compiled build
    (``setup.py``) with how many of its modules compiled."""
    compiled = [
        name
        for name, module in list(sys.modules.items())
        if name.startswith("faststate.")
        and (getattr(module, "__file__", None) or "").endswith(tuple(EXTENSION_SUFFIXES))
    ]
    return f"compiled by mypyc ({len(compiled)} modules)" if compiled else "pure Python"


#: Where the notes written by hand begin in RESULTS.md: what follows is kept
#: when a run rewrites the table above it.
NOTES_MARK = "<!-- notes: kept when bench/run.py rewrites the table above -->"


def results_page(figures: dict[str, Any], machine: str, former: str) -> str:
    """RESULTS.md with this run's table, and the notes of ``former`` (its text so far)."""
    today = datetime.date.today().isoformat()
    _, marked, notes = former.partition(NOTES_MARK)
    return (
        f"# Benchmark results\n\nRegenerated by `python bench/run.py` on {today}.\n\n"
        f"Machine: {machine} (shared; figures are ratios taken in one run).\n\n"
        f"{table(figures)}\n\n{NOTES_MARK}\n" + (notes.removeprefix("\n") if marked else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--quick", action="store_true", help="tiny counts (a smoke run)")
    args = parser.parse_args()
    figures = run(args.quick)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(table(figures))
    if not args.quick:
        results = HERE / "RESULTS.md"
        former = results.read_text() if results.exists() else ""
        results.write_text(results_page(figures, machine(), former))


if __name__ == "__main__":
    main()
