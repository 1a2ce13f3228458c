"""``asyncwal info DIR``: what a log holds (segments, seq range, sizes, checkpoint, format
version, lock holder), read-only. Only the last segment is read: the earlier ones end where
their successor starts, so ``info`` is quick on any log (``verify`` checks every checksum).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._format import FORMAT_VERSION
from .._inspect import SegmentEnd, lock_status, scan_log, segment_version
from ._notes import checkpoint_notes, dir_notes
from ._output import LIVE_RETRIES, Out, frame_limit, human_size, open_dir, preview

if TYPE_CHECKING:
    import argparse

    from ._output import Subcommands

__all__ = ("add_parser",)


def add_parser(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    info = sub.add_parser("info", parents=[common], help="what the log holds; read-only")
    info.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    log = open_dir(args)
    lock = lock_status(args.dir)
    out = Out()
    live = log.live_segments
    last_end: SegmentEnd | None = None
    if live:
        # Only the last segment is read (the earlier ones end where their successor starts).
        for item in scan_log(
            log, frame_limit(args), from_seq=live[-1].first_seq, live_retries=LIVE_RETRIES if lock.held else 0
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
            f"seq {cp[0]}, data {preview(cp[1], quote=True)} ({len(cp[1])} bytes)"
            if cp is not None
            else "none"
        )
        low_water = f"{meta.low_water}" if meta.low_water else "none (truncate_before never ran)"
    out.fields(
        [
            ("log", args.dir),
            ("format", fmt),
            ("segments", f"{len(live)} ({human_size(sum(s.size for s in live))} on disk)"),
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
                human_size(seg.size),
                note,
            ]
        )
    if rows:
        out.line()
        out.table(["segment", "first seq", "last seq", "records", "size", ""], rows, right=(1, 2, 3, 4))
    notes = dir_notes(log)
    if live and last_end is not None:
        notes += checkpoint_notes(log, last_end.next_seq - 1)
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
