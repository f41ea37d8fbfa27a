"""Live pages survive a server restart (Redis store), under both protocols.

examples/global_board.py runs with a Redis store in two real uvicorn
**subprocesses** (so SIGTERM goes through uvicorn's own signal handling, as in
production), sharing the store and the Redis broker. A page stays open on the
first one while it is stopped and started again on the same port:

- SIGTERM must stop it within a few seconds although the page's stream is open;
- a vote cast through the second process while the first one is down can only
  reach the page by the resync on reconnect (``Last-Event-ID``);
- the page's live stream reconnects by itself (v1: the stream ends cleanly and
  ``retry: 'always'`` reconnects; beta: the stream is left unfinished and the
  client reconnects after the error), without a reload, and is subscribed
  again afterwards.

The app module uvicorn loads is written to ``tmp_path``: it imports the
example, gives its Redis store this test's own key prefix (the example passes
none; ``create_app`` looks ``RedisStore`` up in the module's globals when
called) and builds the app for the protocol under test.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from faststate.testing import DATASTAR_HEADERS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SECRET = "browser-live-restart"
SHUTDOWN_LIMIT_S = 5.0  # SIGTERM to exit, with a live stream open
RECONNECT_TIMEOUT_MS = 15_000  # the client reconnects with backoff

APP_MODULE = """\
import os
import sys

sys.path.insert(0, {examples!r})

import global_board
from faststate import RedisStore

global_board.RedisStore = lambda url: RedisStore(url, prefix=os.environ["BOARD_REDIS_PREFIX"])
app = global_board.create_app({protocol!r}, redis_url=os.environ["FASTSTATE_REDIS_URL"])
"""

# What the page logs while the server is away: Chromium's network errors
# (beta: the unfinished stream is ERR_INCOMPLETE_CHUNKED_ENCODING), the
# client's failed fetch ("Failed to fetch", beta's cut stream "network error")
# and its retry notice for the live stream. Anything else is a real error.
NETWORK_ERROR = re.compile(
    r"net::ERR_(CONNECTION_REFUSED|CONNECTION_RESET|CONNECTION_CLOSED|EMPTY_RESPONSE"
    r"|INCOMPLETE_CHUNKED_ENCODING)"
    r"|^console\.error: (Failed to fetch|network error) \("
    r"|^console\.error: Datastar failed to reach \S+/_faststate/live\?\S* retrying in \d+ms"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class BoardServer:
    """The example in a uvicorn subprocess; ``start``/``stop`` keep the same port."""

    app_dir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.app_dir / f"uvicorn-{self.port}.log"

    def start(self, timeout: float = 20.0) -> None:
        assert self.proc is None
        self.runs += 1
        with self.log.open("ab") as log:
            log.write(f"--- run {self.runs} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "uvicorn", "board_app:app",
                    "--app-dir", str(self.app_dir),
                    "--host", "127.0.0.1", "--port", str(self.port),
                    "--log-level", "warning",
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"uvicorn exited at startup:\n{self.log.read_text()}")
            try:
                if httpx.get(self.base_url + "/", timeout=1, trust_env=False).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"uvicorn did not start in {timeout}s:\n{self.log.read_text()}"
                )
            time.sleep(0.05)

    def stop(self) -> float:
        """SIGTERM; returns the seconds the server took to exit (killed after 15 s)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None
        return time.monotonic() - started

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


@dataclass
class Boards:
    protocol: str
    main: BoardServer  # the one the page is on; restarted
    other: BoardServer  # a second process sharing the Redis store and broker


@pytest.fixture(params=["v1", "beta"])
def boards(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str, redis_prefix: str
) -> Iterator[Boards]:
    protocol = request.param
    (tmp_path / "board_app.py").write_text(
        APP_MODULE.format(examples=str(EXAMPLES), protocol=protocol)
    )
    env = dict(os.environ)
    env.update(
        FASTSTATE_SECRET_KEY=SECRET,
        FASTSTATE_REDIS_URL=redis_url,
        BOARD_REDIS_PREFIX=redis_prefix,
        PYTHONUNBUFFERED="1",
    )
    env.pop("FASTSTATE_DATABASE_URL", None)
    servers = Boards(protocol, BoardServer(tmp_path, env), BoardServer(tmp_path, env))
    try:
        servers.main.start()
        servers.other.start()
        yield servers
    finally:
        servers.main.kill()
        servers.other.kill()


def vote(base_url: str, choice: str) -> None:
    """A vote the way the Datastar client sends it (no browser involved)."""
    headers = {**DATASTAR_HEADERS, "Content-Type": "application/json"}
    with httpx.Client(base_url=base_url, timeout=5, trust_env=False) as client:
        response = client.post(f"/Poll/vote?choice={choice}", headers=headers, content="{}")
    assert response.status_code == 200, (response.status_code, response.text)


def test_page_follows_state_across_restart(
    boards: Boards, new_context, page_errors, redis_url: str, redis_prefix: str
) -> None:
    import redis
    from playwright.sync_api import expect

    main, other = boards.main, boards.other
    page = new_context(boards.protocol).new_page()
    errors = page_errors(page)
    with page.expect_response(lambda r: "/_faststate/live" in r.url):
        page.goto(main.base_url + "/")
    tea, coffee, total = (page.locator(f"#{i}") for i in ("votes-tea", "votes-coffee", "total"))
    expect(tea).to_have_text("0")
    expect(total).to_have_text("0")

    # before the restart: votes through this process and through the other one
    # (pushed across processes by the Redis broker) show up live
    vote(main.base_url, "tea")
    expect(tea).to_have_text("1", timeout=5_000)
    vote(other.base_url, "tea")
    expect(tea).to_have_text("2", timeout=5_000)
    page.click("#vote-water")
    expect(total).to_have_text("3")
    page.wait_for_timeout(50)
    assert errors == []

    # the page's stream is open, and yet SIGTERM stops the server quickly
    took = main.stop()
    assert took < SHUTDOWN_LIMIT_S, f"uvicorn needed {took:.1f}s to stop:\n{main.log.read_text()}"

    # while the page is cut off, a vote lands through the other process: no
    # push can reach the page, only the resync when it reconnects
    vote(other.base_url, "coffee")
    page.wait_for_timeout(1_000)  # the page notices; its first reconnects are refused
    expect(coffee).to_have_text("0")

    main.start()
    expect(coffee).to_have_text("1", timeout=RECONNECT_TIMEOUT_MS)
    expect(total).to_have_text("4")
    expect(tea).to_have_text("2")

    # the reconnected stream is subscribed again: later votes are pushed live
    vote(main.base_url, "tea")
    expect(tea).to_have_text("3", timeout=5_000)
    vote(other.base_url, "coffee")
    expect(coffee).to_have_text("2", timeout=5_000)
    expect(total).to_have_text("6")
    # and the page's own events still work
    page.click("#vote-tea")
    expect(tea).to_have_text("4")
    expect(total).to_have_text("7")
    assert page.url == main.base_url + "/"  # never reloaded

    # the state lives in Redis, under this test's prefix
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.exists(f"{redis_prefix}state:{{global:Poll}}") == 1
    finally:
        client.close()

    page.wait_for_timeout(50)
    unexpected = [e for e in errors if not NETWORK_ERROR.search(e)]
    assert unexpected == [], f"{unexpected}\nserver log:\n{main.log.read_text()}"
