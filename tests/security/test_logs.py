"""Failures log no private data: no private or excluded value, no cookie."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from pydantic import PrivateAttr
from sqlmodel import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from faststate import (
    FastStateMiddleware,
    ReactiveState,
    StateScope,
    event,
    live,
    register_state,
    use_state,
)
from faststate.testing import fire

from ..apps import SECRET
from .support import COOKIE, EXCLUDED_VALUE, PRIVATE_VALUE, Point, tampered

# --- logs carry no private data -----------------------------------------------------------


class Safe(ReactiveState):
    shown: int = 0
    combination: str = Field(default=EXCLUDED_VALUE, exclude=True)
    _master_key: str = PrivateAttr(default=PRIVATE_VALUE)

    @event
    def crack(self, amount: int = 1) -> None:
        secret, hidden = self._master_key, self.combination
        self.shown += amount
        assert secret and hidden
        raise RuntimeError("the safe is jammed")

    @event
    def crack_slowly(self) -> Iterator[None]:
        secret = self._master_key
        self.shown += 1
        yield None
        raise ValueError(f"jammed after {len(secret)} turns")

    @event
    def open(self, code: int, point: Point) -> None:
        self.shown = code + point.x


CLIENT_SIDE_LOGGERS = ("httpx", "httpcore", "hpack")


def server_log(caplog: pytest.LogCaptureFixture) -> str:
    """Everything the server side logged (the test client's own request log excluded)."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(
        formatter.format(record)
        for record in caplog.records
        if not record.name.startswith(CLIENT_SIDE_LOGGERS)
    )


def test_failures_log_no_private_excluded_or_cookie_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)

    def page(request: Request) -> JSONResponse:
        use_state(request, Safe)
        return JSONResponse(live(request))

    app = Starlette()
    app.add_middleware(FastStateMiddleware, secret_key=SECRET)
    register_state(app, Safe, scope=StateScope.SESSION)
    app.add_route("/", page)
    with TestClient(app, raise_server_exceptions=False) as client:
        token_attribute = client.get("/").json()
        cookie = client.cookies[COOKIE]
        responses = [
            fire(client, "/Safe/crack", amount=2),
            fire(client, "/Safe/crack_slowly"),
            fire(client, "/Safe/open", code=PRIVATE_VALUE, signals={"point": PRIVATE_VALUE}),
            fire(
                client,
                "/Safe/open",
                signals={
                    "code": EXCLUDED_VALUE,
                    "point": {"x": PRIVATE_VALUE, "tag": cookie},
                },
            ),
            fire(client, "/Safe/open", signals={"code": 1, "point": {"x": 2}}),
        ]
        assert [r.status_code for r in responses] == [200] * 5
        # Each refusal is shown on the page, naming what went wrong but not how.
        assert [sorted(r.errors) for r in responses] == [
            [""],
            [""],
            ["code", "point"],
            ["code", "point.tag", "point.x"],
            [],
        ]
        forged = tampered(cookie)
        with TestClient(app, raise_server_exceptions=False) as attacker:
            attacker.cookies.set(COOKIE, forged)
            fire(attacker, "/Safe/crack")
            attacker.get("/")
            bad_token = f"{PRIVATE_VALUE}.{cookie}"
            assert attacker.get(f"/_faststate/live?t={bad_token}").status_code == 403
            (expression,) = [v for k, v in token_attribute.items() if k != "data-signals"]
            url = expression.split("'")[1] if "'" in expression else expression
            assert "/_faststate/live" in url
            assert attacker.get(url[url.index("/_faststate") :]).status_code == 403
    log = server_log(caplog)
    assert "jammed" in log  # the failures were logged, with their traceback
    signature = cookie.rsplit(".", 1)[-1]
    for secret in (PRIVATE_VALUE, EXCLUDED_VALUE, cookie, forged, signature):
        assert secret not in log
    for response in responses:
        for secret in (PRIVATE_VALUE, EXCLUDED_VALUE, cookie):
            assert secret not in response.text
