"""Driving an ASGI app in-process with raw calls: no network, no client library."""

from __future__ import annotations

import asyncio
from typing import Any

from faststate._live.streams import LiveStream

Headers = list[tuple[bytes, bytes]]


def scope(method: str, path: str, headers: Headers, query: bytes = b"") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"bench"), *headers],
        "server": ("bench", 80),
        "client": ("127.0.0.1", 1),
    }


async def call(
    app: Any, request_scope: dict[str, Any], body: bytes = b""
) -> tuple[int, Headers, bytes]:
    """One request; returns status, headers and body."""
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(dict(request_scope), receive, send)
    start = sent[0]
    return start["status"], start["headers"], b"".join(m.get("body", b"") for m in sent[1:])


async def session_cookie(app: Any) -> bytes:
    """Open a page once and return the session cookie the app set."""
    status, headers, _ = await call(app, scope("GET", "/", []))
    assert status == 200
    for name, value in headers:
        if name == b"set-cookie":
            return value.split(b";", 1)[0]
    raise RuntimeError("the app set no session cookie")


EVENT_HEADERS: Headers = [
    (b"datastar-request", b"true"),
    (b"content-type", b"application/json"),
    (b"sec-fetch-site", b"same-origin"),
]


class LivePages:
    """``count`` real ``LiveStream`` responses of one instance, called in process.

    Every stream shares one ASGI ``send`` that notes, once ``arm()`` was
    called, when each stream wrote its next event (``clock()`` seconds): what
    a page waits for, short of the network.
    """

    def __init__(self, runtime: Any, address: Any, version: int, count: int, clock: Any) -> None:
        self.count = count
        self.clock = clock
        self.sent: list[float] = []
        self.opened = 0
        self.armed = False
        self.all_open = asyncio.Event()
        self.all_sent = asyncio.Event()
        self._leave = asyncio.Event()
        request = scope("GET", "/_faststate/live", [])
        self._tasks = [
            asyncio.create_task(
                LiveStream(runtime, [address], [version], None)(request, self._receive, self._send)
            )
            for _ in range(count)
        ]

    async def _receive(self) -> dict[str, Any]:
        await self._leave.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            self.opened += 1
            if self.opened == self.count:
                self.all_open.set()
        elif self.armed and message.get("body", b"").startswith(b"event:"):
            self.sent.append(self.clock())
            if len(self.sent) == self.count:
                self.all_sent.set()

    async def ready(self) -> None:
        """Every stream subscribed, sent its headers, and waits."""
        await asyncio.wait_for(self.all_open.wait(), 60)
        await asyncio.sleep(0.05)

    def arm(self) -> None:
        self.armed = True

    async def last_sent(self) -> float:
        """When the last stream wrote the change (waits for it)."""
        await asyncio.wait_for(self.all_sent.wait(), 60)
        return max(self.sent)

    async def close(self) -> None:
        self._leave.set()
        await asyncio.gather(*self._tasks)
