"""A real three-node Redis Cluster on local ports, for the cluster tests and benchmark.

``LocalCluster(ports).start()`` runs one ``redis-server --cluster-enabled yes``
per port in a temporary directory, joins them with ``redis-cli --cluster
create`` (no replicas) and waits until every node reports ``cluster_state:ok``;
``stop()`` kills them and removes the directory.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def missing_binaries() -> str | None:
    """Why no cluster can be started here, or None."""
    for binary in ("redis-server", "redis-cli"):
        if shutil.which(binary) is None:
            return f"{binary} is not installed (apt-get install redis-server)"
    return None


def _ask(port: int, *command: str) -> str:
    """One command in RESP over a raw socket; the reply's text ('' when none)."""
    payload = f"*{len(command)}\r\n" + "".join(f"${len(c)}\r\n{c}\r\n" for c in command)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(payload.encode())
            return sock.recv(65536).decode(errors="replace")
    except OSError:
        return ""


class LocalCluster:
    """Three (or more) cluster-enabled ``redis-server`` processes joined into one cluster."""

    def __init__(self, ports: tuple[int, ...] = (17101, 17102, 17103)) -> None:
        self.ports = ports
        self.directory = Path(tempfile.mkdtemp(prefix="faststate-cluster-"))
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> LocalCluster:
        taken = [port for port in self.ports if _ask(port, "PING")]
        if taken:
            raise RuntimeError(f"ports {taken} are in use: a cluster left running?")
        try:
            for port in self.ports:
                directory = self.directory / str(port)
                directory.mkdir()
                self.processes.append(
                    subprocess.Popen(
                        [
                            "redis-server",
                            "--port", str(port),
                            "--bind", "127.0.0.1",
                            "--cluster-enabled", "yes",
                            "--cluster-config-file", "nodes.conf",
                            "--cluster-node-timeout", "2000",
                            "--save", "",
                            "--appendonly", "no",
                            "--dir", str(directory),
                            "--logfile", "redis.log",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            self._wait(lambda: all("PONG" in _ask(port, "PING") for port in self.ports), "start")
            subprocess.run(
                [
                    "redis-cli",
                    "--cluster", "create",
                    *(f"127.0.0.1:{port}" for port in self.ports),
                    "--cluster-replicas", "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
            self._wait(
                lambda: all(
                    "cluster_state:ok" in _ask(port, "CLUSTER", "INFO") for port in self.ports
                ),
                "agree",
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, condition: object, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Redis cluster did not {what} within {timeout}s")
            if any(process.poll() is not None for process in self.processes):
                raise RuntimeError("a redis-server of the cluster exited")
            time.sleep(0.05)

    def node_of(self, key: str) -> int:
        """The port of the node that serves ``key``."""
        slot = int(_ask(self.ports[0], "CLUSTER", "KEYSLOT", key).strip().lstrip(":"))
        return self._owner(slot)

    def _owner(self, slot: int) -> int:
        for line in _ask(self.ports[0], "CLUSTER", "NODES").split("\n"):
            fields = line.split()
            if len(fields) < 9 or "master" not in fields[2]:
                continue
            port = int(fields[1].split(":")[1].split("@")[0])
            for span in fields[8:]:
                low, _, high = span.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return port
        raise LookupError(slot)

    def move_slot_of(self, key: str) -> tuple[int, int]:
        """Migrate the slot of ``key`` (its keys too) to another node, as resharding
        does; returns (from port, to port)."""
        slot = _ask(self.ports[0], "CLUSTER", "KEYSLOT", key).strip().lstrip(":")
        source = self._owner(int(slot))
        target = next(port for port in self.ports if port != source)
        ids = {port: _ask(port, "CLUSTER", "MYID").split("\r\n")[1] for port in self.ports}
        _ask(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
        _ask(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
        while True:
            reply = _ask(source, "CLUSTER", "GETKEYSINSLOT", slot, "100").split("\r\n")
            keys = [line for line in reply[1:] if line and not line.startswith("$")]
            if not keys:
                break
            _ask(source, "MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "KEYS", *keys)
        for port in self.ports:
            _ask(port, "CLUSTER", "SETSLOT", slot, "NODE", ids[target])
        return source, target

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(10)
        self.processes.clear()
        shutil.rmtree(self.directory, ignore_errors=True)
