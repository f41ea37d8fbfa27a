"""Driving an ASGI app in-process with raw calls: no network, no client library."""

from __future__ import annotations

from typing import Any

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
