"""``python -m bench http``: what storing a record costs an HTTP request, measured with ``wrk``
against real servers on 127.0.0.1.

Each *cell* is one server process (uvicorn serving FastAPI, or aiohttp; both on uvloop)
that stores the body of ``POST /e`` (128 bytes) in one store (see :mod:`bench._http_apps`),
loaded by ``wrk`` with 64 connections for a warm-up and then for the measured seconds. A
*round* runs every cell once, each on a fresh directory; rounds rotate the order of the
cells, so that the machine's slow and fast moments spread over all of them. A ratio between
two stores is taken within one round (the two cells ran minutes apart at most), and the
report gives the median over rounds and the range.

After each cell the server is stopped gracefully and the store is counted: it must hold at
least as many records as wrk counted successful requests (wrk does not count requests still
in flight when it stops). A cell whose store holds fewer, or that got a non-2xx answer or a
socket error, is reported as failed, not measured.

Needs ``wrk`` (Debian package ``wrk``: ``python -m bench --setup`` installs it) and, for the
Redis cell, ``redis-server``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ._harness import proc_cpu_seconds
from ._runner import REPO_ROOT, RESULTS_DIR, machine_info, save_document, timestamp, versions

__all__ = ("STORES", "Cell", "main", "parse_wrk", "plan", "render_docs", "render_markdown")

STORES: Final = (
    "nothing",
    "asyncwal-dep",
    "asyncwal-sync",
    "asyncwal-batch",
    "asyncwal-none",
    "sqlite",
    "redis",
)
SERVERS: Final = ("uvicorn", "aiohttp")
BODY_SIZE: Final = 128
CONNECTIONS: Final = 64
#: The POST wrk sends: 128 bytes of body.
WRK_SCRIPT: Final = f"""
wrk.method = "POST"
wrk.body = string.rep("r", {BODY_SIZE})
wrk.headers["Content-Type"] = "application/octet-stream"
"""


@dataclass(frozen=True)
class Cell:
    """One server configuration: which server, which store, how many worker processes."""

    server: str
    store: str
    workers: int = 1

    @property
    def label(self) -> str:
        return f"{self.server} {self.store}" + (f" x{self.workers} workers" if self.workers > 1 else "")


def plan(servers: list[str], stores: list[str], scaling: bool) -> list[Cell]:
    """Every store under every server, one worker; with ``scaling``, also uvicorn with two
    workers (a sharded log) for ``nothing`` and ``asyncwal-sync``."""
    cells = [Cell(server, store) for server in servers for store in stores]
    if scaling and "uvicorn" in servers:
        cells += [Cell("uvicorn", store, 2) for store in ("nothing", "asyncwal-sync") if store in stores]
    return cells


# -- wrk ---------------------------------------------------------------------------------------

_UNITS: Final = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if m is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(text: str) -> dict[str, Any]:
    """The numbers of a ``wrk --latency`` report: requests/s, requests, latency percentiles
    (seconds), non-2xx answers and socket errors.

    :raises ValueError: the text is not a wrk report
    """
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    total = re.search(r"^\s*(\d+) requests in ([\d.]+\w+)", text, re.M)
    if rps is None or total is None:
        raise ValueError("no 'Requests/sec' in wrk's output:\n" + text)
    latency = {int(p): _seconds(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "rps": float(rps.group(1)),
        "requests": int(total.group(1)),
        "duration_s": _seconds(total.group(2)),
        "p50_s": latency.get(50),
        "p90_s": latency.get(90),
        "p99_s": latency.get(99),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
    }


def _wrk(url: str, seconds: float, script: Path, threads: int) -> dict[str, Any]:
    cmd = [
        *("wrk", f"-t{threads}", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s"),
        *("--latency", "--timeout", "10s", "-s", str(script), url),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr.strip()}")
    return parse_wrk(done.stdout)


# -- servers -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_command(cell: Cell, port: int) -> list[str]:
    if cell.server == "uvicorn":
        return [
            *(sys.executable, "-m", "uvicorn", "bench._http_apps:fastapi_app", "--factory"),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", str(cell.workers)),
            *("--loop", "uvloop", "--no-access-log", "--log-level", "warning"),
        ]
    if cell.workers != 1:
        raise ValueError("aiohttp cells run one worker")
    return [sys.executable, "-m", "bench._http_apps", str(port)]


def _wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float = 60.0) -> None:
    """Wait until the server answers (GET / gives 404 or 405), bounded: it starts on its own."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            urllib.request.urlopen(url + "/", timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the server did not answer within 60 s")


def _stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM (a graceful stop: the stores close and flush), then wait; SIGKILL after 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def _descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it (uvicorn's workers), from ``/proc``."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read().decode()
        except OSError:
            continue
        parent[int(entry)] = int(raw[raw.rindex(")") + 2 :].split()[1])
    family = [pid]
    for p in family:  # grows while it is walked: breadth first
        family += [c for c, pp in parent.items() if pp == p]
    return family


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the processes (those that exited count 0)."""
    return sum(proc_cpu_seconds(p) or 0.0 for p in pids)


def _loop_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the main threads of the processes: where each server
    process runs its event loop (and so the bound of a worker's requests/s)."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/task/{pid}/stat", "rb") as f:
                raw = f.read().decode()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _stored(cell: Cell, directory: Path, redis_port: int | None) -> int:
    """How many records the store holds (after the server stopped)."""
    if cell.store in ("nothing", "asyncwal-dep"):
        return -1
    if cell.store.startswith("asyncwal-"):
        return _count_asyncwal(directory / "wal", sharded=cell.workers > 1)
    if cell.store == "sqlite":
        import sqlite3

        with sqlite3.connect(directory / "bench.sqlite") as db:
            return int(db.execute("SELECT COUNT(*) FROM log").fetchone()[0])
    import redis

    assert redis_port is not None
    with redis.Redis(host="127.0.0.1", port=redis_port) as client:
        return int(client.llen("log"))


def _log_stats(directory: Path) -> dict[str, float] | None:
    """The group-commit figures the server's logs wrote at shutdown (one file per worker):
    appends and fsyncs summed, latencies and group sizes the median over the workers."""
    docs = [json.loads(p.read_text()) for p in sorted(directory.glob("stats-*.json"))]
    if not docs:
        return None
    out = {k: float(sum(d[k] for d in docs)) for k in ("appends", "fsyncs")}
    for k in ("mean_group_size", "fsync_p50_s", "fsync_p99_s"):
        values = [d[k] for d in docs if d[k] is not None]
        out[k] = statistics.median(values) if values else float("nan")
    return out


def _count_asyncwal(path: Path, *, sharded: bool) -> int:
    import asyncio

    import asyncwal

    async def count() -> int:
        if sharded:
            return sum([1 async for _ in asyncwal.ShardedReader(path).replay_all()])
        async with asyncwal.open(path) as log:
            return log.last_seq

    return asyncio.run(count())


def run_cell(cell: Cell, *, seconds: float, warmup: float, workdir: Path, threads: int) -> dict[str, Any]:
    """Start the cell's server (and redis-server for the Redis store) on a fresh directory,
    warm it up, measure, stop it, count what it stored."""
    from ._redis import RedisServer

    directory = Path(tempfile.mkdtemp(prefix="http-", dir=workdir))
    script = directory / "post.lua"
    script.write_text(WRK_SCRIPT)
    redis_server = RedisServer(directory, "always") if cell.store == "redis" else None
    result: dict[str, Any] = {"server": cell.server, "store": cell.store, "workers": cell.workers}
    port = _free_port()
    env = dict(os.environ, BENCH_HTTP_STORE=cell.store, BENCH_HTTP_DIR=str(directory))
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if cell.workers > 1:
        env["BENCH_HTTP_SHARDED"] = "1"
    log = (directory / "server.log").open("wb")
    proc: subprocess.Popen[bytes] | None = None
    try:
        if redis_server is not None:
            redis_server.start()
            env["BENCH_HTTP_REDIS_PORT"] = str(redis_server.port)
        proc = subprocess.Popen(
            _server_command(cell, port), cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"
        _wait_ready(proc, url)
        if warmup > 0:
            _wrk(url + "/e", warmup, script, threads)
        # The CPU the request costs: the server's processes, and the Redis server's.
        pids = _descendants(proc.pid) + ([redis_server.pid] if redis_server and redis_server.pid else [])
        servers = _descendants(proc.pid)
        cpu, loop_cpu = _cpu_seconds(pids), _loop_cpu_seconds(servers)
        result.update(_wrk(url + "/e", seconds, script, threads))
        requests = max(1, result["requests"])
        result["cpu_us_per_request"] = (_cpu_seconds(pids) - cpu) / requests * 1e6
        result["loop_cpu_us_per_request"] = (_loop_cpu_seconds(servers) - loop_cpu) / requests * 1e6
        status = _stop(proc)
        result["log"] = _log_stats(directory)
        stored = _stored(cell, directory, redis_server.port if redis_server is not None else None)
        result["stored"] = stored
        problems = []
        if result["non2xx"] or result["socket_errors"]:
            problems.append(f"{result['non2xx']} non-2xx answers, {result['socket_errors']} socket errors")
        if stored != -1 and stored < result["requests"]:
            problems.append(f"the store holds {stored} records for {result['requests']} answered requests")
        if status not in (0, -signal.SIGTERM):
            problems.append(f"the server exited with status {status}")
        result["error"] = "; ".join(problems) or None
    except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
        result["error"] = str(exc)
    finally:
        if proc is not None:
            _stop(proc)
        if redis_server is not None:
            redis_server.stop()
        log.close()
        if result.get("error"):
            tail = (directory / "server.log").read_text(errors="replace").strip().splitlines()[-5:]
            result["server_log"] = tail
        shutil.rmtree(directory, ignore_errors=True)
    return result


# -- the run and its report --------------------------------------------------------------------


def run(
    cells: list[Cell], *, rounds: int, seconds: float, warmup: float, workdir: Path, threads: int
) -> dict[str, Any]:
    """``rounds`` rounds of every cell, the order rotated each round; the results document."""
    workdir.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "kind": "http",
        "started": timestamp(),
        "config": {
            "rounds": rounds, "seconds": seconds, "warmup": warmup, "connections": CONNECTIONS,
            "body_bytes": BODY_SIZE, "wrk_threads": threads, "cells": [c.label for c in cells],
        },
        "machine": machine_info(workdir),
        "versions": {**versions(), **_web_versions()},
        "runs": [],
    }  # fmt: skip
    t0 = time.monotonic()
    total = rounds * len(cells)
    for r in range(rounds):
        k = r % len(cells)
        for cell in cells[k:] + cells[:k]:
            os.sync()
            result = run_cell(cell, seconds=seconds, warmup=warmup, workdir=workdir, threads=threads)
            result["round"] = r
            result["load1"] = os.getloadavg()[0]
            doc["runs"].append(result)
            done = len(doc["runs"])
            if result["error"]:
                shown = f"FAILED: {result['error']}"
            else:
                shown = f"{result['rps']:>9,.0f} req/s  p99 {result['p99_s'] * 1e3:6.1f} ms"
            print(
                f"[{done:>3}/{total} {time.monotonic() - t0:5.0f}s] round {r + 1} {cell.label:<36} {shown}",
                flush=True,
            )
    doc["finished"] = timestamp()
    return doc


def _web_versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in ("fastapi", "starlette", "uvicorn", "httptools", "aiohttp", "aiosqlite", "redis", "uvloop"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    try:
        wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        out["wrk"] = (wrk.stdout + wrk.stderr).split()[1] if (wrk.stdout + wrk.stderr).split() else None
    except OSError:
        out["wrk"] = None
    return out


def _key(run: dict[str, Any]) -> tuple[str, str, int]:
    return run["server"], run["store"], run["workers"]


def summarize(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per cell: median (and range) of requests/s and p99 over the rounds, and the
    ratios to ``nothing`` (same server and workers) and to ``sqlite`` (same server, one
    worker), each taken within a round."""
    by_round: dict[tuple[int, tuple[str, str, int]], dict[str, Any]] = {
        (r["round"], _key(r)): r for r in doc["runs"] if not r.get("error")
    }
    keys = list(dict.fromkeys(_key(r) for r in doc["runs"]))
    rows = []
    for key in keys:
        server, store, workers = key
        runs = [r for r in doc["runs"] if _key(r) == key]
        good = [r for r in runs if not r.get("error")]
        row: dict[str, Any] = {"server": server, "store": store, "workers": workers, "runs": len(runs)}
        row["failed"] = len(runs) - len(good)
        if good:
            rps = [r["rps"] for r in good]
            row["rps"] = statistics.median(rps)
            row["rps_range"] = (min(rps), max(rps))
            row["p99_s"] = statistics.median(r["p99_s"] for r in good)
            row["p50_s"] = statistics.median(r["p50_s"] for r in good)
            row["cpu_us"] = statistics.median(r["cpu_us_per_request"] for r in good)
            row["loop_cpu_us"] = statistics.median(r["loop_cpu_us_per_request"] for r in good)
        for name, base in (
            ("vs_nothing", (server, "nothing", workers)),
            ("vs_sqlite", (server, "sqlite", 1)),
        ):
            ratios = [
                r["rps"] / by_round[(r["round"], base)]["rps"]
                for r in good
                if (r["round"], base) in by_round and base != key
            ]
            if ratios:
                row[name] = statistics.median(ratios)
                row[name + "_range"] = (min(ratios), max(ratios))
        if workers > 1:
            one = [
                r["rps"] / by_round[(r["round"], (server, store, 1))]["rps"]
                for r in good
                if (r["round"], (server, store, 1)) in by_round
            ]
            if one:
                row["vs_one_worker"] = statistics.median(one)
        rows.append(row)
    return rows


def _ratio(row: dict[str, Any], name: str) -> str:
    if name not in row:
        return ""
    lo, hi = row[name + "_range"]
    return f"{row[name]:.2f}x ({lo:.2f}-{hi:.2f})"


def render_markdown(doc: dict[str, Any]) -> str:
    """The results as one Markdown table, and the targets."""
    cfg = doc["config"]
    lines = [
        f"wrk, {cfg['connections']} connections, POST of {cfg['body_bytes']} B, {cfg['rounds']} interleaved "
        f"rounds of {cfg['seconds']:g} s (after {cfg['warmup']:g} s of warm-up); medians over the rounds, "
        "ratios of requests/s taken within each round (range in brackets). CPU per request: the "
        "server's processes (and redis-server's), user + system; in brackets, the servers' "
        "event-loop threads alone.",
        "",
        "| server | store | req/s | p50 | p99 | CPU per request (loop thread) | vs nothing | vs aiosqlite |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summarize(doc):
        name = {"sqlite": "aiosqlite FULL", "redis": "Redis always"}.get(row["store"], row["store"])
        if row["workers"] > 1:
            name += f", {row['workers']} workers" + (
                " (sharded)" if row["store"].startswith("asyncwal") else ""
            )
        if "rps" not in row:
            lines.append(f"| {row['server']} | {name} | failed | | | | | |")
            continue
        lines.append(
            f"| {row['server']} | {name} | {row['rps']:,.0f} | {row['p50_s'] * 1e3:.1f} ms | "
            f"{row['p99_s'] * 1e3:.1f} ms | {row['cpu_us']:,.0f} us ({row['loop_cpu_us']:,.0f} us) | "
            f"{_ratio(row, 'vs_nothing')} | "
            f"{_ratio(row, 'vs_sqlite')} |"
        )
    lines.append("")
    for row in summarize(doc):
        if row["store"] == "asyncwal-sync" and row["workers"] == 1 and "rps" in row:
            nothing, sqlite = row.get("vs_nothing"), row.get("vs_sqlite")
            lines.append(
                f"- {row['server']}: asyncwal sync is {_fmt(nothing)} of nothing (target 0.90x: "
                f"{_met(nothing, 0.9)}) and {_fmt(sqlite)} of aiosqlite (target 1.30x: {_met(sqlite, 1.3)})"
            )
        if row["workers"] > 1 and "vs_one_worker" in row:
            lines.append(
                f"- {row['server']} {row['store']}: 2 workers give {row['vs_one_worker']:.2f}x one worker"
            )
    failed = [r for r in doc["runs"] if r.get("error")]
    for r in failed:
        lines.append(f"- FAILED round {r['round'] + 1} {r['server']} {r['store']}: {r['error']}")
    return "\n".join(lines)


#: How the documentation names each store.
_NAMES: Final = {
    "nothing": "stores nothing",
    "asyncwal-dep": "looks the log up, stores nothing",
    "asyncwal-sync": "asyncwal `sync` (on disk)",
    "asyncwal-batch": "asyncwal `batch`",
    "asyncwal-none": "asyncwal `none`",
    "sqlite": "aiosqlite `FULL` (on disk)",
    "redis": "Redis `always` (on disk)",
}


def render_docs(doc: dict[str, Any]) -> str:
    """The table the benchmarks page quotes (a pure function of the results document)."""
    rows = []
    for row in summarize(doc):
        server = {"uvicorn": "FastAPI on uvicorn", "aiohttp": "aiohttp"}[row["server"]]
        if row["workers"] > 1:
            server += f", {row['workers']} workers"
        if "rps" not in row:
            rows.append(f"| {server} | {_NAMES[row['store']]} | failed | | | | |")
            continue
        lo, hi = row["rps_range"]
        rows.append(
            f"| {server} | {_NAMES[row['store']]} | {row['rps']:,.0f} ({lo:,.0f}-{hi:,.0f}) | "
            f"{row['p99_s'] * 1e3:.0f} ms | {row['loop_cpu_us']:,.0f} us | "
            f"{_docs_ratio(row, 'vs_nothing')} | {_docs_ratio(row, 'vs_sqlite')} |"
        )
    header = [
        "| server | endpoint | requests/s | p99 | loop CPU / request | ÷ nothing | ÷ aiosqlite |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    notes = []
    for server in SERVERS:
        runs = [
            r["log"]
            for r in doc["runs"]
            if r["server"] == server and r["store"] == "asyncwal-sync" and r["workers"] == 1 and r.get("log")
        ]
        if runs:
            p50 = statistics.median(r["fsync_p50_s"] for r in runs) * 1e3
            p99 = statistics.median(r["fsync_p99_s"] for r in runs) * 1e3
            group = statistics.median(r["mean_group_size"] for r in runs)
            notes.append(
                f"{'FastAPI' if server == 'uvicorn' else 'aiohttp'} `sync`: the log's fsyncs took "
                f"{p50:.1f} ms (p50) and {p99:.1f} ms (p99), {group:.1f} records each on average"
            )
    notes.insert(
        0,
        "`looks the log up`: the endpoint takes the log (FastAPI `WalDep`, aiohttp `app[WAL_KEY]`) "
        "and stores nothing; aiosqlite `FULL`: `synchronous=FULL`; Redis `always`: `appendfsync always`; "
        "ratios are to `stores nothing` and to aiosqlite with one worker, "
        "per round (median, range)",
    )
    return "\n".join(header + rows) + "\n\n" + "; ".join(notes) + "."


def _docs_ratio(row: dict[str, Any], name: str) -> str:
    if name not in row:
        return "-"
    lo, hi = row[name + "_range"]
    return f"{row[name]:.2f}x ({lo:.2f}-{hi:.2f})"


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def _met(x: float | None, target: float) -> str:
    return "n/a" if x is None else ("met" if x >= target else "NOT met")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench http", description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", default=",".join(SERVERS), help="uvicorn,aiohttp")
    p.add_argument("--stores", default=",".join(STORES), help="comma-separated, of: " + ", ".join(STORES))
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds per cell (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="wrk warm-up seconds per cell (default 1)")
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk's threads (default 1: it shares 2 cores)")
    p.add_argument("--no-scaling", action="store_true", help="skip the two-worker cells")
    p.add_argument("--dir", type=Path, default=RESULTS_DIR / "tmp", help="where the stores put their files")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="where the results JSON goes")
    p.add_argument("--no-save", action="store_true", help="print only")
    p.add_argument("--report", type=Path, help="print the report of a saved results JSON and exit")
    a = p.parse_args(argv)
    if a.report is not None:
        with a.report.open() as f:
            print(render_markdown(json.load(f)))
        return 0
    servers = [s for s in a.servers.split(",") if s]
    stores = [s for s in a.stores.split(",") if s]
    bad = [s for s in servers if s not in SERVERS] + [s for s in stores if s not in STORES]
    if bad or a.rounds < 1 or a.seconds <= 0:
        p.error(f"unknown server or store {bad}, or a bad --rounds/--seconds")
    if shutil.which("wrk") is None:
        print("error: wrk is not installed: python -m bench --setup (Debian package wrk)", file=sys.stderr)
        return 2
    cells = plan(servers, stores, not a.no_scaling)
    print(f"{len(cells)} cells x {a.rounds} rounds of {a.warmup:g}+{a.seconds:g} s", flush=True)
    doc = run(
        cells,
        rounds=a.rounds,
        seconds=a.seconds,
        warmup=a.warmup,
        workdir=a.dir.resolve(),
        threads=a.wrk_threads,
    )
    print()
    print(render_markdown(doc))
    if not a.no_save:
        path = a.out / f"{doc['started']}-http.json"
        save_document(doc, path)
        save_document(doc, a.out / "latest-http.json")
        print(f"\nresults: {path}")
    return 0 if not any(r.get("error") for r in doc["runs"]) else 1
