"""``python -m bench replay``: how fast asyncwal reads its log back.

For each record size: one child process writes N records (``sync_mode="none"``, 64
appenders, then ``close()``, which fsyncs); the parent calls ``os.sync()`` (and with
``--cold`` drops the page cache, which needs root); a second, fresh child opens the log
(recovery, timed apart) and iterates ``async for rec in log.replay(start=1)``, counting
records and payload bytes. The same child then reads the segment files with plain
``os.read`` of 1 MiB as the ceiling of what any reader could do from the same cache state
(a cold cache is only cold for the first reader: the raw read comes second).

Targets: >= 1M records/s with 128 B records, >= 500 MB/s with 16 KiB records.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ._harness import proc_peak_rss_mib

__all__ = ("DEFAULT_RECORDS", "run_replay")

#: Records written per size unless told otherwise: ~256 MB of 128 B payloads, 1 GiB of 16 KiB ones.
DEFAULT_RECORDS = {128: 2_000_000, 16384: 65_536}


async def _write(path: str, size: int, count: int, workers: int = 64) -> None:
    import asyncwal

    data = os.urandom(size)
    log = await asyncwal.open(path, sync_mode="none")
    remaining = [count]

    async def worker() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            await log.append(data)

    try:
        await asyncio.gather(*(worker() for _ in range(workers)))
    finally:
        await log.close()


async def _read(path: str) -> dict[str, Any]:
    import asyncwal

    t0 = time.perf_counter()
    log = await asyncwal.open(path, sync_mode="none")
    t_open = time.perf_counter() - t0
    try:
        n = 0
        nbytes = 0
        t1 = time.perf_counter()
        async for rec in log.replay(start=1):
            n += 1
            nbytes += len(rec.data)
        t_replay = time.perf_counter() - t1
    finally:
        await log.close()
    return {"open_s": t_open, "replay_s": t_replay, "records": n, "bytes": nbytes}


def _raw_read(path: str) -> dict[str, Any]:
    files = sorted(p for p in Path(path).iterdir() if p.is_file())
    total = 0
    t0 = time.perf_counter()
    for p in files:
        fd = os.open(p, os.O_RDONLY)
        try:
            while chunk := os.read(fd, 1 << 20):
                total += len(chunk)
        finally:
            os.close(fd)
    return {"raw_read_s": time.perf_counter() - t0, "raw_read_bytes": total}


def _run_loop(loop: str, coro: Any) -> Any:
    if loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
            return r.run(coro)
    with asyncio.Runner() as r:
        return r.run(coro)


def child_main(argv: list[str]) -> int:
    """``python -m bench._replay write|read PATH SIZE COUNT LOOP OUT``."""
    action, path, size, count, loop, out = argv
    if action == "write":
        _run_loop(loop, _write(path, int(size), int(count)))
        res: dict[str, Any] = {}
    else:
        res = _run_loop(loop, _read(path))
        res["rss_peak_mib"] = proc_peak_rss_mib()
        res.update(_raw_read(path))
    with open(out, "w") as f:
        json.dump(res, f)
    return 0


def _child(args: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    out = Path(args[-1])
    proc = subprocess.run(
        [sys.executable, "-m", "bench._replay", *args], env=env, cwd=cwd, capture_output=True, check=False
    )
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"replay child failed ({proc.returncode}): {proc.stderr.decode()[-1500:]}")
    with out.open() as f:
        data: dict[str, Any] = json.load(f)
    out.unlink()
    return data


def _drop_caches() -> bool:
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def run_replay(
    *,
    sizes: list[int],
    loops: list[str],
    workdir: Path,
    records: int | None,
    cold: bool,
    env: dict[str, str],
    cwd: Path,
) -> dict[str, Any]:
    """Run the replay sub-benchmark; return its results document (``kind: replay``)."""
    rows: list[dict[str, Any]] = []
    for size in sizes:
        count = records if records is not None else DEFAULT_RECORDS.get(size, max(1, (256 << 20) // size))
        path = workdir / f"replay-{size}"
        shutil.rmtree(path, ignore_errors=True)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            t0 = time.perf_counter()
            _child(["write", str(path), str(size), str(count), loops[0], str(workdir / "w.json")], env, cwd)
            write_s = time.perf_counter() - t0
            disk = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
            for loop in loops:
                os.sync()
                dropped = _drop_caches() if cold else False
                res = _child(
                    ["read", str(path), str(size), str(count), loop, str(workdir / "r.json")], env, cwd
                )
                row = {
                    "size": size,
                    "loop": loop,
                    "records_written": count,
                    "write_s": write_s,
                    "segment_bytes_on_disk": disk,
                    "cache": "cold" if dropped else "warm",
                    **res,
                    "records_per_s": res["records"] / res["replay_s"] if res["replay_s"] else 0.0,
                    "mb_per_s": res["bytes"] / res["replay_s"] / 1e6 if res["replay_s"] else 0.0,
                    "raw_read_mb_per_s": res["raw_read_bytes"] / res["raw_read_s"] / 1e6
                    if res["raw_read_s"]
                    else 0.0,
                    "complete": res["records"] == count,
                }
                rows.append(row)
                print(
                    f"replay {size:>6} B {loop:<8} {row['cache']}: {row['records_per_s']:>12,.0f} records/s "
                    f"{row['mb_per_s']:8,.0f} MB/s (raw os.read {row['raw_read_mb_per_s']:,.0f} MB/s), "
                    f"open {res['open_s'] * 1000:.0f} ms, {res['records']:,}/{count:,} records, "
                    f"RSS {res['rss_peak_mib']:.0f} MiB",
                    flush=True,
                )
        finally:
            shutil.rmtree(path, ignore_errors=True)
    return {"kind": "replay", "rows": rows}


def render_replay_markdown(doc: dict[str, Any]) -> str:
    head = (
        "| record | loop | cache | records | records/s | MB/s | raw os.read MB/s | open (recovery) "
        "| peak RSS MiB |"
    )
    out = [head, "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in doc.get("rows", []):
        out.append(
            f"| {r['size']} B | {r['loop']} | {r['cache']} | {r['records']:,} | {r['records_per_s']:,.0f} | "
            f"{r['mb_per_s']:,.0f} | {r['raw_read_mb_per_s']:,.0f} | {r['open_s'] * 1000:.0f} ms | "
            f"{r['rss_peak_mib']:.0f} |"
        )
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    raise SystemExit(child_main(sys.argv[1:]))
