"""Event endpoints through a real ASGI app: binding, responses, atomicity."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fasthtml.common import Li, Ul
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import PrivateAttr, TypeAdapter, ValidationError, computed_field
from sqlmodel import Field
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from faststate import FastStateMiddleware, ReactiveState, event, redirect, register_state, use_state
from faststate._errors import FAILED_MESSAGE
from faststate._protocol import get_protocol
from faststate.testing import DATASTAR_HEADERS, afire, fire

from .apps import state_app

FAILED_SIGNAL = json.dumps({"": FAILED_MESSAGE}, separators=(",", ":"))


class Board(ReactiveState):
    count: int = 0
    title: str = ""
    items: list[str] = Field(default_factory=list)
    secret_note: str = Field(default="server-only-note", exclude=True)
    _api_token: str = PrivateAttr(default="private-api-token")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def size(self) -> int:
        return len(self.items)

    @event
    def increment(self, amount: int = 1) -> None:
        self.count += amount

    @event
    async def add(self, title: str, times: int = 1) -> None:
        await asyncio.sleep(0)
        self.items.extend([title] * times)

    @event
    def set_many(self, tags: list[int], flag: bool = False) -> None:
        self.items = [f"{t}:{flag}" for t in tags]

    @event
    def whoami(self, request: Request) -> Response:
        return JSONResponse({"path": request.url.path})

    @event
    def explode(self, amount: int = 1) -> None:
        self.count += amount
        self.items.append("half-done")
        self._api_token = "leaked?"
        raise RuntimeError("boom")

    @event
    def forbidden(self) -> None:
        self.count += 100
        raise HTTPException(409, "conflict")

    @event(selector="#items", mode="inner")
    def render(self, title: str) -> Any:
        self.items.append(title)
        return tuple(Li(item) for item in self.items)

    @event
    def replace_list(self) -> Any:
        return Ul(*(Li(i) for i in self.items), id="items")

    @event
    def progress(self, steps: int = 3) -> Iterator[Any]:
        for step in range(1, steps + 1):
            self.count = step
            yield None
        yield Ul(Li("done"), id="status")

    @event
    async def aprogress(self, steps: int = 3) -> AsyncIterator[Any]:
        for _ in range(steps):
            self.count += 1
            await asyncio.sleep(0)
            yield None

    @event
    def fail_midway(self) -> Iterator[None]:
        self.count = 50
        yield None
        raise ValueError("second step fails")

    @event
    def fail_at_once(self) -> Iterator[None]:
        self.count = 60
        raise ValueError("the first step fails")
        yield None

    @event
    def refuse_at_once(self) -> Iterator[None]:
        self.count = 70
        raise HTTPException(409, "not now")
        yield None

    @event
    def quiet(self) -> Iterator[None]:
        yield None

    @event
    def finish(self, to: str = "/done") -> Any:
        self.title = "finished"
        return Ul(Li("saved"), id="status"), redirect(to)

    @event
    def leave(self) -> Response:
        self.title = "left"
        return RedirectResponse("/elsewhere?from=board", status_code=303)

    def not_an_event(self) -> None:
        self.count = -1

    def _private_helper(self) -> None:
        self.count = -2


def make_app() -> Starlette:
    async def page(request: Request) -> PlainTextResponse:
        board = use_state(request, Board)
        return PlainTextResponse(f"{board.count}|{board.items}|{board.title}")

    return state_app({Board: {}}, routes=[Route("/", page)])


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(make_app()) as test_client:
        test_client.get("/")
        yield test_client


def page_text(client: TestClient) -> str:
    return client.get("/").text


def test_event_patch_contains_only_changed_signals(client: TestClient) -> None:
    result = fire(client, "/Board/increment", amount=2)
    assert result.status_code == 200
    assert result.headers["content-type"] == "text/event-stream"
    assert result.headers["cache-control"] == "no-cache"
    assert result.headers["x-accel-buffering"] == "no"
    assert result.signals == {"Board": {"count": 2}}


def test_default_parameter_used_when_absent(client: TestClient) -> None:
    assert fire(client, "/Board/increment").signals == {"Board": {"count": 1}}


def test_parameters_come_from_signals_body(client: TestClient) -> None:
    result = fire(client, "/Board/add", signals={"title": "milk", "times": "2"})
    assert result.signals == {"Board": {"items": ["milk", "milk"], "size": 2}}


def test_query_wins_over_body(client: TestClient) -> None:
    result = fire(client, "/Board/increment?amount=5", signals={"amount": 1})
    assert result.signals == {"Board": {"count": 5}}


def test_state_namespace_in_body_is_not_trusted(client: TestClient) -> None:
    fire(client, "/Board/increment", signals={"Board": {"count": 1000}})
    assert page_text(client).startswith("1|")


def test_repeated_query_values_fill_a_list_parameter(client: TestClient) -> None:
    result = fire(client, "/Board/set_many?tags=1&tags=2&flag=true")
    assert result.signals == {"Board": {"items": ["1:True", "2:True"], "size": 2}}


def test_invalid_and_missing_parameters_show_on_the_page_and_change_nothing(
    client: TestClient,
) -> None:
    result = fire(client, "/Board/increment?amount=lots")
    assert result.status_code == 200  # the Datastar client applies only 200 answers
    assert list(result.errors) == ["amount"]
    assert "integer" in result.errors["amount"]
    result = fire(client, "/Board/add", signals={"times": "x"})
    assert result.errors == {
        "title": "Field required",
        "times": "Input should be a valid integer, unable to parse string as an integer",
    }
    assert list(result.signals) == ["Board"]  # nothing but the errors signal
    assert list(result.signals["Board"]) == ["_errors"]
    assert page_text(client) == "0|[]|"


def test_duplicated_scalar_parameter_is_refused(client: TestClient) -> None:
    result = fire(client, "/Board/increment?amount=1&amount=2")
    assert list(result.errors) == ["amount"]
    assert page_text(client).startswith("0|")


def test_request_parameter_and_response_passthrough(client: TestClient) -> None:
    result = fire(client, "/Board/whoami")
    assert result.status_code == 200
    assert result.json() == {"path": "/Board/whoami"}


def test_exception_rolls_back_and_shows_a_generic_message_without_details(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    fire(client, "/Board/increment", amount=3)
    result = fire(client, "/Board/explode", amount=10)
    assert result.errors == {"": FAILED_MESSAGE}
    assert result.signals == {"Board": {"_errors": FAILED_SIGNAL}}
    assert "boom" not in result.text
    assert "boom" in caplog.text  # details go to the server log only
    assert page_text(client) == "3|[]|"
    assert fire(client, "/Board/increment").signals == {"Board": {"count": 4}}


def test_http_exception_from_event_keeps_status_and_rolls_back(client: TestClient) -> None:
    result = fire(client, "/Board/forbidden")
    assert result.status_code == 409
    assert page_text(client).startswith("0|")


def test_fragments_become_patch_elements_then_signals(client: TestClient) -> None:
    result = fire(client, "/Board/render", title="a")
    types = [e.type for e in result.events]
    assert types == ["datastar-patch-elements", "datastar-patch-signals"]
    fragment = result.elements[0]
    assert fragment.value("selector") == "#items"
    assert fragment.value("mode") == "inner"
    assert fragment.html == "<li>a</li>"
    assert result.signals == {"Board": {"items": ["a"], "size": 1}}


def test_single_element_return_uses_default_outer_mode(client: TestClient) -> None:
    fire(client, "/Board/add", title="x")
    result = fire(client, "/Board/replace_list")
    assert len(result.elements) == 1
    assert result.elements[0].value("mode") is None  # outer is the default, not written
    assert result.elements[0].html == '<ul id="items"><li>x</li></ul>'
    assert result.signals == {}


def test_sync_generator_streams_each_step(client: TestClient) -> None:
    result = fire(client, "/Board/progress", steps=3)
    counts = [e.signals["Board"]["count"] for e in result.events if e.signals]
    assert counts == [1, 2, 3]
    assert result.events[-1].type == "datastar-patch-elements"
    assert page_text(client).startswith("3|")


def test_async_generator_streams_each_step(client: TestClient) -> None:
    result = fire(client, "/Board/aprogress", steps=2)
    assert [e.signals for e in result.events] == [{"Board": {"count": 1}}, {"Board": {"count": 2}}]


def test_generator_failure_rolls_back_and_corrects_the_page(client: TestClient) -> None:
    fire(client, "/Board/increment", amount=7)
    result = fire(client, "/Board/fail_midway")
    assert [e.signals for e in result.events] == [
        {"Board": {"count": 50}},
        {"Board": {"count": 7, "_errors": FAILED_SIGNAL}},
    ]
    assert page_text(client).startswith("7|")


def test_generator_failing_before_its_first_step_shows_it_and_keeps_http_errors(
    client: TestClient,
) -> None:
    fire(client, "/Board/increment", amount=3)
    result = fire(client, "/Board/fail_at_once")
    assert result.errors == {"": FAILED_MESSAGE}
    assert result.signals == {"Board": {"_errors": FAILED_SIGNAL}}
    # An HTTPException keeps its status: nothing was sent yet, so it still can.
    assert fire(client, "/Board/refuse_at_once").status_code == 409
    assert page_text(client).startswith("3|")


def test_redirect_comes_after_the_saved_changes(client: TestClient) -> None:
    result = fire(client, "/Board/finish")
    assert result.status_code == 200
    assert result.redirect == "/done"
    kinds = [e.type for e in result.events]
    # elements, then the signal patch, then the navigation (itself an elements event)
    assert kinds == ["datastar-patch-elements", "datastar-patch-signals", "datastar-patch-elements"]
    assert result.signals == {"Board": {"title": "finished"}}
    assert page_text(client).endswith("|finished")


def test_a_redirect_response_navigates_instead_of_being_merged(client: TestClient) -> None:
    result = fire(client, "/Board/leave")
    assert result.status_code == 200
    assert result.redirect == "/elsewhere?from=board"
    assert page_text(client).endswith("|left")


def test_redirect_escapes_the_url_and_refuses_scripts() -> None:
    with pytest.raises(ValueError, match="http"):
        redirect("javascript:alert(1)")
    for protocol in ("v1", "beta"):
        text = get_protocol(protocol).redirect('/x?q="</script><script>alert(1)</script>')
        assert "<script>alert" not in text
        assert text.count("</script>") == (1 if protocol == "v1" else 0)  # only our own


def test_generator_that_changes_nothing_answers_204(client: TestClient) -> None:
    assert fire(client, "/Board/quiet").status_code == 204


def test_private_and_excluded_fields_never_leave_the_server(client: TestClient) -> None:
    texts = [
        fire(client, "/Board/add", title="t").text,
        fire(client, "/Board/render", title="u").text,
        fire(client, "/Board/progress").text,
        fire(client, "/Board/explode").text,
    ]
    for text in texts:
        assert "server-only-note" not in text
        assert "private-api-token" not in text
        assert "secret_note" not in text


@pytest.mark.parametrize(
    "name",
    [
        "not_an_event",
        "_private_helper",
        "model_dump",
        "__init__",
        "__class__",
        "model_validate",
        "model_copy",
        "nope",
    ],
)
def test_only_decorated_methods_are_reachable(client: TestClient, name: str) -> None:
    assert fire(client, f"/Board/{name}").status_code == 404
    assert page_text(client).startswith("0|")


def test_unknown_class_is_404(client: TestClient) -> None:
    assert fire(client, "/Nope/increment").status_code == 404


def test_get_on_event_is_405(client: TestClient) -> None:
    assert client.get("/Board/increment", headers=DATASTAR_HEADERS).status_code == 405


def test_event_without_changes_answers_204(client: TestClient) -> None:
    result = fire(client, "/Board/replace_list")
    assert result.status_code == 200  # it returned an element
    result = fire(client, "/Board/increment", amount=0)
    assert result.status_code == 204
    assert result.text == ""


async def test_a_thousand_concurrent_events_on_one_instance() -> None:
    app = make_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as ac:
        await ac.get("/")
        results = await asyncio.gather(*(afire(ac, "/Board/increment") for _ in range(1000)))
        assert all(r.status_code == 200 for r in results)
        seen = sorted(r.signals["Board"]["count"] for r in results)
        assert seen == list(range(1, 1001))
        assert (await ac.get("/")).text.startswith("1000|")


async def test_concurrent_async_events_do_not_interleave() -> None:
    app = make_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as ac:
        await ac.get("/")
        await asyncio.gather(*(afire(ac, "/Board/aprogress", steps=3) for _ in range(50)))
        assert (await ac.get("/")).text.startswith("150|")


async def test_plain_def_runs_on_the_loop_and_thread_true_off_it() -> None:
    import threading

    seen: dict[str, str] = {}

    class Where(ReactiveState):
        count: int = 0

        @event
        def here(self) -> None:
            seen["here"] = threading.current_thread().name
            self.count += 1

        @event(thread=True)
        def elsewhere(self) -> None:
            seen["elsewhere"] = threading.current_thread().name
            self.count += 1

    app = Starlette(routes=[Route("/", lambda r: PlainTextResponse(str(use_state(r, Where))))])
    app.add_middleware(FastStateMiddleware, secret_key="k")
    register_state(app, Where)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as ac:
        await ac.get("/")
        assert (await afire(ac, "/Where/here")).signals == {"Where": {"count": 1}}
        assert (await afire(ac, "/Where/elsewhere")).signals == {"Where": {"count": 2}}
    loop_thread = threading.current_thread().name
    assert seen["here"] == loop_thread
    assert seen["elsewhere"] != loop_thread
    with pytest.raises(ValueError, match="thread=True"):
        event(thread=True)(async_method)


async def async_method(self: Any) -> None: ...


def test_bad_annotation_fails_at_registration() -> None:
    class Broken(ReactiveState):
        @event
        def go(self, value: UndefinedName) -> None:  # type: ignore[name-defined]  # noqa: F821
            pass

    with pytest.raises(NameError):
        register_state(Starlette(), Broken)


def test_event_decorator_rejects_unsafe_signatures() -> None:
    with pytest.raises(TypeError):
        event(lambda self, **kwargs: None)
    with pytest.raises(TypeError):
        event(lambda self, *args: None)
    with pytest.raises(ValueError):
        event(method="get")
    with pytest.raises(ValueError):
        event(mode="sideways")  # type: ignore[arg-type]

    def _hidden(self: Any) -> None: ...

    with pytest.raises(ValueError):
        event(_hidden)


def test_merge_mode_morph_is_alias_of_outer() -> None:
    class Morph(ReactiveState):
        @event(merge_mode="morph")
        def go(self) -> None: ...

    from faststate._events import event_spec

    spec = event_spec(Morph.go)
    assert spec is not None and spec.mode == "outer"


@pytest.mark.parametrize(
    "query",
    [b"amount=1", b"a=1&b=2&a=3", b"a=&b", b"a", b"&&a=1&", b"x=1=2", b"a=%20b&c=+", b"=v"],
)
def test_query_values_are_read_as_the_standard_parser_reads_them(query: bytes) -> None:
    from urllib.parse import parse_qs

    from faststate._events import _query

    request = Request({"type": "http", "query_string": query, "headers": []})
    assert _query(request) == parse_qs(query.decode("latin-1"), keep_blank_values=True)


class Typed(ReactiveState):
    got: str = ""

    @event
    def take(self, amount: int, name: str = "") -> None:
        self.got = f"{amount!r}|{name!r}"


def _typed_app() -> Starlette:
    async def page(request: Request) -> PlainTextResponse:
        return PlainTextResponse(use_state(request, Typed).got)

    app = Starlette(routes=[Route("/", page)])
    app.add_middleware(FastStateMiddleware, secret_key="typed")
    register_state(app, Typed, scope="session")
    return app


_TYPED_APP = _typed_app()


@settings(max_examples=150, deadline=None)
@given(
    text=st.text(max_size=24)
    | st.from_regex(r"\A[-+ ]?[0-9_ ]{1,24}\Z")
    | st.integers().map(str)
    | st.sampled_from(["007", "²", "١٢", " 7 ", "1_000", "9" * 30, "-0", "+5", ""])
)
def test_plain_int_and_str_parameters_bind_as_pydantic_would(text: str) -> None:
    """A plain ``int`` or ``str`` parameter takes what pydantic would, and refuses
    what it would refuse, however faststate binds it."""
    try:
        expected: Any = TypeAdapter(int).validate_python(text)
    except ValidationError:
        expected = None
    for how in ("signals", "query"):
        with TestClient(_TYPED_APP) as client:  # a session, and an instance, of its own
            if how == "signals":
                answer = fire(client, "/Typed/take", signals={"amount": text, "name": text})
            else:
                answer = fire(client, "/Typed/take", amount=text, name=text)
            assert answer.status_code == 200
            if expected is None:
                assert set(answer.errors) == {"amount"}
                assert client.get("/").text == ""
            else:
                assert answer.errors == {}
                assert client.get("/").text == f"{expected!r}|{text!r}"
