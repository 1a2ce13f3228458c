"""``asyncwal bench [DIR]``: the three sync modes measured on this disk, with a temporary log.

Each cell is measured by :mod:`asyncwal._measure`, the same core as the project's full
harness (``python -m bench``, from a checkout): warm-up, then a measured window of appends
completed inside it, counters read at the window's edges.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._fileops import OsFileOps
from .._measure import measure_asyncwal
from .._options import Durability, Options

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

    from ._output import Subcommands

__all__ = ("BenchRow", "add_parser", "bench_cell")


def add_parser(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    bench = sub.add_parser("bench", help="measure the three sync modes on this disk")
    bench.add_argument("dir", nargs="?", help="directory on the disk to measure (default: the temp dir)")
    bench.add_argument(
        "--seconds", type=float, default=1.5, help="measuring time per cell (default %(default)s)"
    )
    bench.add_argument(
        "--workers", default="1,16,256", help="concurrent appenders, comma-separated (default %(default)s)"
    )
    bench.add_argument("--size", type=int, default=128, help="record size in bytes (default %(default)s)")
    bench.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop: auto is uvloop when installed, else asyncio (default %(default)s)",
    )
    bench.set_defaults(func=run)


_PROMISE = {"sync": "DISK", "batch": "OS", "none": "MEMORY"}


@dataclass(frozen=True)
class BenchRow:
    mode: str
    workers: int
    appends_per_s: float
    p50_us: float
    p99_us: float
    fsyncs_per_s: float
    records_per_fsync: float


async def bench_cell(directory: str, mode: str, workers: int, seconds: float, size: int) -> BenchRow:
    """Measure ``workers`` coroutines appending ``size``-byte records to a new log in
    ``directory`` (removed afterwards) for ``seconds``, after a short warm-up."""
    path = tempfile.mkdtemp(prefix=f"bench-{mode}-", dir=directory)
    try:
        figures, _ = await measure_asyncwal(
            os.path.join(path, "wal"),
            mode,
            workers=workers,
            size=size,
            seconds=seconds,
            warmup=min(0.2, seconds / 4),
        )
    finally:
        shutil.rmtree(path, ignore_errors=True)
    lat = figures.latency
    return BenchRow(
        mode,
        workers,
        figures.appends_per_s,
        lat.p50_us if lat is not None else 0.0,
        lat.p99_us if lat is not None else 0.0,
        figures.fsyncs_per_s or 0.0,
        figures.records_per_fsync or 0.0,
    )


def _latency(us: float) -> str:
    """A latency in three significant figures at most: 1.6 us, 324 us, 1.28 ms."""
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} us" if us >= 100 else f"{us:.1f} us"


def _table(rows: Sequence[BenchRow], loop_name: str, size: int, directory: str) -> str:
    lines = [
        f"asyncwal bench: {size}-byte records, {loop_name} loop, files in {directory} "
        f"(default sync_mode: {Options().sync_mode!r})",
        "",
        "| sync_mode | returns at | W | appends/s | p50 | p99 | fsyncs/s | records/fsync |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        # none mode syncs only at rotation: a window may see no fsync at all.
        per_fsync = f"{r.records_per_fsync:,.1f}" if r.records_per_fsync else "-"
        lines.append(
            f"| {r.mode} | {_PROMISE[r.mode]} | {r.workers} | {r.appends_per_s:,.0f} | "
            f"{_latency(r.p50_us)} | {_latency(r.p99_us)} | {r.fsyncs_per_s:,.0f} | {per_fsync} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    directory = args.dir or tempfile.gettempdir()
    OsFileOps().makedirs(directory)  # the disk to measure: always the real one
    loop_name = "asyncio"
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    if args.loop == "uvloop" or (args.loop == "auto" and _have_uvloop()):
        import uvloop

        loop_name = "uvloop"
        loop_factory = uvloop.new_event_loop
    workers = [int(w) for w in args.workers.split(",")]
    rows: list[BenchRow] = []
    for mode in ("sync", "batch", "none"):
        for w in workers:
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                row = runner.run(bench_cell(directory, mode, w, args.seconds, args.size))
            rows.append(row)
            print(
                f"  measured {mode:5} W={w:<4} {row.appends_per_s:>12,.0f} appends/s",
                file=sys.stderr,
                flush=True,
            )
    print(_table(rows, loop_name, args.size, directory))
    print()
    print(
        f"returns at: when await append() returns. {Durability.DISK.name} = covered by a completed "
        f"fdatasync (or RWF_DSYNC write): survives a power loss; {Durability.OS.name} = handed to the "
        f"kernel: survives a crash of the process; {Durability.MEMORY.name} = in the log's memory "
        "until written."
    )
    return 0


def _have_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True
