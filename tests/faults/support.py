"""Faults on demand: a Redis server of the test's own, and a TCP proxy to cut or stall.

Never the shared Redis on 6379: each ``PrivateRedis`` runs its own
``redis-server`` on a free port, so stopping it hurts no other test.  A
``TcpProxy`` sits between the app and a real server (PostgreSQL, Redis) and
can drop every connection (``kill``), stop forwarding while keeping the
connections open, as a network that drops packets does (``pause``), and
forward again (``resume``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import require
from tests.support import free_port


class PrivateRedis:
    """``redis-server`` on a free port of its own, without persistence."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            require("redis-server is not installed")
        self.binary = str(binary)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = tempfile.mkdtemp(prefix="faststate-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self.directory,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill the server: its data is gone, as after a crash without persistence."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.close()


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to a target, in a thread; cut or stalled on demand."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._running = threading.Event()  # set: bytes flow
        self._running.set()
        self._refusing = False
        self._closed = False
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="tcp-proxy")
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self._refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                self._running.wait()  # paused: hold the bytes, keep the connection
                if self._closed or source not in self._sockets:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(source, sink)

    def _drop(self, *sockets: socket.socket) -> None:
        with self._lock:
            for sock in sockets:
                self._sockets.discard(sock)
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def kill(self, refuse: bool = True) -> None:
        """Drop every open connection; with ``refuse``, refuse new ones until ``restore``."""
        self._refusing = refuse
        with self._lock:
            sockets = list(self._sockets)
        self._drop(*sockets)

    def pause(self) -> None:
        """Stop forwarding; connections stay open and bytes wait (a network dropping packets)."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def restore(self) -> None:
        self._refusing = False
        self.resume()

    def close(self) -> None:
        self._closed = True
        self._running.set()
        self.kill()
        self.listener.close()


@pytest.fixture
def postgres_proxy(postgres_url: str) -> Iterator[TcpProxy]:
    """A proxy in front of the real PostgreSQL (127.0.0.1:5432)."""
    proxy = TcpProxy("127.0.0.1", 5432)
    try:
        yield proxy
    finally:
        proxy.close()


def proxied_postgres_url(proxy: TcpProxy) -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/test"


def worker_env(**values: str) -> dict[str, str]:
    """Environment for an app subprocess: this one's, plus ``values``."""
    return {**os.environ, **values}
