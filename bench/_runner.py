"""The parent side: plan the cells, run each in a fresh interpreter, collect the results.

Cells run one after another (never two at once: they would share 2 vCPUs and one disk),
interleaved by (size, W) so that the subjects compared in one table were measured minutes,
not a quarter of an hour, apart. Before each cell the parent calls ``os.sync()`` so that
no cell pays for the previous one's dirty pages.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._cell import run_cell
from ._harness import CellResult, CellSpec
from ._subjects import SUBJECTS

__all__ = (
    "BENCH_DIR",
    "REPO_ROOT",
    "RESULTS_DIR",
    "machine_info",
    "plan_cells",
    "run_child",
    "run_matrix",
    "save_document",
    "versions",
)

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"


def plan_cells(
    subjects: list[str],
    loops: list[str],
    workers: list[int],
    sizes: list[int],
    seconds: float,
    warmup: float,
    workdir: Path,
    repeat: int = 1,
) -> list[CellSpec]:
    """Every (size, W, subject, loop) cell, in run order; with ``repeat`` > 1 each
    (size, W) block is run that many times over, in rotation, before the next block."""
    cells: list[CellSpec] = []
    n = 0
    for size in sizes:
        for w in workers:
            for _ in range(repeat):
                for name in subjects:
                    info = SUBJECTS[name]
                    for loop in loops if info.has_loop else [None]:
                        n += 1
                        cells.append(
                            CellSpec(
                                subject=name,
                                loop=loop,
                                workers=w,
                                size=size,
                                seconds=seconds,
                                warmup=warmup,
                                workdir=str(workdir / f"cell{n:04d}"),
                            )
                        )
    return cells


def merge_repeats(results: list[CellResult]) -> list[CellResult]:
    """One result per (subject, loop, W, size): the repetition with the median appends/s
    (the upper one of an even count), carrying every repetition's rate in ``samples``."""
    groups: dict[tuple[str, str | None, int, int], list[CellResult]] = {}
    for r in results:
        groups.setdefault((r.subject, r.loop, r.workers, r.size), []).append(r)
    merged: list[CellResult] = []
    for runs in groups.values():
        good = sorted((r for r in runs if r.ok), key=lambda r: r.appends_per_s)
        pick = good[len(good) // 2] if good else runs[-1]
        pick.samples = [r.appends_per_s for r in runs if r.ok]
        merged.append(pick)
    return merged


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    return env


def run_child(spec: CellSpec, timeout: float | None = None) -> CellResult:
    """Run one cell in a fresh interpreter (``python -m bench._child``)."""
    if timeout is None:
        timeout = spec.warmup + spec.seconds + 180.0
    with tempfile.TemporaryDirectory(prefix="bench-result-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "bench._child", json.dumps(_spec_json(spec)), str(out)]
        try:
            proc = subprocess.run(
                cmd, cwd=REPO_ROOT, env=_child_env(), capture_output=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            r = CellResult(subject=spec.subject, loop=spec.loop, workers=spec.workers, size=spec.size)
            r.error = f"child timed out after {timeout:.0f} s"
            return r
        if out.exists():
            with out.open() as f:
                return CellResult.from_json(json.load(f))
        r = CellResult(subject=spec.subject, loop=spec.loop, workers=spec.workers, size=spec.size)
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-5:]
        r.error = f"child exited {proc.returncode}: " + " | ".join(tail)
        return r


def _spec_json(spec: CellSpec) -> dict[str, Any]:
    return {
        "subject": spec.subject,
        "loop": spec.loop,
        "workers": spec.workers,
        "size": spec.size,
        "seconds": spec.seconds,
        "warmup": spec.warmup,
        "workdir": spec.workdir,
    }


def _short(r: CellResult) -> str:
    if r.skipped:
        return "skipped: " + r.skipped
    if r.error:
        return "ERROR: " + r.error
    p99 = f" p99 {r.p99_us:,.0f} us" if r.p99_us is not None else ""
    return f"{r.appends_per_s:>12,.0f}/s{p99}"


def run_matrix(
    cells: list[CellSpec],
    *,
    config: dict[str, Any],
    out_path: Path | None,
    in_process: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the cells; return the results document (saved after every cell if ``out_path``)."""
    doc: dict[str, Any] = {
        "kind": "matrix",
        "started_utc": _utc_now(),
        "finished_utc": None,
        "argv": sys.argv,
        "config": config,
        "machine": machine_info(Path(cells[0].workdir).parent if cells else RESULTS_DIR),
        "versions": versions(),
        "cells": [],
    }
    t_start = time.monotonic()
    raw: list[CellResult] = []
    for i, spec in enumerate(cells, 1):
        os.sync()
        load1 = os.getloadavg()[0]
        result = run_cell(spec) if in_process else run_child(spec)
        result.load1 = load1
        raw.append(result)
        doc["cells"] = [r.to_json() for r in merge_repeats(raw)]
        if progress:
            elapsed = time.monotonic() - t_start
            print(f"[{i:>3}/{len(cells)} {elapsed:6.0f}s] {spec.label():<40} {_short(result)}", flush=True)
        if out_path is not None:
            save_document(doc, out_path)
    doc["finished_utc"] = _utc_now()
    if out_path is not None:
        save_document(doc, out_path)
    return doc


def save_document(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def timestamp() -> str:
    """A UTC timestamp usable in a file name."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


# -- the machine and the versions ----------------------------------------------------------------


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _mount_of(path: Path) -> dict[str, str]:
    best: dict[str, str] = {}
    target = str(path.resolve())
    for line in _read("/proc/mounts").splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        mnt = parts[1]
        if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(
            best.get("mount", "")
        ):
            best = {"device": parts[0], "mount": mnt, "fstype": parts[2], "options": parts[3]}
    dev = best.get("device", "")
    m = re.match(r"/dev/([a-z]+)", dev)
    if m:
        block = m.group(1)
        best["write_cache"] = _read(f"/sys/block/{block}/queue/write_cache").strip()
        best["rotational"] = _read(f"/sys/block/{block}/queue/rotational").strip()
        best["scheduler"] = _read(f"/sys/block/{block}/queue/scheduler").strip()
    return best


def _os_name() -> str:
    m = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', _read("/etc/os-release"), re.M)
    return m.group(1) if m else platform.platform()


def machine_info(datadir: Path) -> dict[str, Any]:
    cpuinfo = _read("/proc/cpuinfo")
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    datadir.mkdir(parents=True, exist_ok=True)
    return {
        "cpu_model": model.group(1).strip() if model else platform.processor(),
        "cpus": os.cpu_count(),
        "mem_gib": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None,
        "uname": " ".join(platform.uname()),
        "os": _os_name(),
        "data_dir": str(datadir),
        "filesystem": _mount_of(datadir),
    }


def _dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, Any]:
    import sqlite3

    from ._redis import redis_version

    out: dict[str, Any] = {
        "python": platform.python_version(),
        "uvloop": _dist_version("uvloop"),
        "aiofiles": _dist_version("aiofiles"),
        "aiosqlite": _dist_version("aiosqlite"),
        "sqlite": sqlite3.sqlite_version,
        "redis-py": _dist_version("redis"),
        "redis-server": redis_version(),
    }
    try:
        import asyncwal

        out["asyncwal"] = getattr(asyncwal, "__version__", "?")
    except ImportError:
        out["asyncwal"] = None
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "asyncwal"],
            capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip
        out["git_commit"] = commit + ("+dirty(asyncwal/)" if dirty else "")
    except OSError:
        out["git_commit"] = None
    return out
