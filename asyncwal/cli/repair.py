"""``asyncwal repair DIR``: open the log (opening *is* the repair: recovery runs) with file
operations that keep a copy of every byte recovery cuts in a ``.broken`` file first."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from .._errors import CorruptLogError, LogLockedError
from .._fileops_wrappers import SalvagingFileOps
from .._inspect import lock_status, quiet_recovery_log, read_log
from .._log import open as open_log
from ._notes import not_cut
from ._output import Out, error, frame_limit

if TYPE_CHECKING:
    import argparse

    from .._recovery import RecoveryReport
    from ._output import Subcommands

__all__ = ("add_parser",)


def add_parser(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    repair = sub.add_parser(
        "repair", parents=[common], help="cut the damage, keeping a copy of what is cut in .broken files"
    )
    repair.add_argument(
        "--mode",
        choices=("tolerate_tail", "point_in_time"),
        default="tolerate_tail",
        help="the recovery mode to open with (default %(default)s)",
    )
    repair.set_defaults(func=run)


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


def run(args: argparse.Namespace) -> int:
    lock = lock_status(args.ops, args.dir)
    read_log(args.ops, args.dir, frame_limit(args), read="list")  # a log directory, not a path to create
    out = Out()
    if lock.held:
        error("repair", f"refused: the log is open ({lock.describe()}); close it first")
        return 1
    ops = SalvagingFileOps(args.ops)
    try:
        with quiet_recovery_log():
            report, first, last = asyncio.run(_open_and_close(args.dir, args, ops))
    except LogLockedError as exc:
        error("repair", f"refused: {exc}")
        return 1
    except CorruptLogError as exc:  # recovery refused: it changed nothing
        error("repair", f"refused: recovery mode {args.mode!r} does not cut this damage: {exc}")
        if args.mode != "point_in_time":
            error(
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
        if report.segment in report.segments_removed or not args.ops.exists(report.segment):
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
        if item.offset == 0 and not_cut(item.path, report):
            ops.base.unlink(item.copy)
            removed.append(item.path)
        else:
            kept.append(item)
    ops.salvaged[:] = kept
    return removed
