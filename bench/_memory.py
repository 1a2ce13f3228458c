"""``python -m bench memory``: is asyncwal's memory flat, and does ``max_pending_bytes`` hold?

1. **RSS flatness**, per mode, each in a fresh child: W appenders (default 256) append 128 B
   records, each a bytes object of its own, until 10 million are acknowledged; the resident
   set (``/proc/self/statm``) and ``stats().queued_bytes`` are sampled every 1% of the
   appends. Samples from the first 10% are the run-in (buffers, the executor thread,
   allocator arenas); over the rest, ``(max - min) / min`` must stay within 10%. In
   ``none`` mode the queue may fill towards ``max_pending_bytes`` (64 MiB by default), and
   RSS with it, by design: the queued column tells that apart from a leak.
2. **Backpressure**: ``sync_mode="none"`` with ``max_pending_bytes`` = 4 MiB and 64
   appenders of 16 KiB records, which outrun the writer (a memory append costs about a
   microsecond, a 16 KiB write into the page cache several, and the disk behind it is
   slower still). ``stats().queued_bytes`` is sampled every millisecond; its maximum must not
   exceed ``max_pending_bytes`` plus one record (a record is admitted while the queue is at
   or under the mark), and RSS growth must stay within a few times the mark.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ("run_memory",)

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / (1024 * 1024)


async def _flatness(path: str, mode: str, appends: int, workers: int, size: int) -> dict[str, Any]:
    import asyncwal

    # Every record gets a payload object of its own (a slice of a random buffer), as in an
    # application: a queued record then holds its payload in memory until it is written.
    pool = os.urandom(65536 + size)
    span = 65536
    step = max(1, appends // 100)
    samples: list[tuple[int, float, float, float]] = []  # (appends done, seconds, RSS MiB, queued MiB)
    log = await asyncwal.open(path, sync_mode=mode)
    issued = [0]
    done = [0]
    t0 = time.perf_counter()
    samples.append((0, 0.0, _rss_mib(), 0.0))

    def queued_mib() -> float:
        q = getattr(log.stats(), "queued_bytes", 0)
        return q / (1024 * 1024) if isinstance(q, int) else 0.0

    async def worker() -> None:
        while issued[0] < appends:
            issued[0] += 1
            off = issued[0] % span
            await log.append(pool[off : off + size])
            done[0] += 1
            if done[0] % step == 0:
                samples.append((done[0], time.perf_counter() - t0, _rss_mib(), queued_mib()))

    try:
        await asyncio.gather(*(worker() for _ in range(workers)))
        elapsed = time.perf_counter() - t0
        stats = log.stats()
    finally:
        await log.close()
    steady = [s for s in samples if s[0] >= appends // 10]
    lo = min(s[2] for s in steady)
    hi = max(s[2] for s in steady)
    # The same without the records queued in the log (bounded by max_pending_bytes): what is
    # left is what could be a leak.
    lo_x = min(s[2] - s[3] for s in steady)
    hi_x = max(s[2] - s[3] for s in steady)
    return {
        "test": "flatness",
        "mode": mode,
        "appends": done[0],
        "workers": workers,
        "size": size,
        "seconds": elapsed,
        "appends_per_s": done[0] / elapsed,
        "rss_start_mib": samples[0][2],
        "rss_at_10pct_mib": steady[0][2],
        "rss_min_mib": lo,
        "rss_max_mib": hi,
        "rss_end_mib": samples[-1][2],
        "spread": (hi - lo) / lo,
        "flat": (hi - lo) / lo <= 0.10,
        "queued_max_mib": max(s[3] for s in samples),
        "spread_without_queue": (hi_x - lo_x) / lo_x,
        "fsyncs": getattr(stats, "fsyncs", None),
        "samples": samples,
    }


async def _pending(path: str, seconds: float, workers: int, size: int, mark: int) -> dict[str, Any]:
    import asyncwal

    data = os.urandom(size)
    log = await asyncwal.open(path, sync_mode="none", max_pending_bytes=mark)
    rss0 = _rss_mib()
    t_end = time.perf_counter() + seconds
    max_queued = 0
    max_rss = rss0
    count = [0]
    limit = (4 << 30) // size  # at most 4 GiB through the log

    async def worker() -> None:
        while time.perf_counter() < t_end and count[0] < limit:
            count[0] += 1
            await log.append(data)

    async def sampler() -> None:
        nonlocal max_queued, max_rss
        while time.perf_counter() < t_end and count[0] < limit:
            queued = getattr(log.stats(), "queued_bytes", None)
            if isinstance(queued, int):
                max_queued = max(max_queued, queued)
            max_rss = max(max_rss, _rss_mib())
            await asyncio.sleep(0.001)

    t0 = time.perf_counter()
    try:
        await asyncio.gather(sampler(), *(worker() for _ in range(workers)))
        elapsed = time.perf_counter() - t0
    finally:
        await log.close()
    growth = max_rss - rss0
    return {
        "test": "max_pending_bytes",
        "mode": "none",
        "max_pending_bytes": mark,
        "workers": workers,
        "size": size,
        "seconds": elapsed,
        "appends": count[0],
        "mb_per_s": count[0] * size / elapsed / 1e6,
        "max_queued_bytes": max_queued,
        "rss_start_mib": rss0,
        "rss_max_mib": max_rss,
        "rss_growth_mib": growth,
        "holds": max_queued <= mark + size,
        "rss_bounded": growth <= 4 * mark / (1 << 20) + 32,
    }


def child_main(argv: list[str]) -> int:
    """``python -m bench._memory flatness|pending PATH LOOP OUT JSON-ARGS``."""
    test, path, loop, out, raw = argv
    args = json.loads(raw)
    coro = _flatness(path, **args) if test == "flatness" else _pending(path, **args)
    if loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
            res = r.run(coro)
    else:
        with asyncio.Runner() as r:
            res = r.run(coro)
    with open(out, "w") as f:
        json.dump(res, f)
    return 0


def _child(
    test: str, path: Path, loop: str, args: dict[str, Any], env: dict[str, str], cwd: Path
) -> dict[str, Any]:
    out = path.parent / f"{path.name}.json"
    shutil.rmtree(path, ignore_errors=True)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bench._memory", test, str(path), loop, str(out), json.dumps(args)],
            env=env, cwd=cwd, capture_output=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"memory child failed ({proc.returncode}): {proc.stderr.decode()[-1500:]}")
        with out.open() as f:
            data: dict[str, Any] = json.load(f)
        return data
    finally:
        shutil.rmtree(path, ignore_errors=True)
        out.unlink(missing_ok=True)


def run_memory(
    *, modes: list[str], appends: int, workers: int, loop: str, workdir: Path, env: dict[str, str], cwd: Path,
    pending_seconds: float = 5.0,
) -> dict[str, Any]:  # fmt: skip
    """Run both checks; return the results document (``kind: memory``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for mode in modes:
        os.sync()
        args = {"mode": mode, "appends": appends, "workers": workers, "size": 128}
        r = _child("flatness", workdir / f"mem-{mode}", loop, args, env, cwd)
        r["loop"] = loop
        rows.append(r)
        print(
            f"memory {mode:<5} {loop}: {r['appends']:,} appends in {r['seconds']:.1f} s "
            f"({r['appends_per_s']:,.0f}/s); RSS {r['rss_start_mib']:.0f} -> "
            f"{r['rss_at_10pct_mib']:.0f} at 10% "
            f"-> {r['rss_end_mib']:.0f} MiB; spread after 10%: {r['spread'] * 100:.1f}% "
            f"({'flat' if r['flat'] else 'NOT FLAT'}); queued at most {r['queued_max_mib']:.0f} MiB, "
            f"spread of RSS minus queued bytes: {r['spread_without_queue'] * 100:.1f}%",
            flush=True,
        )
    os.sync()
    pargs = {"seconds": pending_seconds, "workers": 64, "size": 16384, "mark": 4 << 20}
    p = _child("pending", workdir / "mem-pending", loop, pargs, env, cwd)
    p["loop"] = loop
    rows.append(p)
    print(
        f"max_pending_bytes={p['max_pending_bytes']:,}: {p['appends']:,} appends of 16 KiB in "
        f"{p['seconds']:.1f} s ({p['mb_per_s']:,.0f} MB/s); max queued {p['max_queued_bytes']:,} bytes "
        f"({'holds' if p['holds'] else 'EXCEEDED'}); RSS +{p['rss_growth_mib']:.0f} MiB "
        f"({'bounded' if p['rss_bounded'] else 'NOT BOUNDED'})",
        flush=True,
    )
    return {"kind": "memory", "rows": rows}


def render_memory_markdown(doc: dict[str, Any]) -> str:
    out = [
        "| mode | loop | appends | appends/s | RSS start | RSS at 10% | RSS min..max after 10% "
        "| RSS end | spread | flat | queued max | spread of RSS - queued |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    pend: list[dict[str, Any]] = []
    for r in doc.get("rows", []):
        if r.get("test") != "flatness":
            pend.append(r)
            continue
        out.append(
            f"| {r['mode']} | {r['loop']} | {r['appends']:,} | {r['appends_per_s']:,.0f} | "
            f"{r['rss_start_mib']:.0f} MiB | {r['rss_at_10pct_mib']:.0f} MiB | "
            f"{r['rss_min_mib']:.0f}..{r['rss_max_mib']:.0f} MiB | {r['rss_end_mib']:.0f} MiB | "
            f"{r['spread'] * 100:.1f}% | {'yes' if r['flat'] else 'NO'} | "
            f"{r.get('queued_max_mib', 0):.0f} MiB | "
            f"{r.get('spread_without_queue', 0) * 100:.1f}% |"
        )
    for p in pend:
        out.append("")
        out.append(
            "| max_pending_bytes | appenders x record | appends | MB/s | max queued bytes | holds "
            "| RSS growth |"
        )
        out.append("|---:|---|---:|---:|---:|---|---:|")
        out.append(
            f"| {p['max_pending_bytes']:,} | {p['workers']} x {p['size']} B | {p['appends']:,} | "
            f"{p['mb_per_s']:,.0f} | {p['max_queued_bytes']:,} | {'yes' if p['holds'] else 'NO'} | "
            f"{p['rss_growth_mib']:.0f} MiB |"
        )
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    raise SystemExit(child_main(sys.argv[1:]))
