"""Several states in one event: state parameters and ``mutate`` inside an event lock
every instance in one global order, roll back together, save together, and the
answer carries every instance's patch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from pydantic import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from faststate import (
    Invalid,
    LocalBroker,
    MemoryStore,
    ReactiveState,
    StateScope,
    StateStore,
    ause_state,
    event,
    mutate,
    use_state,
)
from faststate._live.broker import Change
from faststate.testing import afire, fire
from tests.apps import state_app


class Inventory(ReactiveState):
    stock: dict[str, int] = Field(default_factory=lambda: {"tea": 2, "cake": 1})


class Cart(ReactiveState):
    items: list[str] = Field(default_factory=list)

    @event
    def buy(self, item: str, stock: Inventory) -> None:
        if stock.stock.get(item, 0) < 1:
            raise Invalid(item=f"{item} is sold out")
        stock.stock[item] -= 1
        self.items.append(item)

    @event
    def buy_then_fail(self, item: str, stock: Inventory) -> None:
        stock.stock[item] -= 1
        self.items.append(item)
        raise RuntimeError("the payment provider is down")

    @event
    async def buy_through_mutate(self, item: str, request: Request) -> None:
        async with mutate(request, Inventory) as stock:
            stock.stock[item] -= 1
        self.items.append(item)

    @event
    async def add_twice(self, item: str, request: Request) -> None:
        self.items.append(item)
        async with mutate(request, Cart) as same:  # its own instance: joins, no deadlock
            assert same is self
            same.items.append(item)

    @event
    async def restock(self, stock: Inventory, request: Request) -> None:
        again = await ause_state(request, Inventory)
        assert again is stock  # the instance the event holds, tracked
        again.stock = {**again.stock, "tea": 10}

    @event
    async def restock_unheld(self, request: Request) -> None:
        stock = await ause_state(request, Inventory)
        stock.stock = {"tea": 10}  # not the event's: read-only, so the event fails


    @event
    def buy_slowly(self, item: str, stock: Inventory, fail: bool = False) -> Iterator[None]:
        stock.stock[item] -= 1
        yield None  # the page sees the stock go down...
        self.items.append(item)
        if fail:
            raise Invalid(item="the courier cancelled")  # ...and come back


class Recording(LocalBroker):
    def __init__(self) -> None:
        super().__init__()
        self.published: list[Change] = []

    def reaches(self, key: str) -> bool:
        return True

    async def publish(self, change: Change) -> None:
        self.published.append(change)


def shop_app(broker: LocalBroker | None = None, store: StateStore | None = None) -> Starlette:
    def page(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "items": use_state(request, Cart).items,
                "stock": use_state(request, Inventory).stock,
            }
        )

    app = state_app(
        {Cart: StateScope.SESSION, Inventory: StateScope.GLOBAL}, broker=broker, store=store
    )
    app.add_route("/", page)
    return app


@pytest.fixture
def broker() -> Recording:
    return Recording()


@pytest.fixture
def client(broker: Recording) -> Iterator[TestClient]:
    with TestClient(shop_app(broker)) as client:
        yield client


def test_the_answer_carries_every_instance_and_both_are_saved(
    client: TestClient, broker: Recording
) -> None:
    result = fire(client, "/Cart/buy", item="tea")
    assert result.signals == {"Cart": {"items": ["tea"]}, "Inventory": {"stock": {"tea": 1}}}
    assert client.get("/").json() == {"items": ["tea"], "stock": {"tea": 1, "cake": 1}}
    # live pages of each instance get its change
    assert {change.key.split(":")[0]: change.patch for change in broker.published} == {
        "session": {"items": ["tea"]},
        "global": {"stock": {"tea": 1}},
    }


def test_a_failure_rolls_back_every_instance(client: TestClient, broker: Recording) -> None:
    fire(client, "/Cart/buy", item="cake")
    broker.published.clear()
    assert fire(client, "/Cart/buy", item="cake").errors == {"item": "cake is sold out"}
    assert fire(client, "/Cart/buy_then_fail", item="tea").errors == {
        "": "Something went wrong, so nothing was changed. Please try again."
    }
    assert client.get("/").json() == {"items": ["cake"], "stock": {"tea": 2, "cake": 0}}
    assert broker.published == []


def test_a_generator_shows_progress_of_each_instance_and_undoes_all(client: TestClient) -> None:
    result = fire(client, "/Cart/buy_slowly", item="tea", fail=True)
    patches = [e.signals for e in result.events]
    assert patches[0] == {"Inventory": {"stock": {"tea": 1}}}
    assert patches[-1] == {
        "Cart": {"_errors": '{"item":"the courier cancelled"}'},
        "Inventory": {"stock": {"tea": 2}},
    }
    assert client.get("/").json() == {"items": [], "stock": {"tea": 2, "cake": 1}}
    result = fire(client, "/Cart/buy_slowly", item="tea")
    assert result.signals == {"Inventory": {"stock": {"tea": 1}}, "Cart": {"items": ["tea"]}}
    assert client.get("/").json() == {"items": ["tea"], "stock": {"tea": 1, "cake": 1}}


def test_mutate_of_another_instance_joins_the_event(client: TestClient) -> None:
    result = fire(client, "/Cart/buy_through_mutate", item="tea")
    assert result.signals == {"Cart": {"items": ["tea"]}, "Inventory": {"stock": {"tea": 1}}}
    assert client.get("/").json()["stock"]["tea"] == 1


def test_mutate_of_the_events_own_instance_joins_it(client: TestClient) -> None:
    result = fire(client, "/Cart/add_twice", item="pie")
    assert result.signals == {"Cart": {"items": ["pie", "pie"]}}


def test_use_state_inside_an_event_gives_the_held_instance(client: TestClient) -> None:
    result = fire(client, "/Cart/restock")
    assert result.signals == {"Inventory": {"stock": {"tea": 10}}}
    assert fire(client, "/Cart/restock_unheld").errors != {}
    assert client.get("/").json()["stock"] == {"tea": 10, "cake": 1}


def test_a_state_parameter_is_authorized_like_use_state() -> None:
    app = state_app(
        {
            Cart: StateScope.SESSION,
            Inventory: {"scope": StateScope.GLOBAL, "authorize": lambda request, key: False},
        }
    )
    with TestClient(app) as client:
        assert fire(client, "/Cart/buy", item="tea").status_code == 403


# --- opposite roles at once: no deadlock, exact counts ----------------------------------


class Left(ReactiveState):
    count: int = 0

    @event
    def pull(self, other: Right) -> None:
        self.count += 1
        other.count += 1

    @event
    async def pull_by_mutate(self, request: Request) -> None:
        self.count += 1
        await asyncio.sleep(0)
        async with mutate(request, Right) as other:  # after this key: waits in order
            other.count += 1


class Right(ReactiveState):
    count: int = 0

    @event
    def pull(self, other: Left) -> None:
        self.count += 1
        other.count += 1

    @event
    async def pull_by_mutate(self, request: Request) -> None:
        self.count += 1
        await asyncio.sleep(0)
        async with mutate(request, Left) as other:  # before this key: starts again
            other.count += 1


@pytest.fixture(params=["memory", "redis"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    if request.param == "redis":
        from faststate import RedisStore

        url = request.getfixturevalue("redis_url")
        store: StateStore = RedisStore(url, prefix=request.getfixturevalue("redis_prefix"))
    else:
        store = MemoryStore()

    def page(request: Request) -> JSONResponse:
        return JSONResponse([use_state(request, Left).count, use_state(request, Right).count])

    app = state_app({Left: StateScope.GLOBAL, Right: StateScope.GLOBAL}, store=store)
    app.add_route("/", page)
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client
    await store.aclose()


@pytest.mark.parametrize("how", ["pull", "pull_by_mutate"])
async def test_opposite_roles_at_once_never_deadlock(
    pair: httpx.AsyncClient, how: str
) -> None:
    events = 200
    async with asyncio.timeout(60):
        results = await asyncio.gather(
            *(afire(pair, f"/{'Left' if i % 2 else 'Right'}/{how}") for i in range(events))
        )
    assert [r.status_code for r in results] == [200] * events
    counts: Any = (await pair.get("/")).json()
    assert counts == [events, events]


async def test_two_workers_on_redis_never_sell_more_than_the_stock(redis_url: str) -> None:
    """examples/shop.py on two uvicorn workers sharing Redis: 60 shoppers at once
    want the same last five pots; exactly five carts get one."""
    import redis

    from .apps import SECRET
    from .support import free_port, start_example

    def clean() -> None:
        client = redis.Redis.from_url(redis_url)
        keys = [*client.scan_iter("faststate:*Product:pot*"), *client.scan_iter("faststate:*Cart*")]
        if keys:
            client.delete(*keys)
        client.close()

    clean()
    env = {"FASTSTATE_SECRET_KEY": SECRET, "FASTSTATE_REDIS_URL": redis_url}
    ports = [free_port(), free_port()]
    workers = [start_example("shop", port, env) for port in ports]
    shoppers = [
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[i % 2]}") for i in range(60)
    ]
    try:
        async with asyncio.timeout(60):
            results = await asyncio.gather(
                *(afire(shopper, "/Cart/add?record_id=pot") for shopper in shoppers)
            )
        sold = [r for r in results if r.errors == {}]
        refused = [r for r in results if r.errors == {"": "Sorry, that one has just sold out."}]
        assert (len(sold), len(refused)) == (5, 55), [r.status_code for r in results]
        # each sale carried both instances' patches
        assert sorted(r.signals["Product_pot"]["stock"] for r in sold) == [0, 1, 2, 3, 4]
        assert all(r.signals["Cart"]["count"] == 1 for r in sold)
        page = (await shoppers[1].get("/products/pot")).text
        assert "&quot;stock&quot;:0" in page or '"stock":0' in page
    finally:
        for shopper in shoppers:
            await shopper.aclose()
        for worker in workers:
            worker.terminate()
            worker.wait(10)
        clean()
