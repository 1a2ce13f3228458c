"""Sentences about a log directory that more than one command prints (``info``, ``verify``,
``repair``): leftovers the next open removes, stray files, a checkpoint past the end."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._recovery import LogScan, RecoveryReport

__all__ = ("checkpoint_notes", "dir_notes", "not_cut")


def checkpoint_notes(log: LogScan, last_seq: int) -> list[str]:
    """A note if the checkpoint in META covers seqs beyond ``last_seq``, the end of the log."""
    cp = log.checkpoint
    if cp is None or cp[0] <= last_seq:
        return []
    return [
        f"the checkpoint covers up to seq {cp[0]} but the log ends at seq {last_seq}: a recovery cut "
        "records that the checkpoint covers, so the seqs after it will be reused by new records"
    ]


def dir_notes(log: LogScan) -> list[str]:
    """Notes on the files of the directory that are not live segments, META or LOCK."""
    notes = [
        f"{s.name} is below the low-water mark (an interrupted truncate_before): the next open removes it"
        for s in log.leftover_segments
    ]
    notes += [
        f"{n} is a {log.not_regular[n]}, not a regular file: every recovery mode refuses to open the log "
        "until it is moved out"
        for n in sorted(log.not_regular)
        if not n.endswith(".wal")  # a segment's own line says so
    ]
    notes += [
        f"{n} was never renamed into place: the next open removes it"
        for n in log.leftover_tmp
        if n not in log.not_regular
    ]
    notes += [f"{n} holds bytes cut by asyncwal repair (the engine ignores it)" for n in log.broken]
    notes += [
        f"{n} is not a log file (the log owns its directory: move it elsewhere; asyncwal never touches it)"
        for n in log.strays
    ]
    return notes


def not_cut(path: str, report: RecoveryReport | None) -> bool:
    """True if recovery removes ``path`` as a leftover rather than as damage."""
    if report is None:
        return True
    return path != report.segment and path not in report.segments_removed
