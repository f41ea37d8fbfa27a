"""Live streams over a real uvicorn server: push, resync, security, shutdown.

The app, its states and the SSE reader are in tests/live.py; the ``server``
fixture (tests/conftest.py) serves it.  ``mutate()`` and ``push()`` are in
test_live_mutations.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import time

import httpx
from itsdangerous import URLSafeTimedSerializer
from starlette.applications import Starlette

from faststate._live.broker import Change
from faststate._runtime import Runtime

from .apps import SECRET
from .live import HEADERS, Board, Stream, make_app, open_page
from .support import free_port, run_server, start_example


async def test_live_attributes_follow_protocol() -> None:
    for protocol, attribute in (("v1", "data-init"), ("beta", "data-on-load")):
        app = make_app(protocol)
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            data = (await client.get("/page")).json()
        assert data["attribute"] == attribute
        assert data["expression"].startswith("@get(")
        if protocol == "v1":
            assert '"retry": "always"' in data["expression"]


async def test_change_by_another_client_reaches_open_stream(
    server: tuple[str, Starlette],
) -> None:
    base, _ = server
    async with httpx.AsyncClient(base_url=base) as alice, httpx.AsyncClient(base_url=base) as bob:
        url = await open_page(alice)
        async with alice.stream("GET", url, headers={"Datastar-Request": "true"}) as response:
            stream = Stream(response)
            assert await stream.nothing_within(0.3)  # the page already shows this version
            before = (await bob.post("/Board/bump", headers=HEADERS, content="{}")).text
            assert "datastar-patch-signals" in before
            sse = await stream.next()
            assert sse.type == "datastar-patch-signals"
            count = sse.signals["Board"]["count"]
            # The version travels as the event id; its low bits count the saves.
            assert sse.id is not None and int(sse.id) & 0xFFFFFFFF == count
            await bob.post("/Board/bump?by=5", headers=HEADERS, content="{}")
            assert (await stream.next()).signals == {"Board": {"count": count + 5}}


async def test_reconnect_with_old_last_event_id_resyncs_full_state(
    server: tuple[str, Starlette],
) -> None:
    base, _ = server
    async with httpx.AsyncClient(base_url=base) as client:
        url = await open_page(client, "board,note")
        await client.post("/Note/write?text=hello", headers=HEADERS, content="{}")
        headers = {"Datastar-Request": "true", "Last-Event-ID": "0.0"}
        async with client.stream("GET", url, headers=headers) as response:
            stream = Stream(response)
            first, second = await stream.next(), await stream.next()
            assert {**first.signals, **second.signals}.keys() == {"Board", "Note"}
            assert second.signals["Note"]["text"] == "hello"
            assert "id" in second.signals["Note"]  # the whole public state, not a diff


async def test_a_gap_the_log_cannot_fill_sends_the_full_state(
    server: tuple[str, Starlette],
) -> None:
    base, app = server
    async with httpx.AsyncClient(base_url=base) as client:
        url = await open_page(client)
        async with client.stream("GET", url, headers={"Datastar-Request": "true"}) as response:
            stream = Stream(response)
            await stream.nothing_within(0.2)
            runtime = app.state.faststate_registry.runtime
            # A change saved but never published nor logged (as if its message were lost).
            state = await runtime.store.load("global:Board", Board)
            state.__dict__["count"] += 10
            hidden = state.count
            await runtime.store.save("global:Board", state, None)
            await client.post("/Board/bump", headers=HEADERS, content="{}")
            sse = await stream.next()
            assert sse.signals["Board"]["count"] == hidden + 1
            assert "id" in sse.signals["Board"]  # the whole public state, not a diff


async def test_forged_and_expired_tokens_are_refused(server: tuple[str, Starlette]) -> None:
    base, _ = server
    async with httpx.AsyncClient(base_url=base) as client:
        url = await open_page(client)
        forged = url[:-3] + ("abc" if not url.endswith("abc") else "xyz")
        assert (await client.get(forged)).status_code == 403
        assert (await client.get("/_faststate/live")).status_code == 403
        signer = URLSafeTimedSerializer(SECRET, salt="faststate.live")
        old = signer.dumps({"s": None, "k": [["global:Board", "Board", "Board"]], "v": [0]})
        # Re-sign the same payload as if it were issued 15 days ago.
        real_time = time.time
        try:
            time.time = lambda: real_time() - 15 * 24 * 3600  # type: ignore[assignment]
            old = signer.dumps({"s": None, "k": [["global:Board", "Board", "Board"]], "v": [0]})
        finally:
            time.time = real_time  # type: ignore[assignment]
        assert (await client.get(f"/_faststate/live?t={old}")).status_code == 403
        other_key = URLSafeTimedSerializer("not-the-key", salt="faststate.live").dumps(
            {"s": None, "k": [["global:Board", "Board", "Board"]], "v": [0]}
        )
        assert (await client.get(f"/_faststate/live?t={other_key}")).status_code == 403


async def test_token_of_another_session_is_refused(server: tuple[str, Starlette]) -> None:
    base, _ = server
    async with httpx.AsyncClient(base_url=base) as alice, httpx.AsyncClient(base_url=base) as eve:
        alice_url = await open_page(alice, "note,panel")
        await open_page(eve, "note")  # eve has a session of her own
        assert (await eve.get(alice_url)).status_code == 403
        async with httpx.AsyncClient(base_url=base) as nobody:
            assert (await nobody.get(alice_url)).status_code == 403


async def test_authorize_and_user_are_checked_again_on_connect(
    server: tuple[str, Starlette],
) -> None:
    base, _ = server
    async with httpx.AsyncClient(base_url=base) as client:
        response = await client.get("/page?parts=profile", headers={"x-user": "ada"})
        url = response.json()["url"]
        assert (await client.get(url, headers={"x-user": "bob"})).status_code == 403
        assert (await client.get(url)).status_code == 403
        signer = URLSafeTimedSerializer(SECRET, salt="faststate.live")
        secret_doc = signer.dumps(
            {"s": None, "k": [["record:Doc:secret", "Doc", "Doc_secret"]], "v": [0]}
        )
        assert (await client.get(f"/_faststate/live?t={secret_doc}")).status_code == 403
        unknown = signer.dumps({"s": None, "k": [["global:Nope", "Nope", "Nope"]], "v": [0]})
        assert (await client.get(f"/_faststate/live?t={unknown}")).status_code == 403


async def test_streams_per_session_are_capped() -> None:
    app = make_app(max_streams_per_session=2)
    with run_server(app) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            url = await open_page(client, "note")
            headers = {"Datastar-Request": "true"}
            async with (
                client.stream("GET", url, headers=headers),
                client.stream("GET", url, headers=headers),
            ):
                await asyncio.sleep(0.2)
                assert (await client.get(url)).status_code == 429
            await asyncio.sleep(0.2)
            async with client.stream("GET", url, headers=headers) as again:
                assert again.status_code == 200


async def test_patches_arrive_one_by_one_through_gzip_middleware() -> None:
    app = make_app(gzip=True)
    with run_server(app) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            url = await open_page(client)
            async with client.stream(
                "GET", url, headers={"Datastar-Request": "true", "Accept-Encoding": "gzip"}
            ) as response:
                assert "content-encoding" not in response.headers
                stream = Stream(response)
                for expected in range(1, 4):
                    await client.post("/Board/bump", headers=HEADERS, content="{}")
                    sse = await stream.next(3)
                    assert sse.signals["Board"]["count"] == expected


async def test_heartbeat_comments_keep_idle_streams_alive() -> None:
    app = make_app(heartbeat=0.1)
    with run_server(app) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            url = await open_page(client)
            async with client.stream("GET", url, headers={"Datastar-Request": "true"}) as r:
                received = ""
                async with asyncio.timeout(3):
                    async for chunk in r.aiter_text():
                        received += chunk
                        if received.count(": heartbeat") >= 2:
                            break
                assert received.count(": heartbeat") >= 2


async def test_stream_ends_and_unsubscribes_when_client_leaves(
    server: tuple[str, Starlette],
) -> None:
    base, app = server
    runtime: Runtime = app.state.faststate_registry.runtime
    async with httpx.AsyncClient(base_url=base) as client:
        url = await open_page(client)
        async with client.stream("GET", url, headers={"Datastar-Request": "true"}):
            await asyncio.sleep(0.2)
            assert len(runtime.streams) >= 1
        for _ in range(100):  # the server notices the disconnect by itself
            if not runtime.streams:
                break
            await asyncio.sleep(0.05)
        assert not runtime.streams
        assert runtime.broker.subscriber_count() == 0


# Whole servers in subprocesses: shutdown with open streams, workers through Redis.


def _start(module: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return start_example(module, port, env)


def _stream_url(page: str) -> str:
    match = re.search(r"/_faststate/live\?t=[^&\"'\\]+", page.replace("&quot;", '"'))
    assert match, page[:400]
    return match.group(0)


async def test_sigterm_with_open_streams_exits_promptly() -> None:
    port = free_port()
    process = _start("ticker", port, {"FASTSTATE_SECRET_KEY": SECRET})
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            url = _stream_url((await client.get("/")).text)
            async with (
                client.stream("GET", url, headers={"Datastar-Request": "true"}) as r,
                client.stream("GET", url, headers={"Datastar-Request": "true"}),
            ):
                stream = Stream(r)
                tick = await stream.next()  # the ticker's background mutate reaches the page
                assert "Ticker" in tick.signals
                started = time.monotonic()
                process.send_signal(signal.SIGTERM)
                await asyncio.to_thread(process.wait, 10)
                assert time.monotonic() - started < 5
                # uvicorn re-raises the signal after its graceful shutdown
                assert process.returncode in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_stream_on_one_worker_sees_a_change_made_on_another(
    redis_url: str,
) -> None:
    import redis

    redis.Redis.from_url(redis_url).delete("faststate:state:{global:Poll}")
    env = {"FASTSTATE_SECRET_KEY": SECRET, "FASTSTATE_REDIS_URL": redis_url}
    port_a, port_b = free_port(), free_port()
    worker_a = _start("global_board", port_a, env)
    worker_b = _start("global_board", port_b, env)
    try:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port_a}") as a,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port_b}") as b,
        ):
            url = _stream_url((await a.get("/")).text)
            async with a.stream("GET", url, headers={"Datastar-Request": "true"}) as response:
                stream = Stream(response)
                await stream.nothing_within(0.3)
                vote = await b.post("/Poll/vote?choice=water", headers=HEADERS, content="{}")
                assert vote.status_code == 200
                sse = await stream.next(5)
                assert sse.signals["Poll"]["votes"]["water"] == 1
                assert sse.signals["Poll"]["total"] == 1
    finally:
        for worker in (worker_a, worker_b):
            worker.terminate()
            worker.wait(10)
        redis.Redis.from_url(redis_url).delete("faststate:state:{global:Poll}")


def test_change_json_round_trip() -> None:
    from faststate._protocol import ElementPatch

    change = Change("k", 3, {"a": {"b": None}}, (ElementPatch("<p>x</p>", "#p", "inner"),), True)
    assert Change.from_json(change.to_json()) == change
    assert json.loads(change.to_json())["k"] == "k"
