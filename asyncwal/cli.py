"""The ``asyncwal`` command line (also ``python -m asyncwal``).

::

    asyncwal info DIR                       segments, seq range, sizes, checkpoint, lock holder
    asyncwal dump DIR [--from SEQ] [--to SEQ] [--format text|json|raw]
    asyncwal verify DIR [--progress]        every checksum; what recovery would do
    asyncwal repair DIR [--mode tolerate_tail|point_in_time]
    asyncwal bench [DIR]                    the three sync modes measured on this disk

Exit status: 0 when all is well, 1 when damage is found (``info`` excepted) or a repair is
refused, 2 for a usage error (bad arguments, not a log directory).

``info``, ``dump`` and ``verify`` read the segment files directly: they never call
:func:`asyncwal.open`, never take the writer's lock and never write to the directory, so
they are safe on a log that another process has open. ``repair`` opens the log (opening
*is* the repair: recovery runs) after arranging that every byte it cuts is kept in a
``.broken`` file first.

rich (the ``cli`` extra) draws the tables and the progress bar; it is imported only inside
the functions that use it, never by ``import asyncwal``. Without it the output is plain
text.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from . import __version__
from ._errors import CorruptLogError, LogLockedError
from ._format import BATCH, FORMAT_VERSION
from ._inspect import (
    Frame,
    Gap,
    LogDir,
    NotALogError,
    Plan,
    SalvagingFileOps,
    SegmentEnd,
    list_log,
    lock_status,
    plan_recovery,
    quiet_recovery_log,
    scan_log,
    segment_version,
)
from ._log import open as open_log
from ._options import Durability, Options
from ._recovery import RecoveryReport, max_frame_length

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = ("main",)

RICH_HINT = "pip install 'asyncwal[cli]'"
#: ``verify`` draws a progress bar on its own (on a terminal) from this many bytes of segments.
PROGRESS_MIN_BYTES = 16 << 20
#: Re-reads of a live log's last segment before a torn-looking tail counts as damage.
LIVE_RETRIES = 3
_LENGTH = struct.Struct("<I")


class _Usage(Exception):
    """A usage error found after argument parsing (exit status 2)."""


# -- output -----------------------------------------------------------------------------------


def _load_rich(purpose: str) -> bool:
    """True if rich can be imported; otherwise say once what is missing, on stderr."""
    try:
        import rich  # noqa: F401
    except ImportError:
        print(f"asyncwal: rich is not installed, so {purpose} ({RICH_HINT} to get them)", file=sys.stderr)
        return False
    return True


class _Out:
    """Where a command prints: rich tables when rich is installed, aligned plain text otherwise.

    Looks up ``sys.stdout`` when created, so that a caller's redirection applies.
    """

    def __init__(self) -> None:
        self.stream: TextIO = sys.stdout
        self._console: Any = None
        if _load_rich("output is plain text"):
            from rich.console import Console

            console = Console(file=self.stream, highlight=False, markup=False, emoji=False, soft_wrap=True)
            if not console.is_terminal and "COLUMNS" not in os.environ:
                console.width = 160  # piped output: no terminal to fit, so do not wrap tables
            self._console = console

    def line(self, text: str = "") -> None:
        if self._console is not None:
            self._console.print(text)
        else:
            print(text, file=self.stream)

    def fields(self, pairs: Sequence[tuple[str, str]]) -> None:
        """``name  value`` lines with the values aligned."""
        width = max((len(name) for name, _ in pairs), default=0)
        for name, value in pairs:
            self.line(f"{name:<{width}}  {value}")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> None:
        """A table; the columns whose indexes are in ``right`` are right-aligned."""
        if self._console is not None:
            from rich import box
            from rich.table import Table

            table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
            for i, header in enumerate(headers):
                table.add_column(header, justify="right" if i in right else "left", no_wrap=True)
            for row in rows:
                table.add_row(*row)
            self._console.print(table)
            return
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

        def fmt(cells: Sequence[str]) -> str:
            out = [
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ]
            return "  ".join(out).rstrip()

        print(fmt(headers), file=self.stream)
        print("  ".join("-" * w for w in widths), file=self.stream)
        for row in rows:
            print(fmt(row), file=self.stream)


def _size(n: int) -> str:
    """Bytes in binary units: ``512 B``, ``1.5 KiB``, ``64.0 MiB``."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _preview(data: bytes, limit: int = 64, *, quote: bool = False) -> str:
    """A short rendering of a payload for people: printable UTF-8 as it is (``quote``: in
    quotes), other text quoted with JSON escapes, anything else in hex; cut at ``limit``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        shown = data[: limit // 2].hex()
        more = len(data) - limit // 2
        return f"hex:{shown}" + (f"... (+{more} bytes)" if more > 0 else "")
    head = text[:limit]
    rendered = head if head.isprintable() and not quote else json.dumps(head)
    more = len(data) - len(head.encode())
    return rendered + (f"... (+{more} bytes)" if more > 0 else "")


def _error(command: str, message: str) -> None:
    print(f"asyncwal {command}: {message}", file=sys.stderr)


def _max_length(args: argparse.Namespace) -> int:
    return max_frame_length(args.max_record_size, args.max_batch_bytes)


def _open_dir(args: argparse.Namespace) -> LogDir:
    try:
        return list_log(args.dir)
    except NotALogError as exc:
        raise _Usage(str(exc)) from None


# -- info -------------------------------------------------------------------------------------


def _cmd_info(args: argparse.Namespace) -> int:
    log = _open_dir(args)
    lock = lock_status(args.dir)
    out = _Out()
    live = log.live_segments
    last_end: SegmentEnd | None = None
    if live:
        # Only the last segment is read (the earlier ones end where their successor starts).
        for item in scan_log(
            log, _max_length(args), from_seq=live[-1].first_seq, live_retries=LIVE_RETRIES if lock.held else 0
        ):
            if isinstance(item, SegmentEnd):
                last_end = item
    versions: dict[str, list[str]] = {}
    header_problems: list[str] = []
    for seg in live:
        version, problem = segment_version(seg)
        versions.setdefault(str(version), []).append(seg.name)
        if problem is not None:
            header_problems.append(f"{seg.name}: {problem}")
    if list(versions) == [str(FORMAT_VERSION)]:
        fmt = f"version {FORMAT_VERSION}"
    elif not versions:
        fmt = "no segments"
    else:
        fmt = ", ".join(f"version {v} ({len(names)} segments)" for v, names in versions.items())

    if live and last_end is not None:
        first = live[0].first_seq
        last = last_end.next_seq - 1
        count = last - first + 1
        records = f"seq {first}..{last} ({count:,} records)" if count > 0 else f"none (next seq {first})"
    else:
        records = "none"
    meta = log.meta
    if meta is None:
        checkpoint, low_water = "none", "none (truncate_before never ran)"
    elif meta.error is not None:
        checkpoint = low_water = f"unknown: META does not validate ({meta.error})"
    else:
        cp = meta.checkpoint
        checkpoint = (
            f"seq {cp[0]}, data {_preview(cp[1], quote=True)} ({len(cp[1])} bytes)"
            if cp is not None
            else "none"
        )
        low_water = f"{meta.low_water}" if meta.low_water else "none (truncate_before never ran)"
    out.fields(
        [
            ("log", args.dir),
            ("format", fmt),
            ("segments", f"{len(live)} ({_size(sum(s.size for s in live))} on disk)"),
            ("records", records),
            ("checkpoint", checkpoint),
            ("low-water mark", low_water),
            ("lock", lock.describe()),
        ]
    )
    rows = []
    for i, seg in enumerate(live):
        if i + 1 < len(live):
            last_seq = live[i + 1].first_seq - 1
            note = ""
        else:
            assert last_end is not None
            last_seq = last_end.next_seq - 1
            if last_end.vanished:
                note = "removed while reading"
            elif last_end.damage is not None:
                note = f"damage at offset {last_end.end}: {last_end.damage}"
            else:
                note = f"last: records end at offset {last_end.end:,}"
        n = last_seq - seg.first_seq + 1
        rows.append(
            [
                seg.name,
                str(seg.first_seq),
                str(last_seq) if n > 0 else "-",
                f"{max(n, 0):,}",
                _size(seg.size),
                note,
            ]
        )
    if rows:
        out.line()
        out.table(["segment", "first seq", "last seq", "records", "size", ""], rows, right=(1, 2, 3, 4))
    notes = _dir_notes(log)
    if live and last_end is not None:
        notes += _checkpoint_notes(log, last_end.next_seq - 1)
    notes += header_problems
    if meta is not None and meta.error is not None:
        notes.append(f"META does not validate ({meta.error}): every recovery mode refuses to open the log")
    if header_problems or (last_end is not None and last_end.damage is not None):
        notes.append(f"damage seen: run `asyncwal verify {args.dir}` for the whole story")
    if notes:
        out.line()
        for note in notes:
            out.line(f"note: {note}")
    return 0


def _checkpoint_notes(log: LogDir, last_seq: int) -> list[str]:
    cp = log.meta.checkpoint if log.meta is not None else None
    if cp is None or cp[0] <= last_seq:
        return []
    return [
        f"the checkpoint covers up to seq {cp[0]} but the log ends at seq {last_seq}: a recovery cut "
        "records that the checkpoint covers, so the seqs after it will be reused by new records"
    ]


def _dir_notes(log: LogDir) -> list[str]:
    notes = [
        f"{s.name} is below the low-water mark (an interrupted truncate_before): the next open removes it"
        for s in log.leftovers
    ]
    notes += [f"{n} was never renamed into place: the next open removes it" for n in log.temp_files]
    notes += [f"{n} holds bytes cut by asyncwal repair (the engine ignores it)" for n in log.broken_files]
    notes += [
        f"{n} is not a log file (the log owns its directory: move it elsewhere)" for n in log.other_files
    ]
    return notes


# -- dump -------------------------------------------------------------------------------------


def _cmd_dump(args: argparse.Namespace) -> int:
    lo = args.from_seq
    hi = args.to_seq
    if hi is not None and hi < lo:
        raise _Usage(f"--to {hi} is below --from {lo}")
    log = _open_dir(args)
    lock = lock_status(args.dir)
    stream = sys.stdout
    emit: Callable[[int, bytes, Frame], None]
    if args.format == "raw":
        binary = stream.buffer

        def emit(seq: int, data: bytes, frame: Frame) -> None:
            binary.write(_LENGTH.pack(len(data)))
            binary.write(data)

    elif args.format == "json":

        def emit(seq: int, data: bytes, frame: Frame) -> None:
            obj: dict[str, object] = {
                "seq": seq,
                "length": len(data),
                "type": "batch" if frame.kind == BATCH else "data",
                "segment": frame.segment,
                "offset": frame.offset,
            }
            try:
                obj["encoding"], obj["data"] = "utf-8", data.decode("utf-8")
            except UnicodeDecodeError:
                obj["encoding"], obj["data"] = "base64", base64.b64encode(data).decode("ascii")
            stream.write(json.dumps(obj) + "\n")

    else:

        def emit(seq: int, data: bytes, frame: Frame) -> None:
            where = f"{frame.segment}:{frame.offset}"
            batch = f" batch={seq - frame.seq + 1}/{frame.count}" if frame.kind == BATCH else ""
            stream.write(f"seq={seq} len={len(data)} at={where}{batch} data={_preview(data)}\n")

    retries = LIVE_RETRIES if lock.held else 0
    for item in scan_log(log, _max_length(args), from_seq=lo, live_retries=retries):
        if isinstance(item, Frame):
            if item.seq + item.count <= lo:
                continue
            for seq, data in item.records():
                if seq < lo:
                    continue
                if hi is not None and seq > hi:
                    stream.flush()
                    return 0
                emit(seq, data, item)
        elif isinstance(item, Gap):
            stream.flush()
            _error("dump", f"{item.segment.name}: {item.reason}; the records from there on are not shown")
            return 1
        elif item.damage is not None:
            stream.flush()
            _error(
                "dump",
                f"damage in {item.segment.name} at offset {item.end} ({item.damage}) after seq "
                f"{item.next_seq - 1}; the records from there on are not shown (run asyncwal verify)",
            )
            return 1
    stream.flush()
    if args.format == "raw":
        stream.buffer.flush()
    return 0


# -- verify -----------------------------------------------------------------------------------


@contextmanager
def _progress(args: argparse.Namespace, total: int) -> Iterator[Callable[[int], None] | None]:
    """A byte-counting progress bar on stderr, or None when it is not wanted or rich is missing."""
    show = args.progress if args.progress is not None else sys.stderr.isatty() and total >= PROGRESS_MIN_BYTES
    if not show or not _load_rich("there is no progress bar"):
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
    leftovers = [os.path.basename(p) for p in plan.unlinks if _not_cut(p, plan.report)]
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


def _not_cut(path: str, report: RecoveryReport | None) -> bool:
    """True if recovery removes ``path`` as a leftover rather than as damage."""
    if report is None:
        return True
    return path != report.segment and path not in report.segments_removed


def _cmd_verify(args: argparse.Namespace) -> int:
    log = _open_dir(args)
    lock = lock_status(args.dir)
    out = _Out()
    live = log.live_segments
    total = sum(s.size for s in live)
    ends: list[SegmentEnd] = []
    gaps: dict[str, Gap] = {}
    with _progress(args, total) as advance:
        retries = LIVE_RETRIES if lock.held else 0
        for item in scan_log(log, _max_length(args), live_retries=retries, on_bytes=advance):
            if isinstance(item, SegmentEnd):
                ends.append(item)
            elif isinstance(item, Gap):
                gaps[item.segment.name] = item
    out.line(f"verify {args.dir}: {_plural(len(live), 'segment')}, {_size(total)}; lock {lock.describe()}")
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
    notes = _dir_notes(log)
    if ends and not problems:
        notes += _checkpoint_notes(log, ends[-1].next_seq - 1)
    for note in notes:
        out.line(f"note: {note}")

    max_length = _max_length(args)
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


# -- repair -----------------------------------------------------------------------------------


async def _open_and_close(
    directory: str, args: argparse.Namespace, ops: SalvagingFileOps
) -> tuple[RecoveryReport | None, int, int]:
    log = await open_log(
        directory,
        recovery=args.mode,
        file_ops=ops,
        max_record_size=args.max_record_size,
        max_batch_bytes=args.max_batch_bytes,
    )
    try:
        return log.recovery_report, log.first_seq, log.last_seq
    finally:
        await log.close()


def _cmd_repair(args: argparse.Namespace) -> int:
    _open_dir(args)  # a log directory, not a path to create
    lock = lock_status(args.dir)
    out = _Out()
    if lock.held:
        _error("repair", f"refused: the log is open ({lock.describe()}); close it first")
        return 1
    ops = SalvagingFileOps()
    try:
        with quiet_recovery_log():
            report, first, last = asyncio.run(_open_and_close(args.dir, args, ops))
    except LogLockedError as exc:
        _error("repair", f"refused: {exc}")
        return 1
    except CorruptLogError as exc:
        _discard_leftover_copies(ops, None)
        _error("repair", f"refused: recovery mode {args.mode!r} does not cut this damage: {exc}")
        if args.mode != "point_in_time":
            _error(
                "repair",
                "`--mode point_in_time` cuts it, and every later segment with it (run asyncwal verify first)",
            )
        return 1
    removed = _discard_leftover_copies(ops, report)
    out.line(f"repair {args.dir} (recovery={args.mode!r})")
    for path in removed:
        why = "never renamed into place" if path.endswith(".tmp") else "below the low-water mark"
        out.line(f"removed leftover {os.path.basename(path)} ({why})")
    if report is None:
        out.line("nothing to cut: the log opens cleanly")
    else:
        name = os.path.basename(report.segment)
        if report.segment in report.segments_removed or not os.path.exists(report.segment):
            out.line(f"removed {name}: {report.reason}")
        else:
            out.line(f"cut {name} at offset {report.offset:,}: {report.reason}")
            out.line(f"  {report.bytes_cut:,} bytes of damage (zero fill not counted)")
            if report.records_dropped:
                out.line(
                    f"  {report.records_dropped} valid-looking records after the damage were cut with it "
                    "(the records before them are missing)"
                )
        for seg in report.segments_removed:
            if seg != report.segment:
                out.line(f"removed the later segment {os.path.basename(seg)}")
        for kept in ops.salvaged:
            what = (
                "the whole file"
                if kept.offset == 0
                else f"bytes {kept.offset:,}..{kept.offset + kept.length:,}"
            )
            out.line(f"kept {what} of {os.path.basename(kept.path)} in {kept.copy}")
        if report.checkpoint_dropped is not None:
            cp_seq, cp_data = report.checkpoint_dropped
            out.line(
                f"dropped the checkpoint at seq {cp_seq} ({len(cp_data)} bytes of data): it covered "
                "records that are gone, and new records will reuse their seqs"
            )
    count = last - first + 1
    held = f"seq {first}..{last}" if count > 0 else "no records"
    out.line(f"the log now holds {held}; the next append gets seq {last + 1}")
    return 0


def _discard_leftover_copies(ops: SalvagingFileOps, report: RecoveryReport | None) -> list[str]:
    """Segments recovery removed as leftovers of an interrupted truncate_before are not damage:
    drop the copies SalvagingFileOps kept of them. Return every leftover removed."""
    kept = []
    removed = list(ops.removed)
    for item in ops.salvaged:
        if item.offset == 0 and _not_cut(item.path, report):
            os.unlink(item.copy)
            removed.append(item.path)
        else:
            kept.append(item)
    ops.salvaged[:] = kept
    return removed


_PROMISE = {
    "sync": "DISK: survives power loss",
    "batch": "OS: survives a crash of the process",
    "none": "MEMORY: survives nothing until sync",
}


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
    """Run ``workers`` coroutines appending ``size``-byte records for ``seconds``."""
    path = tempfile.mkdtemp(prefix=f"bench-{mode}-", dir=directory)
    try:
        log = await open_log(path, sync_mode=mode)
        payload = b"x" * size
        latencies: list[int] = []
        stop = False

        async def worker() -> None:
            clock = time.perf_counter_ns
            while not stop:
                t = clock()
                await log.append(payload)
                latencies.append(clock() - t)

        tasks = [asyncio.ensure_future(worker()) for _ in range(workers)]
        warmup = min(0.2, seconds / 4)
        await asyncio.sleep(warmup)
        latencies.clear()
        before = log.stats()
        start = time.perf_counter()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - start
        after = log.stats()
        count = len(latencies)
        stop = True
        await asyncio.gather(*tasks)
        await log.close()
    finally:
        shutil.rmtree(path, ignore_errors=True)
    latencies.sort()
    fsyncs = after.fsyncs - before.fsyncs

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1000 if latencies else 0.0

    return BenchRow(
        mode, workers, count / elapsed, pct(0.5), pct(0.99), fsyncs / elapsed, count / fsyncs if fsyncs else 0
    )


def _table(rows: Sequence[BenchRow], loop_name: str, size: int, directory: str) -> str:
    lines = [
        f"asyncwal bench: {size}-byte records, {loop_name} loop, files in {directory} "
        f"(default sync_mode: {Options().sync_mode!r})",
        "",
        "| sync_mode | await append() returns at | W | appends/s | p50 latency | p99 latency "
        "| fsyncs/s | records/fsync |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.mode} | {_PROMISE[r.mode]} | {r.workers} | {r.appends_per_s:,.0f} | {r.p50_us:,.1f} us | "
            f"{r.p99_us:,.1f} us | {r.fsyncs_per_s:,.0f} | {r.records_per_fsync:,.1f} |"
        )
    return "\n".join(lines)


def _cmd_bench(args: argparse.Namespace) -> int:
    directory = args.dir or tempfile.gettempdir()
    os.makedirs(directory, exist_ok=True)
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
        f"{Durability.DISK.name} = covered by a completed fdatasync (or RWF_DSYNC write); "
        f"{Durability.OS.name} = handed to the kernel."
    )
    return 0


def _have_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _reading_options() -> argparse.ArgumentParser:
    defaults = Options()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("dir", metavar="DIR", help="the log directory")
    common.add_argument(
        "--max-record-size",
        type=int,
        default=defaults.max_record_size,
        metavar="BYTES",
        help="the log's max_record_size: longer length fields are damage (default %(default)s)",
    )
    common.add_argument(
        "--max-batch-bytes",
        type=int,
        default=defaults.max_batch_bytes,
        metavar="BYTES",
        help="the log's max_batch_bytes (default %(default)s)",
    )
    return common


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asyncwal",
        description="Inspect, check, repair and measure asyncwal logs.",
        epilog="Exit status: 0 ok, 1 damage found or repair refused, 2 usage error.",
    )
    parser.add_argument("--version", action="version", version=f"asyncwal {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _reading_options()

    info = sub.add_parser("info", parents=[common], help="what the log holds; read-only")
    info.set_defaults(func=_cmd_info)

    dump = sub.add_parser("dump", parents=[common], help="print the records; read-only, streaming")
    dump.add_argument(
        "--from", dest="from_seq", type=int, default=0, metavar="SEQ", help="first seq to print"
    )
    dump.add_argument("--to", dest="to_seq", type=int, default=None, metavar="SEQ", help="last seq to print")
    dump.add_argument(
        "--format",
        choices=("text", "json", "raw"),
        default="text",
        help="text: one line per record; json: one JSON object per line; "
        "raw: each record as a 4-byte little-endian length and its bytes",
    )
    dump.set_defaults(func=_cmd_dump)

    verify = sub.add_parser(
        "verify", parents=[common], help="check every checksum; say what recovery would do; read-only"
    )
    verify.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw a progress bar on stderr (default: on a terminal, for logs over 16 MiB)",
    )
    verify.set_defaults(func=_cmd_verify)

    repair = sub.add_parser(
        "repair", parents=[common], help="cut the damage, keeping a copy of what is cut in .broken files"
    )
    repair.add_argument(
        "--mode",
        choices=("tolerate_tail", "point_in_time"),
        default="tolerate_tail",
        help="the recovery mode to open with (default %(default)s)",
    )
    repair.set_defaults(func=_cmd_repair)

    bench = sub.add_parser("bench", help="measure the three sync modes on this disk")
    bench.add_argument("dir", nargs="?", help="directory on the disk to measure (default: the temp dir)")
    bench.add_argument("--seconds", type=float, default=1.5, help="measuring time per cell")
    bench.add_argument("--workers", default="1,16,256", help="concurrent appenders, comma-separated")
    bench.add_argument("--size", type=int, default=128, help="record size in bytes")
    bench.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (usage errors included, never SystemExit)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.func(args))
    except _Usage as exc:
        _error(args.command, str(exc))
        return 2
    except BrokenPipeError:
        # The reader went away (`asyncwal dump DIR | head`): stop quietly, as cat does.
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        return 130


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush cannot fail again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
