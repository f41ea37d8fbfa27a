"""Uploaded files as event parameters: streamed, limited, checked before the method runs.

Every way a file enters is tried here through a real app: multipart forms
(over the global body cap, oversize, wrong type, too many, malformed,
non-Datastar, cross-site) and Datastar's base64 file signals in both dialects.
A refused upload shows on the page and changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Annotated, Any

import pytest
from fasthtml.common import Beforeware, FastHTML
from pydantic import Field
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount
from starlette.testclient import TestClient

from faststate import (
    FastStateMiddleware,
    ReactiveState,
    StateScope,
    Upload,
    action,
    event,
    register_state,
    use_state,
)
from faststate._protocol import PROTOCOLS
from faststate._uploads import DEFAULT_MAX_SIZE, UploadPolicy, upload_of
from faststate.testing import DATASTAR_HEADERS, fire

from .apps import state_app, with_faststate

MiB = 2**20
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64
AVATAR = "/Gallery/set_avatar"
ALBUM = "/Gallery/add_photos"

#: Every file an event received, to check they are closed afterwards.
SEEN: list[UploadFile] = []


class Gallery(ReactiveState):
    avatar: str = ""  # "<name> <size> <sha256>" of the last accepted avatar
    caption: str = ""
    photos: list[str] = Field(default_factory=list)

    @event
    async def set_avatar(
        self,
        avatar: Annotated[UploadFile, Upload(max_size=3 * MiB, accept=("image/png", "image/webp"))],
        caption: str = "",
    ) -> None:
        SEEN.append(avatar)
        data = await avatar.read()
        self.avatar = f"{avatar.filename} {len(data)} {hashlib.sha256(data).hexdigest()}"
        self.caption = caption

    @event
    def add_photos(
        self,
        photos: Annotated[list[UploadFile], Upload(max_size=MiB, accept="image/*", max_count=3)],
    ) -> None:
        SEEN.extend(photos)
        self.photos = [f"{p.filename}:{p.size}" for p in photos]

    @event
    def maybe(self, doc: UploadFile | None = None) -> None:
        self.caption = "none" if doc is None else f"{doc.filename}"


def app() -> Any:
    starlette = state_app({Gallery: StateScope.GLOBAL})

    def page(request: Request) -> JSONResponse:
        return JSONResponse(use_state(request, Gallery).model_dump(exclude={"id"}))

    starlette.add_route("/", page)
    return starlette


@pytest.fixture
def client() -> Any:
    SEEN.clear()
    with TestClient(app()) as client:
        yield client


def state_of(client: TestClient) -> dict[str, Any]:
    value: dict[str, Any] = client.get("/").json()
    return value


def digest(name: str, data: bytes) -> str:
    return f"{name} {len(data)} {hashlib.sha256(data).hexdigest()}"


def test_upload_over_the_global_body_cap_reaches_the_event(client: TestClient) -> None:
    data = PNG * 160  # ~2.6 MiB: over max_body_size (1 MiB), under the event's 3 MiB
    result = fire(
        client, AVATAR, {"caption": "me"}, uploads={"avatar": ("me.png", data, "image/png")}
    )
    assert result.status_code == 200, result.text
    assert result.errors == {}
    assert state_of(client)["avatar"] == digest("me.png", data)
    assert state_of(client)["caption"] == "me"
    assert SEEN and all(file.file.closed for file in SEEN)  # closed once the event answered


def test_list_parameter_takes_every_file(client: TestClient) -> None:
    files = [(f"{n}.png", PNG, "image/png") for n in range(3)]
    assert fire(client, ALBUM, uploads={"photos": files}).errors == {}
    assert state_of(client)["photos"] == [f"{n}.png:{len(PNG)}" for n in range(3)]


def test_optional_upload_defaults_when_no_file_is_chosen(client: TestClient) -> None:
    # A form's empty file input still sends a part: no name, no bytes.
    assert (
        fire(
            client, "/Gallery/maybe", uploads={"doc": ("", b"", "application/octet-stream")}
        ).errors
        == {}
    )
    assert state_of(client)["caption"] == "none"
    assert (
        fire(client, "/Gallery/maybe", uploads={"doc": ("a.txt", b"x", "text/plain")}).errors == {}
    )
    assert state_of(client)["caption"] == "a.txt"


REFUSED = {
    "oversize (announced)": (
        {"avatar": ("big.png", b"\0" * (4 * MiB), "image/png")},
        AVATAR,
        {"avatar": "The file is larger than 3 MiB."},
    ),
    "oversize file under the body limit": (
        {"avatar": ("big.png", b"\0" * (3 * MiB + 100), "image/png")},
        AVATAR,
        {"avatar": "The file is larger than 3 MiB."},
    ),
    "wrong type": (
        {"avatar": ("a.gif", PNG, "image/gif")},
        AVATAR,
        {"avatar": "Only image/png, image/webp files are accepted."},
    ),
    "no file": ({"other": ("a.png", PNG, "image/png")}, AVATAR, {"avatar": "Field required"}),
    "two files for one": (
        {"avatar": [("a.png", PNG, "image/png"), ("b.png", PNG, "image/png")]},
        AVATAR,
        {"avatar": "Choose one file."},
    ),
    "a list's file too large": (
        {"photos": [("a.png", PNG, "image/png"), ("b.png", b"\0" * (MiB + 1), "image/png")]},
        ALBUM,
        {"photos": "A file is larger than 1 MiB."},
    ),
    "a list's file of another type": (
        {"photos": [("a.txt", b"hi", "text/plain")]},
        ALBUM,
        {"photos": "Only image/* files are accepted."},
    ),
}


@pytest.mark.parametrize("uploads,url,messages", REFUSED.values(), ids=REFUSED.keys())
def test_refused_uploads_show_on_the_page_and_change_nothing(
    client: TestClient, uploads: Any, url: str, messages: dict[str, str]
) -> None:
    before = state_of(client)
    result = fire(client, url, uploads=uploads)
    assert result.status_code == 200
    assert result.errors == messages
    assert state_of(client) == before


def test_a_body_far_over_the_limit_is_refused_413(client: TestClient) -> None:
    before = state_of(client)
    response = client.post(
        AVATAR,
        files={"avatar": ("huge.png", b"\0" * (8 * MiB), "image/png")},
        headers=DATASTAR_HEADERS,
    )
    assert response.status_code == 413
    assert state_of(client) == before


def test_a_body_over_the_limit_without_length_is_read_to_its_end_and_told(
    client: TestClient,
) -> None:
    boundary = "xyz"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="avatar"; filename="b.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    def chunks() -> Any:  # no Content-Length: the limit is found while streaming
        yield head
        for _ in range(4):
            yield b"\0" * MiB
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post(
        AVATAR,
        content=chunks(),
        headers={**DATASTAR_HEADERS, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 200
    assert "The file is larger than 3 MiB." in response.text
    assert state_of(client)["avatar"] == ""


def test_a_list_of_a_few_too_many_files_shows_on_the_page(client: TestClient) -> None:
    files = [(f"{n}.png", PNG, "image/png") for n in range(4)]
    result = fire(client, ALBUM, uploads={"photos": files})
    assert result.errors == {"photos": "Choose at most 3 files."}
    assert state_of(client)["photos"] == []


def test_far_more_files_than_the_event_takes_is_refused(client: TestClient) -> None:
    files = [(f"{n}.png", PNG, "image/png") for n in range(7)]
    response = client.post(ALBUM, files=[("photos", f) for f in files], headers=DATASTAR_HEADERS)
    assert response.status_code == 400
    assert "Too many files" in response.text
    assert state_of(client)["photos"] == []


@pytest.mark.parametrize(
    "body,content_type",
    [
        (b"--x\r\nnot a header\r\n\r\n", "multipart/form-data; boundary=x"),
        (
            b"--x\r\nContent-Disposition: form-data\r\n\r\nv\r\n--x--\r\n",
            "multipart/form-data; boundary=x",
        ),
        (b"anything", "multipart/form-data"),  # no boundary
    ],
    ids=["broken headers", "part without a name", "no boundary"],
)
def test_malformed_multipart_is_refused_400(
    client: TestClient, body: bytes, content_type: str
) -> None:
    before = state_of(client)
    response = client.post(
        AVATAR, content=body, headers={**DATASTAR_HEADERS, "Content-Type": content_type}
    )
    assert response.status_code == 400
    assert state_of(client) == before


@pytest.mark.parametrize(
    "headers,status",
    [
        ({"Sec-Fetch-Site": "same-origin"}, 403),  # no Datastar-Request
        ({"Datastar-Request": "true", "Sec-Fetch-Site": "cross-site"}, 403),
        ({"Datastar-Request": "true"}, 403),  # a form body needs same-origin proven
        ({"Datastar-Request": "true", "Origin": "https://evil.example"}, 403),
    ],
    ids=["non-Datastar", "cross-site", "origin unknown", "foreign origin"],
)
def test_uploads_from_elsewhere_are_refused(
    client: TestClient, headers: dict[str, str], status: int
) -> None:
    response = client.post(AVATAR, files={"avatar": ("a.png", PNG, "image/png")}, headers=headers)
    assert response.status_code == status
    assert state_of(client)["avatar"] == ""
    assert SEEN == []


def v1_signal(name: str, data: bytes, mime: str) -> dict[str, Any]:
    return {"avatar": [{"name": name, "contents": base64.b64encode(data).decode(), "mime": mime}]}


def beta_signals(name: str, data: bytes, mime: str) -> dict[str, Any]:
    return {
        "avatar": [base64.b64encode(data).decode()],
        "avatarMimes": [mime],
        "avatarNames": [name],
    }


@pytest.mark.parametrize("shape", [v1_signal, beta_signals], ids=["v1", "beta"])
def test_datastar_file_signals_bind_over_the_global_cap(client: TestClient, shape: Any) -> None:
    data = PNG * 100  # 1.6 MiB, 2.2 MiB as base64: over the 1 MiB body cap
    result = fire(client, AVATAR, shape("me.png", data, "image/png"))
    assert result.status_code == 200, result.text
    assert result.errors == {}
    assert state_of(client)["avatar"] == digest("me.png", data)
    assert SEEN and all(file.file.closed for file in SEEN)


@pytest.mark.parametrize("shape", [v1_signal, beta_signals], ids=["v1", "beta"])
def test_datastar_file_signals_are_checked(client: TestClient, shape: Any) -> None:
    assert fire(client, AVATAR, shape("a.gif", PNG, "image/gif")).errors == {
        "avatar": "Only image/png, image/webp files are accepted."
    }
    big = fire(client, AVATAR, shape("a.png", b"\0" * (3 * MiB + 10), "image/png"))
    assert big.status_code == 200
    assert big.errors == {"avatar": "The file is larger than 3 MiB."}
    bad = fire(
        client, AVATAR, {"avatar": [{"name": "a.png", "contents": "%%%", "mime": "image/png"}]}
    )
    assert bad.errors == {"avatar": "Not a file"}
    assert fire(client, AVATAR, {"avatar": "nope"}).errors == {"avatar": "Not a file"}
    assert state_of(client)["avatar"] == ""


def test_fasthtml_apps_see_only_the_text_fields() -> None:
    seen: dict[str, Any] = {}

    def before(req):  # type: ignore[no-untyped-def]  # FastHTML fills it by name
        seen["content-type"] = req.headers.get("content-type")
        seen["content-length"] = req.headers.get("content-length")

    fasthtml = with_faststate(FastHTML(before=Beforeware(before)), {Gallery: StateScope.GLOBAL})
    data = PNG * 160
    with TestClient(fasthtml) as client:
        result = fire(
            client, AVATAR, {"caption": "hi"}, uploads={"avatar": ("me.png", data, "image/png")}
        )
    assert result.status_code == 200, result.text
    assert result.errors == {}
    assert seen == {"content-type": "application/x-www-form-urlencoded", "content-length": "10"}


def test_limits_come_from_the_annotations() -> None:
    assert upload_of(UploadFile) is not None
    assert upload_of(list[UploadFile]) is not None
    limits, many = upload_of(Annotated[list[UploadFile], Upload(max_size=5, max_count=2)]) or (
        None,
        None,
    )
    assert many is True and limits is not None and limits.max_size == 5
    assert upload_of(str) is None
    with pytest.raises(TypeError, match="UploadFile"):
        upload_of(Annotated[str, Upload()])
    with pytest.raises(ValueError, match="media types"):
        Upload(accept="png")
    default = upload_of(UploadFile)
    assert default is not None and default[0].max_size == DEFAULT_MAX_SIZE
    policy = UploadPolicy(())
    assert policy.max_files == 0


def test_form_actions_in_both_dialects() -> None:
    assert PROTOCOLS["v1"].fetch_action("post", "/G/e", "G", (), form=True) == (
        '@post("/G/e", {"contentType": "form", "retry": "never"})'
    )
    assert PROTOCOLS["beta"].fetch_action("post", "/G/e", "G", (), form=True) == (
        "@post(\"/G/e\", {contentType: 'form', retryMaxCount: 0})"
    )
    assert callable(action)


def test_json_dump_of_errors_is_a_string(client: TestClient) -> None:
    result = fire(client, AVATAR, uploads={"avatar": ("a.gif", PNG, "image/gif")})
    shown = result.signals["Gallery"]["_errors"]
    assert json.loads(shown) == {"avatar": "Only image/png, image/webp files are accepted."}


def mounted_below(inner: Any) -> Starlette:
    """``inner`` (holding the states) mounted under ``/api`` of an app whose own
    middleware cannot see its event paths: events are guarded in the endpoint."""
    register_state(inner, Gallery, scope=StateScope.GLOBAL)

    def page(request: Request) -> JSONResponse:
        return JSONResponse(use_state(request, Gallery).model_dump(exclude={"id"}))

    if isinstance(inner, FastHTML):
        inner.route("/")(page)
    else:
        inner.add_route("/", page)
    outer = Starlette(routes=[Mount("/api", inner)])
    outer.add_middleware(FastStateMiddleware, secret_key="s" * 32)
    return outer


@pytest.mark.parametrize("inner", [Starlette, FastHTML], ids=["starlette", "fasthtml"])
def test_uploads_to_an_app_mounted_below_the_middleware(inner: type[Any]) -> None:
    SEEN.clear()
    data = PNG * 160  # ~2.6 MiB: over max_body_size (1 MiB), under the event's 3 MiB
    with TestClient(mounted_below(inner())) as client:
        result = fire(
            client,
            "/api" + AVATAR,
            {"caption": "me"},
            uploads={"avatar": ("me.png", data, "image/png")},
        )
        assert result.status_code == 200, result.text
        assert result.errors == {}
        assert client.get("/api/").json()["avatar"] == digest("me.png", data)
        assert SEEN and all(file.file.closed for file in SEEN)  # closed once answered

        too_big = fire(
            client,
            "/api" + AVATAR,
            {"caption": "big"},
            uploads={"avatar": ("big.png", PNG * 200, "image/png")},  # ~3.1 MiB
        )
        assert too_big.status_code == 200, too_big.text
        assert too_big.errors == {"avatar": "The file is larger than 3 MiB."}
        wrong = fire(client, "/api" + AVATAR, uploads={"avatar": ("a.gif", b"GIF8", "image/gif")})
        assert wrong.errors == {"avatar": "Only image/png, image/webp files are accepted."}
        state = client.get("/api/").json()
        assert (state["avatar"], state["caption"]) == (digest("me.png", data), "me")
