"""Stream fields: keyed element patches instead of a list signal.

The stream itself (order, keys, limit, undo), its stored form, the event
path under both dialects (append, prepend, update, delete, reset, limit,
rollback, generator steps, several instances), and live pages (each
instance's change carries its stream patches; a resync re-renders the
container), in process and over a real server.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fasthtml.common import Li, Span, Ul
from pydantic import BaseModel, PrivateAttr
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from faststate import (
    Invalid,
    ReactiveState,
    StateScope,
    Stream,
    event,
    live,
    mutate,
    signals,
    stream,
    stream_view,
    use_state,
)
from faststate._state import ReadOnlyState
from faststate._stores.codec import decode, encode
from faststate.testing import SSEEvent, fire

from .apps import state_app
from .live import HEADERS
from .live import Stream as Reader
from .support import run_server


class Message(BaseModel):
    id: int
    text: str


def render_message(message: Message) -> Any:
    return Li(message.text, cls="message")


class Room(ReactiveState):
    count: int = 0
    messages: Stream[Message] = stream(render_message, key="id", limit=3)
    _next: int = PrivateAttr(default=0)

    def _message(self, text: str) -> Message:
        self._next += 1
        return Message(id=self._next, text=text)

    @event
    def send(self, text: str) -> None:
        self.messages.append(self._message(text))
        self.count += 1

    @event
    def pin(self, text: str) -> None:
        self.messages.prepend(self._message(text))

    @event
    def edit(self, id: int, text: str) -> None:
        self.messages.update(Message(id=id, text=text))

    @event
    def remove(self, id: int) -> None:
        self.messages.delete(id)

    @event
    def clear(self, keep: str = "") -> None:
        self.messages.reset([self._message(keep)] if keep else [])

    @event
    def refused(self, text: str) -> None:
        self.messages.append(self._message(text))
        self.count += 1
        raise Invalid(text="not now")

    @event
    def broken(self, text: str) -> None:
        self.messages.append(self._message(text))
        raise RuntimeError("boom")

    @event
    def several(self, first: str, second: str) -> Any:
        self.messages.append(self._message(first))
        yield
        self.messages.append(self._message(second))
        if second == "fail":
            raise RuntimeError("second step failed")


class Lobby(ReactiveState):
    notes: Stream[Message] = stream(lambda m: Span(m.text), key=lambda m: f"n:{m.id}", limit=5)

    @event
    def both(self, text: str, room: Room) -> None:
        self.notes.append(Message(id=len(self.notes) + 1, text=text))
        room.messages.append(room._message(text))


def page_app(**options: Any) -> Any:
    async def page(request: Request) -> HTMLResponse:
        room = use_state(request, Room)
        return HTMLResponse(str(stream_view(room, "messages", Ul, cls="chat").__html__()))

    async def live_page(request: Request) -> JSONResponse:
        use_state(request, Room)
        attributes = live(request)
        expression = next(v for k, v in attributes.items() if k != "data-signals")
        url = re.search(r'"(/_faststate/live\?t=[^"]+)"', expression)
        assert url is not None
        return JSONResponse({"url": url.group(1)})

    async def tamper(request: Request) -> HTMLResponse:
        use_state(request, Room).messages.append(Message(id=99, text="from a page"))
        return HTMLResponse("written")

    async def task(request: Request) -> HTMLResponse:
        """A background job's change (``mutate`` on the app, not a request's event)."""
        async with mutate(request.app, Room) as room:
            room.messages.append(Message(id=1000, text="from a task"))
        return HTMLResponse("done")

    routes = [Route("/", page), Route("/live", live_page), Route("/tamper", tamper)]
    return state_app(
        {Room: StateScope.GLOBAL, Lobby: StateScope.GLOBAL},
        routes=[*routes, Route("/task", task, methods=["POST"])],
        **options,
    )


@pytest.fixture(params=["v1", "beta"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(protocol: str) -> Iterator[TestClient]:
    with TestClient(page_app(protocol=protocol)) as test_client:
        yield test_client


def patches(result: Any) -> list[tuple[str, str | None, str]]:
    """(mode, selector, html) of each element event, in either dialect."""
    found = []
    for sse in result.events:
        if sse.type == "datastar-remove-fragments":
            found.append(("remove", sse.value("selector"), ""))
        elif sse.type in ("datastar-patch-elements", "datastar-merge-fragments"):
            mode = sse.value("mode") or sse.value("mergeMode") or "outer"
            found.append(("outer" if mode == "morph" else mode, sse.value("selector"), sse.html))
    return found


def texts(client: TestClient) -> list[str]:
    item = r'<li class="message" id="Room-messages-\d+">([^<]*)</li>'
    return re.findall(item, client.get("/").text)


# --------------------------------------------------------------------------- #
# the stream alone
# --------------------------------------------------------------------------- #


def test_a_stream_keeps_order_keys_and_its_limit() -> None:
    room = Room()  # made by hand: no event needed, nothing recorded
    for text in "abc":
        room.send(text)
    assert [m.text for m in room.messages] == ["a", "b", "c"]
    room.send("d")
    assert [m.text for m in room.messages] == ["b", "c", "d"]  # the first one dropped
    room.pin("z")
    assert [m.text for m in room.messages] == ["z", "b", "c"]  # the last one dropped
    assert 2 in room.messages and "2" in room.messages and 1 not in room.messages
    room.edit(2, "B")
    assert room.messages.get(2) == Message(id=2, text="B")
    assert room.messages.delete(2) is True and room.messages.delete(2) is False
    with pytest.raises(KeyError):
        room.edit(2, "gone")
    with pytest.raises(ValueError, match="already has"):
        room.messages.append(Message(id=3, text="twice"))
    room.messages.reset([Message(id=n, text=str(n)) for n in range(10)])
    assert [m.id for m in room.messages] == [7, 8, 9] and room.messages.limit == 3


def test_a_stream_is_no_signal_and_is_stored_as_its_last_items() -> None:
    room = Room()
    for n in range(5):
        room.send(f"m{n}")
    assert "messages" not in room.model_dump() and "messages" not in signals(room)["data-signals"]
    stored = json.loads(encode(room))["fields"]["messages"]
    assert [m["text"] for m in stored] == ["m2", "m3", "m4"]
    loaded = decode(Room, encode(room))
    assert loaded is not None
    loaded.send("m5")  # the class's config came back with it: key, limit, render
    assert [m.text for m in loaded.messages] == ["m3", "m4", "m5"]
    assert "Room-messages-6" in str(stream_view(loaded, "messages", Ul).__html__())
    # Stored under a larger limit (an older deploy): cut to today's.
    text = json.dumps({"fields": {"messages": [{"id": n, "text": "x"} for n in range(9)]}})
    again = decode(Room, text)
    assert again is not None and [m.id for m in again.messages] == [6, 7, 8]


def test_item_ids_are_escaped_injectively() -> None:
    lobby = Lobby()
    lobby.notes.append(Message(id=1, text="one"))
    html = str(stream_view(lobby, "notes", Ul).__html__())
    assert 'id="Lobby-notes"' in html and 'id="Lobby-notes-n_3a_1"' in html


# --------------------------------------------------------------------------- #
# events: the caller's answer
# --------------------------------------------------------------------------- #


def test_each_operation_is_one_keyed_patch(client: TestClient, protocol: str) -> None:
    client.get("/")
    assert texts(client) == []  # the GLOBAL room is new with each app
    sent = fire(client, "/Room/send", text="hello")
    assert sent.signals == {"Room": {"count": 1}}  # the items are no signal
    ((mode, selector, html),) = patches(sent)
    assert (mode, selector) == ("append", "#Room-messages")
    assert re.fullmatch(r'<li class="message" id="Room-messages-(\d+)">hello</li>', html)
    first = int(re.findall(r"Room-messages-(\d+)", html)[0])

    assert patches(fire(client, "/Room/pin", text="top"))[0][:2] == ("prepend", "#Room-messages")
    edited = patches(fire(client, "/Room/edit", id=first, text="HELLO"))
    item = f'<li class="message" id="Room-messages-{first}">HELLO</li>'
    assert edited == [("outer", f"#Room-messages-{first}", item)]
    assert texts(client) == ["top", "HELLO"]
    removed = patches(fire(client, "/Room/remove", id=first))
    assert removed == [("remove", f"#Room-messages-{first}", "")]
    assert fire(client, "/Room/remove", id=first).status_code == 204  # already gone: nothing

    fire(client, "/Room/send", text="a")
    fire(client, "/Room/send", text="b")
    beyond = patches(fire(client, "/Room/send", text="c"))  # a fourth: the oldest goes
    assert [p[0] for p in beyond] == ["append", "remove"]
    assert texts(client) == ["a", "b", "c"]

    reset = patches(fire(client, "/Room/clear", keep="fresh"))
    if protocol == "v1":
        assert [(m, s) for m, s, _ in reset] == [("inner", "#Room-messages")]
    else:  # beta's inner keeps one element only: empty the container, then append
        assert [(m, s) for m, s, _ in reset] == [
            ("remove", "#Room-messages > *"),
            ("append", "#Room-messages"),
        ]
    assert "fresh" in reset[-1][2]
    assert texts(client) == ["fresh"]
    emptied = patches(fire(client, "/Room/clear"))
    assert [m for m, _, h in emptied] == (["inner"] if protocol == "v1" else ["remove"])


def test_refused_and_failed_events_send_and_keep_nothing(client: TestClient) -> None:
    client.get("/")
    fire(client, "/Room/clear")
    fire(client, "/Room/send", text="kept")
    refused = fire(client, "/Room/refused", text="no")
    assert refused.errors == {"text": "not now"} and patches(refused) == []
    failed = fire(client, "/Room/broken", text="no")
    assert failed.errors and patches(failed) == []
    assert texts(client) == ["kept"]
    assert "Room" not in refused.signals or "count" not in refused.signals["Room"]


def test_outside_an_event_a_resolved_stream_is_read_only(client: TestClient) -> None:
    with pytest.raises(ReadOnlyState, match=r"Room\.messages cannot be changed outside an event"):
        client.get("/tamper")


def test_generator_steps_flush_stream_patches_and_a_failure_restores_the_container(
    client: TestClient,
) -> None:
    client.get("/")
    fire(client, "/Room/clear")
    done = fire(client, "/Room/several", first="one", second="two")
    assert [p[0] for p in patches(done)] == ["append", "append"]
    assert texts(client) == ["one", "two"]
    failed = fire(client, "/Room/several", first="three", second="fail")
    shown, *_, restored = patches(failed)
    assert shown[0] == "append" and "three" in shown[2]  # the first step was shown...
    assert re.findall(r">(\w+)</li>", restored[2]) == ["one", "two"]  # ...then taken back
    assert texts(client) == ["one", "two"]


def test_one_event_patches_the_streams_of_each_instance(client: TestClient) -> None:
    client.get("/")
    result = fire(client, "/Lobby/both", text="hi")
    assert sorted(s for _, s, _ in patches(result)) == ["#Lobby-notes", "#Room-messages"]


# --------------------------------------------------------------------------- #
# live pages
# --------------------------------------------------------------------------- #


async def _first_elements(reader: Reader) -> list[SSEEvent]:
    """The element events of what arrives next (until the stream is quiet)."""
    found = [await reader.next()]
    while True:
        try:
            found.append(await reader.next(0.3))
        except TimeoutError:
            return [sse for sse in found if "elements" in sse.data or "fragments" in sse.data]


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_live_pages_get_each_instances_stream_patches_once(
    store: str, request: pytest.FixtureRequest
) -> None:
    options: dict[str, Any] = {}
    if store == "redis":
        from faststate import RedisStore

        options["store"] = RedisStore(
            request.getfixturevalue("redis_url"), prefix=request.getfixturevalue("redis_prefix")
        )
    with run_server(page_app(**options)) as base:
        async with (
            httpx.AsyncClient(base_url=base) as watcher,
            httpx.AsyncClient(base_url=base) as sender,
        ):
            url = (await watcher.get("/live")).json()["url"]
            async with watcher.stream("GET", url, headers={"Datastar-Request": "true"}) as r:
                reader = Reader(r)
                await reader.nothing_within(0.3)
                await sender.get("/")
                await sender.post("/Room/send?text=pushed", headers=HEADERS, content="{}")
                (append,) = await _first_elements(reader)
                assert append.value("selector") == "#Room-messages" and "pushed" in append.html
                # Two instances in one event: the room's change carries the room's patch only
                # (this page does not show the lobby).
                await sender.post("/Lobby/both?text=both", headers=HEADERS, content="{}")
                (again,) = await _first_elements(reader)
                assert again.value("selector") == "#Room-messages" and "both" in again.html
                await sender.post("/task")
                (mutated,) = await _first_elements(reader)
                assert 'id="Room-messages-1000"' in mutated.html
                assert await reader.nothing_within(0.3)


async def test_a_resync_renders_the_container_again() -> None:
    with run_server(page_app()) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            url = (await client.get("/live")).json()["url"]
            await client.post("/Room/clear?keep=first", headers=HEADERS, content="{}")
            await client.post("/Room/send?text=second", headers=HEADERS, content="{}")
            # A reconnect from before anything the log still has: the whole state.
            headers = {"Datastar-Request": "true", "Last-Event-ID": "0"}
            async with client.stream("GET", url, headers=headers) as response:
                reader = Reader(response)
                (inner,) = await asyncio.wait_for(_first_elements(reader), 5)
                assert inner.value("mode") == "inner"
                assert inner.value("selector") == "#Room-messages"
                assert re.findall(r">(\w+)</li>", inner.html) == ["first", "second"]
