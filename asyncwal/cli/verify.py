"""``asyncwal verify DIR``: check every checksum of every segment and say what opening the
log would do in each recovery mode (found by running the engine's own recovery against file
operations that change nothing); read-only."""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

from .._inspect import Gap, SegmentEnd, lock_status, plan_recovery, scan_log
from .._options import Options
from ._notes import checkpoint_notes, dir_notes, not_cut
from ._output import LIVE_RETRIES, Out, frame_limit, human_size, load_rich, open_dir, plural

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .._inspect import Plan
    from ._output import Subcommands

__all__ = ("add_parser",)

#: ``verify`` draws a progress bar on its own (on a terminal) from this many bytes of segments.
PROGRESS_MIN_BYTES: Final = 16 << 20


def add_parser(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    verify = sub.add_parser(
        "verify", parents=[common], help="check every checksum; say what recovery would do; read-only"
    )
    verify.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw a progress bar on stderr (default: on a terminal, for logs over 16 MiB)",
    )
    verify.set_defaults(func=run)


@contextmanager
def _progress(args: argparse.Namespace, total: int) -> Iterator[Callable[[int], None] | None]:
    """A byte-counting progress bar on stderr, or None when it is not wanted or rich is missing."""
    show = args.progress if args.progress is not None else sys.stderr.isatty() and total >= PROGRESS_MIN_BYTES
    if not show or not load_rich("there is no progress bar"):
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("verify"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(file=sys.stderr)) as bar:
        task = bar.add_task("verify", total=total)

        def advance(n: int) -> None:
            bar.advance(task, n)

        yield advance


def _describe_plan(plan: Plan) -> str:
    if plan.error is not None:
        return f"refuses to open: {plan.error}"
    parts = []
    leftovers = [os.path.basename(p) for p in plan.unlinks if not_cut(p, plan.report)]
    if leftovers:
        parts.append("removes leftovers " + ", ".join(leftovers))
    report = plan.report
    if report is not None:
        name = os.path.basename(report.segment)
        if report.reason.startswith("gap"):
            cut = f"removes {name} and every later segment ({report.reason})"
        elif report.offset == 0 or report.segment in plan.unlinks:
            cut = f"removes {name} ({report.reason})"
        else:
            cut = f"cuts {name} from offset {report.offset:,} ({report.reason}; {report.bytes_cut:,} bytes"
            if report.records_dropped:
                cut += f", {report.records_dropped} valid-looking records after it"
            cut += ")"
            later = len(report.segments_removed)
            if later:
                cut += f" and removes {later} later segment{'s' if later > 1 else ''}"
        parts.append(cut)
        parts.append(f"the log then ends at seq {report.last_seq}")
    if not parts:
        return "changes nothing"
    return "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    log = open_dir(args)
    lock = lock_status(args.dir)
    out = Out()
    live = log.live_segments
    total = sum(s.size for s in live)
    ends: list[SegmentEnd] = []
    gaps: dict[str, Gap] = {}
    with _progress(args, total) as advance:
        retries = LIVE_RETRIES if lock.held else 0
        for item in scan_log(log, frame_limit(args), live_retries=retries, on_bytes=advance):
            if isinstance(item, SegmentEnd):
                ends.append(item)
            elif isinstance(item, Gap):
                gaps[item.segment.name] = item
    out.line(
        f"verify {args.dir}: {plural(len(live), 'segment')}, {human_size(total)}; lock {lock.describe()}"
    )
    problems: list[str] = []
    rows = []
    for end in ends:
        name = end.segment.name
        last = end.next_seq - 1
        if end.vanished:
            status = "removed while reading (truncate_before on the open log)"
        elif end.damage is not None:
            status = f"DAMAGED at offset {end.end:,}"
            problems.append(f"{name} at offset {end.end:,}: {end.damage}")
        else:
            status = "ok"
        if name in gaps:
            status = "GAP before it; " + status
            problems.append(f"{name}: {gaps[name].reason}")
        rows.append(
            [
                name,
                str(end.segment.first_seq),
                str(last) if last >= end.segment.first_seq else "-",
                f"{end.records:,}",
                status,
            ]
        )
    if rows:
        out.line()
        out.table(["segment", "first seq", "last seq", "records", "status"], rows, right=(1, 2, 3))
    meta = log.meta
    if meta is not None and meta.error is not None:
        problems.append(f"META does not validate: {meta.error}")
    records = sum(e.records for e in ends)
    frames = sum(e.frames for e in ends)
    out.line()
    if problems:
        out.line(f"checked {records:,} records in {frames:,} frames; found damage:")
        for problem in problems:
            out.line(f"  {problem}")
    else:
        out.line(f"checked {records:,} records in {frames:,} frames: every checksum matches")
    notes = dir_notes(log)
    if ends and not problems:
        notes += checkpoint_notes(log, ends[-1].next_seq - 1)
    for note in notes:
        out.line(f"note: {note}")

    max_length = frame_limit(args)
    out.line()
    if problems:
        out.line("What opening the log would do, by recovery mode:")
        plans = [
            plan_recovery(args.dir, mode, max_length) for mode in ("tolerate_tail", "point_in_time", "strict")
        ]
        for plan in plans:
            label = f"{plan.mode} (default)" if plan.mode == Options().recovery else plan.mode
            out.line(f"  {label:<24}{_describe_plan(plan)}")
        if lock.held:
            out.line(
                f"The log is open ({lock.describe()}): damage in a live log is real, not a write in progress."
            )
        fixable = [p for p in plans if p.error is None and p.mode != "strict"]
        if fixable:
            mode = fixable[0].mode
            flag = "" if mode == Options().recovery else f" --mode {mode}"
            out.line(f"To cut it, keeping a copy of what is cut: asyncwal repair {args.dir}{flag}")
        return 1
    if log.leftovers or log.temp_files:
        plan = plan_recovery(args.dir, Options().recovery, max_length)
        out.line(f"Opening the log (any recovery mode) {_describe_plan(plan)}.")
    else:
        out.line("Opening the log would change nothing.")
    return 0
