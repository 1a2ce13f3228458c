"""``asyncwal verify DIR``: check every checksum of every segment and say what opening the
log would do in each recovery mode; read-only. The segments are read once, by recovery's own
scan, and each mode's plan comes from recovery's own (pure) decision, so what ``verify``
says is what ``open()`` does."""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

from .._inspect import lock_status, read_log
from .._options import Options
from .._recovery import Cause, decide
from ._notes import checkpoint_notes, dir_notes
from ._output import LIVE_RETRIES, Out, frame_limit, human_size, load_rich, plural

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .._recovery import LogScan, Plan, SegmentScan
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
    """What a plan does, as one line for people."""
    if plan.error is not None:
        return f"refuses to open: {plan.error}"
    parts = []
    leftovers = [os.path.basename(p) for p in plan.remove]
    if leftovers:
        parts.append("removes leftovers " + ", ".join(leftovers))
    report = plan.report
    if report is None:
        if plan.meta is not None:
            parts.append("gives the log an id in META")
        return "; ".join(parts) if parts else "changes nothing"
    name = os.path.basename(report.segment)
    later = len(report.segments_removed)
    more = f" and removes {later} later segment{'s' if later > 1 else ''}" if later else ""
    if plan.cause is Cause.GAP:
        parts.append(f"removes {name} and every later segment ({report.reason})")
    elif plan.cause is Cause.DAMAGE and plan.truncate is None:
        parts.append(f"removes {name} ({report.reason}){more}")
    elif plan.cause is Cause.DAMAGE:
        cut = f"cuts {name} from offset {report.offset:,} ({report.reason}; {report.bytes_cut:,} bytes"
        if report.records_dropped:
            cut += f", {report.records_dropped} valid-looking records after it"
        parts.append(cut + ")" + more)
    elif plan.cause is Cause.MISSING_START:
        parts.append(f"keeps the records that are left ({report.reason})")
    elif plan.cause is Cause.MISSING_ALL:
        parts.append(f"starts again, empty, at seq {report.last_seq + 1} ({report.reason})")
    if report.checkpoint_dropped is not None:
        what = "" if plan.cause is not Cause.CHECKPOINT_BEYOND_END else f" ({report.reason})"
        parts.append(f"drops the checkpoint at seq {report.checkpoint_dropped[0]}{what}")
    parts.append(f"the log then ends at seq {report.last_seq}")
    return "; ".join(parts)


def _segment_problems(log: LogScan) -> tuple[list[list[str]], list[str]]:
    """The table rows of the segments and the problems found in them, in log order."""
    rows = []
    problems = []
    previous: SegmentScan | None = None
    for seg in log.segments:
        end = seg.end
        last = seg.next_seq - 1
        if seg.not_regular is not None:
            status = f"not a regular file ({seg.not_regular})"
            problems.append(f"{seg.name}: a {seg.not_regular}, not a regular file")
        elif seg.vanished:
            status = "removed while reading (truncate_before on the open log)"
        elif end is not None and end.reason is not None:
            status = f"DAMAGED at offset {end.offset:,}"
            problems.append(f"{seg.name} at offset {end.offset:,}: {end.reason}")
        else:
            status = "ok"
        if previous is not None and not previous.damaged and seg.first_seq != previous.next_seq:
            if seg.first_seq > previous.next_seq:
                gap = f"gap: segment starts at seq {seg.first_seq}, {previous.next_seq} expected"
            else:
                gap = f"overlap: segment starts at seq {seg.first_seq}, below {previous.next_seq}"
            status = f"{gap.split(':')[0].upper()} before it; {status}"
            problems.append(f"{seg.name}: {gap}")
        previous = seg
        rows.append(
            [
                seg.name,
                str(seg.first_seq),
                str(last) if last >= seg.first_seq else "-",
                f"{seg.records:,}",
                status,
            ]
        )
    return rows, problems


def run(args: argparse.Namespace) -> int:
    lock = lock_status(args.ops, args.dir)
    max_length = frame_limit(args)
    listed = read_log(args.ops, args.dir, max_length, read="none", count_after=False)
    total = sum(s.size for s in listed.segments)
    retries = LIVE_RETRIES if lock.held else 0
    with _progress(args, total) as advance:
        log = read_log(args.ops, args.dir, max_length, read="all", live_retries=retries, on_bytes=advance)
    out = Out()
    summary = f"{plural(len(log.segments), 'segment')}, {human_size(total)}; lock {lock.describe()}"
    out.line(f"verify {args.dir}: {summary}")
    rows, problems = _segment_problems(log)
    if rows:
        out.line()
        out.table(["segment", "first seq", "last seq", "records", "status"], rows, right=(1, 2, 3))
    if log.meta_error is not None:
        problems.append(f"META does not validate: {log.meta_error}")
    plans = [decide(log, mode) for mode in ("tolerate_tail", "point_in_time", "strict")]
    strict = plans[-1]
    if not problems and (strict.error is not None or strict.cause is not None):
        # A problem of the log as a whole (missing segments, a foreign file...).
        problems.append(str(strict.error) if strict.error is not None else str(strict.cause))
    records = sum(s.records for s in log.segments)
    frames = sum(s.frames for s in log.segments)
    out.line()
    if problems:
        out.line(f"checked {records:,} records in {frames:,} frames; found damage:")
        for problem in problems:
            out.line(f"  {problem}")
    else:
        out.line(f"checked {records:,} records in {frames:,} frames: every checksum matches")
    notes = dir_notes(log)
    if log.segments and not problems:
        notes += checkpoint_notes(log, log.segments[-1].next_seq - 1)
    for note in notes:
        out.line(f"note: {note}")

    out.line()
    if problems:
        out.line("What opening the log would do, by recovery mode:")
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
    plan = plans[0]
    if plan.changes:
        out.line(f"Opening the log (any recovery mode) {_describe_plan(plan)}.")
    else:
        out.line("Opening the log would change nothing.")
    return 0
