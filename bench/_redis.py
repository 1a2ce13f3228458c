"""Redis with an append-only file, on a ``redis-server`` this module starts and stops.

The server listens on 127.0.0.1 on a free port, keeps its files in the cell's temporary
directory, has RDB snapshots off and ``appendonly yes`` with the cell's ``appendfsync``
(``always``: fsync before replying to each write batch; ``everysec``; ``no``).

* ``redis-*``: ``redis.asyncio`` with a pool of W connections (opened before the clock
  starts), each worker doing ``RPUSH``.
* ``redisbench-*``: Redis's own C client, ``redis-benchmark -t rpush -c W -d <size>``, as
  Redis's ceiling. It runs a fixed number of requests, so calibration runs (which also serve
  as warm-up) size the measured run to the cell's duration. A calibration run only counts
  once it lasted at least the warm-up time: a short one measures the W connections being
  set up, not the server, and redis-benchmark reports its rate over whole milliseconds (2,000
  requests in 56 ms read as 35.7k/s from a server doing 90k/s, and sized a 1.25 s window to
  0.5 s). If the measured run still ends well short of the window, it is run again, larger.
  Its latencies are its own (taken by the C client around each request), read from its report.

Server CPU and peak RSS are reported beside the client's and included in CPU per append.
"""

from __future__ import annotations

import asyncio
import re
import resource
import shutil
import signal
import socket
import subprocess
import time
from typing import TYPE_CHECKING, Any, cast

from ._harness import (
    CDF_PERCENTILES,
    AsyncSubject,
    CellResult,
    ExternalSubject,
    proc_cpu_seconds,
    proc_peak_rss_mib,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

__all__ = (
    "RedisAsyncEverysec",
    "RedisAsyncNo",
    "RedisAsyncSubject",
    "RedisBenchmarkEverysec",
    "RedisBenchmarkNo",
    "RedisBenchmarkSubject",
    "RedisServer",
    "next_request_count",
    "parse_redis_benchmark",
    "redis_version",
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private ``redis-server`` process. Use as a context manager, or start()/stop()."""

    def __init__(self, workdir: Path, appendfsync: str) -> None:
        self.dir = workdir / "redis"
        self.appendfsync = appendfsync
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (python -m bench --setup)")
        self.dir.mkdir(parents=True, exist_ok=True)
        last: Exception | None = None
        for _ in range(5):  # a free port can be taken between probe and bind: retry
            self.port = _free_port()
            cmd = [
                exe,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(self.dir),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", self.appendfsync,
                "--daemonize", "no",
                "--protected-mode", "no",
                "--tcp-backlog", "4096",
                "--maxclients", "10000",
                "--logfile", str(self.dir / "redis.log"),
            ]  # fmt: skip
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            try:
                self._wait_ready(10.0)
                return
            except RuntimeError as exc:
                last = exc
                self.stop()
        raise RuntimeError(f"redis-server did not start: {last}; see {self.dir / 'redis.log'}")

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with status {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("not answering PING")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class RedisAsyncSubject(AsyncSubject):
    appendfsync = "always"
    server: RedisServer | None = None
    client: Any = None

    def setup(self) -> None:
        self.server = RedisServer(self.workdir, self.appendfsync)
        self.server.start()

    async def open(self) -> Callable[[bytes], Awaitable[object]]:
        import redis.asyncio

        assert self.server is not None
        pool = redis.asyncio.ConnectionPool(
            host="127.0.0.1", port=self.server.port, max_connections=self.spec.workers
        )
        client = redis.asyncio.Redis(connection_pool=pool)
        self.client = client
        # Open all W connections now, 256 at a time, outside the measured window: 4096
        # connections opened on demand by the first appends would not all be up (and
        # handshaken) before the window ends.
        held: list[Any] = []
        get_connection: Callable[[], Awaitable[Any]] = pool.get_connection  # untyped in redis-py
        while len(held) < self.spec.workers:
            n = min(256, self.spec.workers - len(held))
            held += await asyncio.gather(*(get_connection() for _ in range(n)))
        for conn in held:
            await pool.release(conn)
        rpush = cast("Callable[[str, bytes], Awaitable[int]]", client.rpush)

        async def append(data: bytes) -> None:
            await rpush("log", data)

        return append

    def server_pid(self) -> int | None:
        return self.server.pid if self.server is not None else None

    async def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            await client.aclose()
            await client.connection_pool.disconnect()

    def teardown(self) -> None:
        if self.server is not None:
            self.server.stop()

    def notes(self) -> str:
        return f"appendfsync {self.appendfsync}, redis.asyncio pool of W connections"


class RedisAsyncEverysec(RedisAsyncSubject):
    appendfsync = "everysec"


class RedisAsyncNo(RedisAsyncSubject):
    appendfsync = "no"


# -- redis-benchmark -------------------------------------------------------------------------

_PCT_LINE = re.compile(r"^\s*([0-9.]+)% <= ([0-9.]+) milliseconds")
_RPS_LINE = re.compile(r"throughput summary:\s*([0-9.]+) requests per second")
_SUMMARY_HEAD = re.compile(r"^\s*avg\s+min\s+p50\s+p95\s+p99\s+max\s*$")


def parse_redis_benchmark(text: str) -> dict[str, Any]:
    """Read ``redis-benchmark`` (Redis >= 6) default output: rps, latencies in microseconds.

    :return: keys ``rps``, ``mean_us``, ``p50_us``, ``p99_us``, ``max_us``, ``p999_us`` and
        ``cdf`` (pairs at :data:`CDF_PERCENTILES`); the percentiles not printed as such are
        the first printed point at or above them (an upper bound).
    :raises ValueError: the report is not there
    """
    lines = text.replace("\r", "\n").splitlines()
    dist: list[tuple[float, float]] = []
    in_dist = False
    rps: float | None = None
    summary: list[float] | None = None
    for i, line in enumerate(lines):
        if line.startswith("Latency by percentile distribution"):
            in_dist = True
            continue
        if in_dist:
            m = _PCT_LINE.match(line)
            if m:
                dist.append((float(m.group(1)), float(m.group(2)) * 1000.0))
                continue
            if line.strip():
                in_dist = False
        m2 = _RPS_LINE.search(line)
        if m2:
            rps = float(m2.group(1))
        if _SUMMARY_HEAD.match(line) and i + 1 < len(lines):
            summary = [float(x) * 1000.0 for x in lines[i + 1].split()]
    if rps is None or not dist:
        raise ValueError("no redis-benchmark report in output:\n" + text[-2000:])

    def upper(p: float) -> float:
        for pct, us in dist:
            if pct >= p:
                return us
        return dist[-1][1]

    out: dict[str, Any] = {
        "rps": rps,
        "p50_us": upper(50.0),
        "p99_us": upper(99.0),
        "p999_us": upper(99.9),
        "max_us": dist[-1][1],
        "mean_us": None,
        "cdf": [(p, upper(p)) for p in CDF_PERCENTILES],
    }
    if summary is not None and len(summary) == 6:
        out["mean_us"] = summary[0]
        out["p50_us"] = summary[2]
        out["p99_us"] = summary[4]
        out["max_us"] = summary[5]
    return out


class RedisBenchmarkSubject(ExternalSubject):
    appendfsync = "always"

    def _bench(self, server: RedisServer, requests: int) -> tuple[dict[str, Any], float]:
        exe = shutil.which("redis-benchmark")
        if exe is None:
            raise RuntimeError("redis-benchmark is not installed (python -m bench --setup)")
        cmd = [
            exe, "-h", "127.0.0.1", "-p", str(server.port),
            "-t", "rpush", "-c", str(self.spec.workers), "-n", str(requests), "-d", str(self.spec.size),
        ]  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, check=False, timeout=600)
        wall = time.perf_counter() - t0
        text = proc.stdout.decode(errors="replace")
        if proc.returncode != 0:
            raise RuntimeError(f"redis-benchmark exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
        return parse_redis_benchmark(text), wall

    def run(self, result: CellResult) -> None:
        spec = self.spec
        with RedisServer(self.workdir, self.appendfsync) as server:
            # Calibration (and warm-up): grow the request count until one run lasts the
            # warm-up time, then size the measured run from that run's rate.
            n = max(2 * spec.workers, 2000)
            for _ in range(_MAX_CALIBRATIONS):
                cal, wall = self._bench(server, n)
                elapsed = _elapsed(cal, n, wall)
                rate = n / max(elapsed, 1e-3)
                nxt = next_request_count(n, elapsed, spec.warmup)
                if nxt is None:
                    break
                n = nxt
            requests = max(int(rate * spec.seconds), 4 * spec.workers, 1000)
            assert server.pid is not None
            for _ in range(_MAX_CALIBRATIONS):
                s0 = proc_cpu_seconds(server.pid)
                c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                rep, wall = self._bench(server, requests)
                c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                s1 = proc_cpu_seconds(server.pid)
                # A run well short of the window (the server sped up after calibrating) is
                # warm-up too: run again, sized from this run's rate.
                elapsed = _elapsed(rep, requests, wall)
                if elapsed >= _MIN_WINDOW * spec.seconds:
                    break
                requests = max(int(requests / max(elapsed, 1e-3) * spec.seconds), requests + 1)
            server_rss = proc_peak_rss_mib(server.pid)
        rps = float(rep["rps"])
        result.appends = requests
        result.appends_per_s = rps
        result.seconds = requests / rps if rps else wall
        result.mb_per_s = rps * spec.size / 1e6
        result.mean_us = rep["mean_us"]
        result.p50_us = rep["p50_us"]
        result.p99_us = rep["p99_us"]
        result.p999_us = rep["p999_us"]
        result.max_us = rep["max_us"]
        result.cdf = rep["cdf"]
        client_cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
        server_cpu = (s1 - s0) if s0 is not None and s1 is not None else 0.0
        result.server_cpu_s = server_cpu
        result.cpu_s = client_cpu + server_cpu
        result.cpu_us_per_append = result.cpu_s / requests * 1e6
        result.rss_peak_mib = c1.ru_maxrss / 1024  # the largest waited-for child: redis-benchmark
        result.server_rss_peak_mib = server_rss
        result.notes = (
            f"appendfsync {self.appendfsync}, redis-benchmark -t rpush -c {spec.workers} -n {requests}"
        )


#: Calibration runs (and re-runs of a measured run that came out short) at most.
_MAX_CALIBRATIONS = 5
#: A measured run shorter than this fraction of the cell's window is run again.
_MIN_WINDOW = 0.8


def _elapsed(report: dict[str, Any], requests: int, wall: float) -> float:
    """Seconds the run took by redis-benchmark's own clock (requests / its rate)."""
    rps = float(report["rps"])
    return requests / rps if rps > 0 else wall


def next_request_count(requests: int, elapsed: float, target: float) -> int | None:
    """The request count for the next run, or ``None`` if a run of ``requests`` that took
    ``elapsed`` seconds was long enough (``elapsed >= target``).

    The next count aims at 1.5 x ``target`` at the rate just seen, and grows at most 50-fold
    per run (a run of a few milliseconds says little about the rate), never less than double.
    """
    if elapsed >= target:
        return None
    factor = 1.5 * target / max(elapsed, 1e-3)
    return int(requests * min(max(factor, 2.0), 50.0))


class RedisBenchmarkEverysec(RedisBenchmarkSubject):
    appendfsync = "everysec"


class RedisBenchmarkNo(RedisBenchmarkSubject):
    appendfsync = "no"


def redis_version() -> str | None:
    exe = shutil.which("redis-server")
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"v=(\S+)", out)
    return m.group(1) if m else out.strip()
