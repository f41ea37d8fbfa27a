"""The presence app of test_presence and the browser's test_presence_in_browser.

A GLOBAL room ("N people here") and a RECORD document ("alice, bob are
editing"), both registered with ``presence=True``, plus a plain GLOBAL
counter without it.  A ``who`` cookie logs a visitor in: FastHTML beforeware
puts it into ``scope["auth"]``, as a login would.

``uvicorn --app-dir tests presence_app:app`` serves it with the store named by
``FASTSTATE_REDIS_URL`` / ``FASTSTATE_REDIS_PREFIX`` and the heartbeat in
``FASTSTATE_HEARTBEAT`` (the multi-worker tests); no relative imports here.
"""

from __future__ import annotations

import os
from typing import Any

from fasthtml.common import Beforeware, Div, FastHTML, P, Span, Titled
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from faststate import (
    ReactiveState,
    RedisStore,
    StateScope,
    aviewers,
    event,
    live,
    on,
    register_state,
    text,
    use_state,
    viewer_count,
    viewer_names,
    viewers,
)
from faststate.fasthtml import FastStateHTML

SECRET = "presence-test-secret"


class Room(ReactiveState):
    clicks: int = 0

    @event
    def click(self) -> None:
        self.clicks += 1


class Doc(ReactiveState):
    body: str = ""


class Plain(ReactiveState):
    count: int = 0


def _login(req: Request) -> None:
    who = req.cookies.get("who")
    if who:
        req.scope["auth"] = who


def make_app(protocol: str = "v1", **options: Any) -> FastHTML:
    app = FastStateHTML(
        before=Beforeware(_login),
        faststate={"secret_key": SECRET, "protocol": protocol, **options},
    )
    register_state(app, Room, scope=StateScope.GLOBAL, presence=True)
    register_state(app, Doc, scope=StateScope.RECORD, presence=True)
    register_state(app, Plain, scope=StateScope.GLOBAL)

    @app.route("/room")
    def room_page(req: Request) -> Any:
        room = use_state(req, Room)
        return Titled(
            "Room",
            room,
            P(Span(**viewer_count(room), id="count"), " here"),
            P(Span(**viewer_names(room), id="names")),
            P(Span(**text(room, "clicks"), id="clicks")),
            Div("click", **on("click", room.click), id="click"),
            Div(**live(req)),
        )

    @app.route("/docs/{id}")
    def doc_page(req: Request, id: str) -> Any:
        doc = use_state(req, Doc)
        return Titled(
            "Doc",
            doc,
            P(Span(**viewer_names(doc), id="names"), " editing"),
            P(Span(**viewer_count(doc), id="count")),
            Div(**live(req)),
        )

    @app.route("/plain")
    def plain_page(req: Request) -> Any:
        return Titled("Plain", use_state(req, Plain), Div(**live(req)))

    @app.route("/viewers/room")
    def room_viewers(req: Request) -> Response:
        return JSONResponse(viewers(req, use_state(req, Room)))

    @app.route("/aviewers/docs/{id}")
    async def doc_viewers(req: Request, id: str) -> Response:
        return JSONResponse(await aviewers(req, use_state(req, Doc)))

    return app


def __getattr__(name: str) -> Any:
    """``app``, built from the environment when uvicorn asks for it."""
    if name != "app":
        raise AttributeError(name)
    url = os.environ["FASTSTATE_REDIS_URL"]
    prefix = os.environ.get("FASTSTATE_REDIS_PREFIX", "faststate:")
    return make_app(
        store=RedisStore(url, prefix=prefix),
        heartbeat=float(os.environ.get("FASTSTATE_HEARTBEAT", "15")),
    )
