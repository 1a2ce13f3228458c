"""``python -m bench profile``: where the event-loop thread's time goes, per mode.

Each mode runs in a child process of its own: ``W`` coroutines append 128 B records in a loop
(no clock reads, unlike the harness), and after a warm-up pyinstrument samples the event-loop
thread, which is the bottleneck from W = 16 on (the I/O thread spends its time in the
kernel). pyinstrument's hooks slow the loop thread 1.5-3x, mostly per Python call, so read
the shares, not the absolute times. The call tree of each mode is printed and written to
``bench/results/profile/``. Time in uvloop's C code (epoll, task steps, future callbacks)
shows as ``[self]`` of ``Runner.run``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ("child_main", "run_profile")


def _thread_ticks() -> dict[int, tuple[int, int]]:
    """User and system clock ticks of each thread of this process (Linux; else empty)."""
    out: dict[int, tuple[int, int]] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:  # the thread ended
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(tid)] = (int(fields[11]), int(fields[12]))
    return out


def _cpu_shares(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], loop_tid: int, elapsed: float
) -> dict[str, float]:
    """Share of ``elapsed`` each side spent on a CPU: the loop thread, and every other thread
    (the log's I/O thread, here), in user and system mode."""
    hz = os.sysconf("SC_CLK_TCK")
    shares = {"loop_user": 0.0, "loop_sys": 0.0, "other_user": 0.0, "other_sys": 0.0}
    for tid, (user, system) in after.items():
        user0, system0 = before.get(tid, (0, 0))
        side = "loop" if tid == loop_tid else "other"
        shares[f"{side}_user"] += (user - user0) / hz / elapsed
        shares[f"{side}_sys"] += (system - system0) / hz / elapsed
    return shares


async def _workload(
    mode: str, workers: int, size: int, seconds: float, warmup: float, workdir: str
) -> dict[str, Any]:
    from pyinstrument import Profiler

    import asyncwal

    data = b"x" * size
    os.makedirs(workdir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="asyncwal-profile-", dir=workdir) as tmp:
        log = await asyncwal.open(os.path.join(tmp, "wal"), sync_mode=mode)
        count = 0
        stop = False

        async def worker() -> None:
            nonlocal count
            append = log.append
            while not stop:
                await append(data)
                count += 1

        tasks = [asyncio.create_task(worker()) for _ in range(workers)]
        await asyncio.sleep(warmup)

        async def window(profiler: Profiler | None) -> tuple[float, float, dict[str, float]]:
            """Appends/s, the loop thread's share of time on CPU, and every thread's, over
            ``seconds``."""
            before, ticks = count, _thread_ticks()
            start, cpu = time.perf_counter(), time.thread_time()
            if profiler is not None:
                profiler.start()
            await asyncio.sleep(seconds)
            if profiler is not None:
                profiler.stop()
            elapsed = time.perf_counter() - start
            busy = (time.thread_time() - cpu) / elapsed
            shares = _cpu_shares(ticks, _thread_ticks(), threading.get_native_id(), elapsed)
            return (count - before) / elapsed, busy, shares

        plain_rate, plain_busy, cpu = await window(None)
        profiler = Profiler(interval=0.001, async_mode="disabled")
        rate, busy, _ = await window(profiler)
        stop = True
        await asyncio.gather(*tasks)
        stats = log.stats()
        await log.close()
    tree = profiler.output_text(unicode=False, color=False, short_mode=True)
    return {
        "mode": mode,
        "workers": workers,
        "size": size,
        "appends_per_s": rate,
        "loop_busy": busy,
        "plain_appends_per_s": plain_rate,
        "plain_loop_busy": plain_busy,
        "cpu": cpu,
        "mean_group_size": stats.mean_group_size,
        "tree": tree,
    }


def child_main(argv: list[str]) -> int:
    """``python -m bench._profile MODE W SIZE SECONDS WARMUP LOOP WORKDIR OUT``: one mode, as
    JSON to OUT."""
    mode, workers, size, seconds, warmup, loop, workdir, out = argv
    coro = _workload(mode, int(workers), int(size), float(seconds), float(warmup), workdir)
    if loop == "uvloop":
        import uvloop

        doc = uvloop.run(coro)
    else:
        doc = asyncio.run(coro)
    doc["loop"] = loop
    Path(out).write_text(json.dumps(doc))
    return 0


def _tree_lines(tree: str) -> list[str]:
    """The call-tree lines of a pyinstrument short-mode report, without its frame."""
    lines = (ln[3:].rstrip() for ln in tree.splitlines() if ln.startswith(".  "))
    return [ln for ln in lines if ln and not ln.startswith("Profile at")]


def run_profile(
    modes: list[str],
    workers: int,
    size: int,
    seconds: float,
    loop: str,
    out_dir: Path,
    stamp: str,
    env: dict[str, str],
    workdir: Path,
    warmup: float = 0.5,
) -> list[dict[str, Any]]:
    """Profile each mode in a child process; write one report per mode; return the summaries."""
    out_dir.mkdir(parents=True, exist_ok=True)
    docs = []
    for mode in modes:
        with tempfile.TemporaryDirectory() as tmp:
            result = Path(tmp) / "profile.json"
            args = (mode, workers, size, seconds, warmup, loop, workdir, result)
            cmd = [sys.executable, "-m", "bench._profile", *map(str, args)]
            subprocess.run(cmd, check=True, env=env, cwd=Path(__file__).resolve().parents[1])
            doc = json.loads(result.read_text())
        path = out_dir / f"{stamp}-{mode}-W{workers}-{loop}.txt"
        doc["summary"] = (
            f"{mode} W={workers} {size} B {loop}: {doc['plain_appends_per_s']:,.0f} appends/s "
            f"(loop thread on CPU {doc['plain_loop_busy']:.0%}); under the profiler "
            f"{doc['appends_per_s']:,.0f} appends/s ({doc['loop_busy']:.0%}); "
            f"mean group {doc['mean_group_size']:.0f} records"
        )
        if any(doc["cpu"].values()):
            c = doc["cpu"]
            doc["summary"] += (
                f"\n   on CPU without the profiler: loop thread {c['loop_user']:.0%} user + "
                f"{c['loop_sys']:.0%} system, other threads (the I/O thread) {c['other_user']:.0%} "
                f"user + {c['other_sys']:.0%} system"
            )
        header = f"asyncwal {doc['summary']}\n\n"
        doc["lines"] = _tree_lines(doc["tree"])
        path.write_text(header + "\n".join(doc["lines"]) + "\n")
        doc["path"] = str(path)
        docs.append(doc)
    return docs


if __name__ == "__main__":
    raise SystemExit(child_main(sys.argv[1:]))
