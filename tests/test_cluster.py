"""RedisStore and RedisBroker on a real three-node Redis Cluster (``redis_cluster``).

Every key of an instance shares one hash slot, instances spread over the
nodes, events and live pushes work across workers (sharded pub/sub), and four
uvicorn workers hammering the cluster lose no update.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis.cluster
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from faststate import ReactiveState, RedisStore, StateScope, event, live, use_state
from faststate._live.broker import Change
from faststate._redis import RedisKeys
from faststate._state import stored_version

from .apps import state_app
from .live import HEADERS, Stream
from .redis_cluster import LocalCluster
from .support import run_server
from .test_workers import _hammer, page_signals, uvicorn


class Total(ReactiveState):
    count: int = 0


class Tile(ReactiveState):
    count: int = 0

    @event
    def add(self, amount: int = 1) -> None:
        self.count += amount

    @event
    def add_counted(self, total: Total) -> None:
        self.count += 1
        total.count += 1


def tile_app(cluster: LocalCluster, prefix: str) -> Any:
    async def page(request: Request) -> JSONResponse:
        use_state(request, Tile, key=request.path_params["tile"])
        attributes = live(request)
        stream = next(v for k, v in attributes.items() if k != "data-signals")
        url = re.search(r'"(/_faststate/live\?t=[^"]+)"', stream)
        assert url is not None
        return JSONResponse({"url": url.group(1)})

    async def total(request: Request) -> JSONResponse:
        return JSONResponse(use_state(request, Total).count)

    store = RedisStore(cluster.url, prefix=prefix)
    return state_app(
        {Tile: StateScope.RECORD, Total: StateScope.GLOBAL},
        routes=[Route("/tiles/{tile}", page), Route("/total", total)],
        store=store,
    )


def spread_tiles(cluster: LocalCluster, prefix: str) -> list[str]:
    """Tile ids whose instances land on every node of the cluster."""
    keys, ids, nodes = RedisKeys(prefix), [], set()
    for number in range(100):
        tile = f"t{number}"
        node = cluster.node_of(keys.state(f"record:Tile:{tile}"))
        if node not in nodes or len(ids) < 6:
            ids.append(tile)
            nodes.add(node)
        if len(nodes) == len(cluster.ports) and len(ids) >= 6:
            return ids
    raise AssertionError("the tiles did not spread over the nodes")


def test_every_key_of_an_instance_shares_one_slot(redis_cluster: LocalCluster) -> None:
    keys = RedisKeys("faststate:")
    client = redis.cluster.RedisCluster.from_url(redis_cluster.url.replace("+cluster", ""))
    try:
        nodes = set()
        for key in ("global:Poll", "session:Counter:abc", "record:Doc:{odd}", "record:Doc:}x{"):
            names = [
                keys.state(key),
                keys.lock(key),
                keys.log(key),
                keys.watch(key),
                keys.channel(key),
                keys.viewers(key),
            ]
            assert len({client.keyslot(name) for name in names}) == 1, names
            nodes.add(redis_cluster.node_of(keys.state(key)))
        assert len(nodes) > 1  # instances spread over the nodes
    finally:
        client.close()


async def test_events_and_live_pushes_work_across_workers_on_every_node(
    redis_cluster: LocalCluster,
) -> None:
    prefix = "cluster-live:"
    tiles = spread_tiles(redis_cluster, prefix)
    with (
        run_server(tile_app(redis_cluster, prefix)) as first,
        run_server(tile_app(redis_cluster, prefix)) as second,
    ):
        async with (
            httpx.AsyncClient(base_url=first) as a,
            httpx.AsyncClient(base_url=second) as b,
        ):
            streams: dict[str, Stream] = {}
            responses = []
            for tile in tiles:
                url = (await b.get(f"/tiles/{tile}")).json()["url"]
                response = b.stream("GET", url, headers={"Datastar-Request": "true"})
                opened = await response.__aenter__()
                assert opened.status_code == 200
                responses.append(response)
                streams[tile] = Stream(opened)
            try:
                for stream in streams.values():
                    assert await stream.nothing_within(0.05)
                for round_ in (1, 2):
                    for tile in tiles:
                        answer = await a.post(
                            f"/Tile/add?record_id={tile}", headers=HEADERS, content="{}"
                        )
                        assert answer.status_code == 200, answer.text
                        assert f'"count":{round_}' in answer.text
                    for tile, stream in streams.items():
                        pushed = await stream.next()
                        assert pushed.signals == {f"Tile_{tile}": {"count": round_}}
                for stream in streams.values():
                    assert await stream.nothing_within(0.2)  # exactly once
            finally:
                for stream in streams.values():
                    stream.reader.cancel()
                for response in responses:
                    await response.__aexit__(None, None, None)


async def test_events_on_several_states_on_several_nodes_lose_nothing(
    redis_cluster: LocalCluster,
) -> None:
    prefix = "cluster-many:"
    tiles = spread_tiles(redis_cluster, prefix)
    keys = RedisKeys(prefix)
    assert redis_cluster.node_of(keys.state("global:Total")) in {
        redis_cluster.node_of(keys.state(f"record:Tile:{tile}")) for tile in tiles
    }
    with (
        run_server(tile_app(redis_cluster, prefix)) as first,
        run_server(tile_app(redis_cluster, prefix)) as second,
    ):
        async with (
            httpx.AsyncClient(base_url=first, timeout=60) as a,
            httpx.AsyncClient(base_url=second, timeout=60) as b,
        ):

            async def post(client: httpx.AsyncClient, tile: str) -> int:
                path = f"/Tile/add_counted?record_id={tile}"
                return (await client.post(path, headers=HEADERS, content="{}")).status_code

            statuses = await asyncio.gather(
                *(post(client, tile) for tile in tiles for client in (a, b) for _ in range(10))
            )
            assert statuses == [200] * len(tiles) * 20
            assert (await a.get("/total")).json() == len(tiles) * 20
    client = redis.cluster.RedisCluster.from_url(redis_cluster.url.replace("+cluster", ""))
    try:
        for tile in tiles:
            stored = client.hget(keys.state(f"record:Tile:{tile}"), "d")
            assert json.loads(stored)["fields"]["count"] == 20  # type: ignore[arg-type]
    finally:
        client.close()


@pytest.fixture
def cluster_env(redis_cluster: LocalCluster) -> Iterator[dict[str, str]]:
    yield {"FASTSTATE_REDIS_URL": redis_cluster.url, "FASTSTATE_SECRET_KEY": "cluster-test"}


def test_four_workers_on_the_cluster_lose_no_update(
    redis_cluster: LocalCluster, cluster_env: dict[str, str]
) -> None:
    sessions, each = 8, 150
    with uvicorn("counter", cluster_env, workers=4) as base:
        cookies = []
        for _ in range(sessions):
            with httpx.Client(base_url=base) as client:
                page_signals(client)
                cookies.append(dict(client.cookies))
        statuses = asyncio.run(
            _hammer([base], sessions * each, sessions, "/CounterState/increment", cookies)
        )
        assert statuses.count(200) == sessions * each, {s: statuses.count(s) for s in set(statuses)}
        nodes = set()
        for cookie in cookies:
            with httpx.Client(base_url=base, cookies=cookie) as client:
                assert page_signals(client)["CounterState"]["count"] == each  # type: ignore[index]
        client = redis.cluster.RedisCluster.from_url(redis_cluster.url.replace("+cluster", ""))
        try:
            for name in client.scan_iter(match="faststate:state:{session:CounterState:*"):
                nodes.add(redis_cluster.node_of(name.decode()))
        finally:
            client.close()
        assert len(nodes) > 1, "the sessions' counters should land on several nodes"


def test_four_workers_share_one_global_poll_on_the_cluster(
    redis_cluster: LocalCluster, cluster_env: dict[str, str]
) -> None:
    client = redis.cluster.RedisCluster.from_url(redis_cluster.url.replace("+cluster", ""))
    client.delete(RedisKeys("faststate:").state("global:Poll"))
    try:
        with uvicorn("global_board", cluster_env, workers=4) as base:
            statuses = asyncio.run(_hammer([base], 1000, 40, "/Poll/vote?choice=tea"))
            assert statuses.count(200) == 1000
            with httpx.Client(base_url=base) as page:
                poll = page_signals(page)["Poll"]
            assert poll["votes"]["tea"] == 1000  # type: ignore[index]
    finally:
        client.delete(RedisKeys("faststate:").state("global:Poll"))
        client.close()


def test_a_cluster_url_is_understood(redis_cluster: LocalCluster) -> None:
    store = RedisStore.from_url(redis_cluster.url)
    assert store.cluster
    assert RedisStore("redis://127.0.0.1:6379/0", cluster=True).cluster
    assert not RedisStore("redis://127.0.0.1:6379/0").cluster
    assert json.dumps(store.keys.state("a")) == '"faststate:state:{a}"'


async def test_pages_follow_an_instance_whose_slot_moves_to_another_node(
    redis_cluster: LocalCluster,
) -> None:
    prefix = "cluster-move:"
    store, other = (RedisStore(redis_cluster.url, prefix=prefix) for _ in range(2))
    pages, publisher = store.default_broker(), other.default_broker()
    key = "record:Tile:moving"
    messages: asyncio.Queue[Any] = asyncio.Queue()
    await pages.subscribe(key, messages.put_nowait)

    async def commit() -> None:
        async with other.lock(key) as lease:
            tile = await other.load_held(key, Tile, lease) or await other.add(key, Tile(), None)
            tile.count += 1
            change = Change(key, stored_version(tile) + 1, {"count": tile.count})
            await other.save_and_publish(key, tile, None, lease, publisher, change)

    async def heard() -> Any:
        async with asyncio.timeout(5):
            return await messages.get()

    try:
        await commit()
        assert (await heard()).patch == {"count": 1}
        source, target = redis_cluster.move_slot_of(store.keys.state(key))
        assert redis_cluster.node_of(store.keys.state(key)) == target != source
        assert await heard() is None  # told it may have missed something: it reloads
        await commit()  # published by the new owner, heard on the new subscription
        assert (await heard()).patch == {"count": 2}
        await asyncio.sleep(0.2)
        assert messages.empty()
    finally:
        for broker in (pages, publisher):
            await broker.aclose()
        for redis_store in (store, other):
            await redis_store.aclose()
