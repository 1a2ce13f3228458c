"""``asyncwal info DIR``: what a log holds (segments, seq range, sizes, checkpoint, format
version, lock holder), read-only. Only the last segment is read: the earlier ones end where
their successor starts, so ``info`` is quick on any log (``verify`` checks every checksum).
With ``--server URL``, also what the log's replication stream holds (asked read-only, within
``--timeout`` seconds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._errors import WALError
from .._format import FORMAT_VERSION
from .._inspect import lock_status, read_log
from ._notes import checkpoint_notes, dir_notes
from ._output import LIVE_RETRIES, Out, frame_limit, human_size, preview

if TYPE_CHECKING:
    import argparse

    from .._recovery import LogScan
    from ._output import Subcommands

__all__ = ("add_parser",)


def add_parser(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    info = sub.add_parser("info", parents=[common], help="what the log holds; read-only")
    info.add_argument(
        "--server",
        dest="servers",
        action="append",
        metavar="URL",
        help="also ask the log's NATS JetStream stream how far it holds the log (repeat for several URLs)",
    )
    info.add_argument("--stream", help="with --server: the stream's name (default: named after the log id)")
    info.add_argument(
        "--timeout",
        type=float,
        default=3.0,
        help="with --server: seconds to wait in all (default %(default)s)",
    )
    info.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    lock = lock_status(args.ops, args.dir)
    # Only the last segment is read (the earlier ones end where their successor starts).
    log = read_log(
        args.ops,
        args.dir,
        frame_limit(args),
        read="last",
        count_after=False,
        live_retries=LIVE_RETRIES if lock.held else 0,
    )
    out = Out()
    live = log.segments
    last_end = live[-1].end if live else None
    versions: dict[str, list[str]] = {}
    header_problems: list[str] = []
    for seg in live:
        if seg.not_regular is not None:
            header_problems.append(f"{seg.name}: a {seg.not_regular}, not a regular file")
            continue
        versions.setdefault(str(seg.version), []).append(seg.name)
        if seg.end is not None and seg.end.offset == 0 and seg.end.reason is not None:
            header_problems.append(f"{seg.name}: {seg.end.reason}")
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
    if log.meta_error is not None:
        checkpoint = low_water = f"unknown: META does not validate ({log.meta_error})"
    elif meta is None:
        checkpoint, low_water = "none", "none (truncate_before never ran)"
    else:
        cp = meta.checkpoint
        checkpoint = (
            f"seq {cp[0]}, data {preview(cp[1], quote=True)} ({len(cp[1])} bytes)"
            if cp is not None
            else "none"
        )
        low_water = f"{meta.low_water}" if meta.low_water else "none (truncate_before never ran)"
    fields = [
        ("log", args.dir),
        ("log id", _log_id(log)),
        ("format", fmt),
        ("segments", f"{len(live)} ({human_size(sum(s.size for s in live))} on disk)"),
        ("records", records),
        ("checkpoint", checkpoint),
        ("low-water mark", low_water),
        ("lock", lock.describe()),
    ]
    if args.servers:
        last_seq = last_end.next_seq - 1 if live and last_end is not None else None
        fields += _replication(args, log, last_seq)
    out.fields(fields)
    rows = []
    for i, seg in enumerate(live):
        if i + 1 < len(live):
            last_seq = live[i + 1].first_seq - 1
            note = ""
        else:
            last_seq = last_end.next_seq - 1 if last_end is not None else seg.first_seq - 1
            if seg.vanished:
                note = "removed while reading"
            elif last_end is None:
                note = "not read"
            elif last_end.reason is not None:
                note = f"damage at offset {last_end.offset}: {last_end.reason}"
            else:
                note = f"last: records end at offset {last_end.offset:,}"
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
    if log.meta_error is not None:
        notes.append(
            f"META does not validate ({log.meta_error}): every recovery mode refuses to open the log"
        )
    if header_problems or (last_end is not None and last_end.reason is not None):
        notes.append(f"damage seen: run `asyncwal verify {args.dir}` for the whole story")
    if notes:
        out.line()
        for note in notes:
            out.line(f"note: {note}")
    return 0


def _log_id(log: LogScan) -> str:
    if log.meta_error is not None:
        return "unknown: META does not validate"
    if log.meta is None or log.meta.log_id is None:
        return "none yet (given at the next open)"
    return log.meta.log_id


def _replication(args: argparse.Namespace, log: LogScan, last_seq: int | None) -> list[tuple[str, str]]:
    """The fields that say what the log's stream holds (``--server``): never raises."""
    if log.meta is None or log.meta.log_id is None:
        return [("stream", "unknown: the log has no id yet (given at the next open)")]
    log_id = log.meta.log_id
    try:
        import asyncio

        from ..replication import NatsReplication
        from ..replication._probe import probe

        settings = NatsReplication(
            servers=tuple(args.servers), stream=args.stream, request_timeout=args.timeout
        )
        state = asyncio.run(probe(settings, log_id, args.timeout))
    except (ImportError, WALError, ValueError, TypeError) as exc:
        return [("stream", f"unknown: {exc}")]
    if not state.shipped_seq:
        shipped = "nothing yet"
    elif last_seq is None:
        shipped = f"up to seq {state.shipped_seq}"
    elif last_seq >= state.shipped_seq:
        behind = last_seq - state.shipped_seq
        rest = f"{behind:,} not yet shipped" if behind else "all of the log"
        shipped = f"up to seq {state.shipped_seq} ({rest})"
    else:
        shipped = f"up to seq {state.shipped_seq}: the log is behind its stream (asyncwal restore)"
    return [
        ("stream", f"{state.stream} ({state.layout} layout, {state.messages:,} messages)"),
        ("shipped", shipped),
    ]
