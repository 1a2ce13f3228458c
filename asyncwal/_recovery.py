"""Recovery at open: scan every segment, validate, cut what the recovery mode allows.

Runs on the log's executor thread before the log accepts any call. Steps:

1. Remove leftovers of interrupted operations: ``*.tmp`` files (a segment or META that was
   never renamed into place) and segments wholly below META's low-water mark (a
   ``truncate_before`` whose unlinks were not all done).
2. Scan each segment from its header, frame by frame (see _format.py for validity).
3. The first damage found is handled by the mode: ``strict`` raises; ``tolerate_tail`` cuts
   it if it is in the last segment and raises otherwise; ``point_in_time`` cuts it wherever it
   is and removes every later segment. Cut bytes are truncated away and the file synced
   before the log appends again, so a new record can never sit behind garbage.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field

from ._errors import CorruptLogError
from ._fileops import FileOps, read_all
from ._format import (
    BATCH,
    DATA,
    END,
    META_NAME,
    SEGMENT_HEADER_SIZE,
    FormatError,
    decode_meta,
    decode_segment_header,
    encode_meta,
    is_zero,
    parse_segment_name,
    scan_frame,
    segment_name,
)
from ._segment import write_file_atomically

__all__ = ("RecoveredLog", "RecoveryReport", "SegmentScan", "max_frame_length", "recover", "scan_segment")

logger = logging.getLogger("asyncwal")


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What recovery cut from the log at open. ``None`` on the log when nothing was cut.

    :ivar segment: the file in which the damage starts
    :ivar offset: byte offset of the first bad byte in that file
    :ivar reason: what was wrong there
    :ivar bytes_cut: bytes removed from that file (a zero-filled margin is not counted)
    :ivar records_dropped: records that looked valid after the damage and were cut with it
        (a power cut can tear writes sector by sector, so later records may survive intact;
        they are not reattached because the records before them are missing)
    :ivar segments_removed: later segment files removed (``point_in_time`` only)
    :ivar last_seq: the last seq kept
    :ivar checkpoint_dropped: ``(seq, data)`` of a checkpoint that covered records which are
        gone, removed so that it cannot appear to cover new records (``point_in_time`` only)
    """

    segment: str
    offset: int
    reason: str
    bytes_cut: int
    records_dropped: int
    segments_removed: tuple[str, ...] = ()
    last_seq: int = 0
    checkpoint_dropped: tuple[int, bytes] | None = None


@dataclass(slots=True)
class SegmentScan:
    """Result of scanning one segment file."""

    path: str
    first_seq: int
    end: int  # offset just past the last valid frame
    next_seq: int  # seq after the last valid frame
    size: int  # file size
    damage_reason: str | None = None  # None: the segment ends cleanly at ``end``
    records_after: int = 0  # valid-looking records found after the damage


@dataclass(slots=True)
class RecoveredLog:
    segments: list[int]  # first seqs, oldest first; the last is the active one (may be empty)
    next_seq: int
    active_end: int  # write position in the active segment (0: no segment exists yet)
    low_water: int
    checkpoint: tuple[int, bytes] | None
    report: RecoveryReport | None
    removed: list[str] = field(default_factory=list)  # leftovers removed (not damage)


def max_frame_length(max_record_size: int, max_batch_bytes: int) -> int:
    """Largest payload length a reader accepts: one record, or one encoded batch."""
    return max(max_record_size, max_batch_bytes)


def scan_segment(path: str, buf: bytes, name_seq: int, max_length: int, *, count_after: bool) -> SegmentScan:
    """Validate a segment's header and frames; never raises for bad bytes."""
    try:
        first = decode_segment_header(buf)
    except FormatError as exc:
        return SegmentScan(path, name_seq, 0, name_seq, len(buf), f"bad segment header: {exc}")
    if first != name_seq:
        return SegmentScan(
            path, name_seq, 0, name_seq, len(buf), f"header says first seq {first}, name {name_seq}"
        )
    pos = SEGMENT_HEADER_SIZE
    seq = first
    while True:
        end, _rtype, count, reason = scan_frame(buf, pos, seq, max_length)
        if end >= 0:
            pos = end
            seq += count
            continue
        if end == END and is_zero(buf, pos):
            return SegmentScan(path, first, pos, seq, len(buf))
        if end == END:
            reason = "non-zero bytes after a zero frame header"
        after = _count_valid_after(buf, pos, seq, max_length) if count_after else 0
        return SegmentScan(path, first, pos, seq, len(buf), reason, after)


def _count_valid_after(buf: bytes, start: int, min_seq: int, max_length: int) -> int:
    """Count frames that validate somewhere after ``start`` with a seq >= ``min_seq``.

    Candidates are found by their type and pad bytes, so zero-filled and random regions are
    skipped at C speed; each candidate is checked with its own seq and CRC.
    """
    count = 0
    budget = 100_000
    for marker in (bytes([DATA, 0, 0, 0]), bytes([BATCH, 0, 0, 0])):
        hit = buf.find(marker, start + 17)
        while hit >= 0 and budget > 0:
            budget -= 1
            pos = hit - 16
            seq = int.from_bytes(buf[pos + 8 : pos + 16], "little")
            if seq >= min_seq:
                end, _t, n, _r = scan_frame(buf, pos, seq, max_length)
                if end > 0:
                    count += n
                    hit = buf.find(marker, end + 16)
                    continue
            hit = buf.find(marker, hit + 1)
    return count


def recover(ops: FileOps, directory: str, mode: str, max_length: int) -> RecoveredLog:
    """Bring the directory to a consistent state and describe it. See the module docstring.

    :raises CorruptLogError: damage that ``mode`` does not allow to be cut
    """
    names = ops.listdir(directory)
    removed: list[str] = []
    for name in names:
        if name.endswith(".tmp"):
            ops.unlink(os.path.join(directory, name))
            removed.append(name)
    low_water = 0
    checkpoint: tuple[int, bytes] | None = None
    if META_NAME in names:
        meta_path = os.path.join(directory, META_NAME)
        fd = ops.open_readonly(meta_path)
        try:
            raw = read_all(ops, fd)
        finally:
            ops.close(fd)
        try:
            low_water, checkpoint = decode_meta(raw)
        except FormatError as exc:
            raise CorruptLogError(str(exc), segment=meta_path, offset=0) from None

    seqs = sorted(s for s in map(parse_segment_name, names) if s is not None)
    # Finish an interrupted truncate_before: a segment whose successor starts at or below the
    # low-water mark holds only seqs below it.
    while len(seqs) > 1 and seqs[1] <= low_water:
        name = segment_name(seqs.pop(0))
        ops.unlink(os.path.join(directory, name))
        removed.append(name)
    if removed:
        ops.sync_dir(directory)

    if not seqs:
        start = max(low_water, 1)
        return RecoveredLog([], start, 0, low_water, checkpoint, None, removed)

    kept: list[int] = []
    next_seq = seqs[0]
    active_end = 0
    report: RecoveryReport | None = None
    for i, first in enumerate(seqs):
        path = os.path.join(directory, segment_name(first))
        last = i == len(seqs) - 1
        if first != next_seq:
            reason = f"gap: segment starts at seq {first}, {next_seq} expected"
            report = _cut_gap(ops, directory, mode, path, seqs[i:], next_seq, reason)
            break
        fd = ops.open_readonly(path)
        try:
            buf = read_all(ops, fd)
        finally:
            ops.close(fd)
        scan = scan_segment(path, buf, first, max_length, count_after=mode != "strict")
        if scan.damage_reason is None:
            kept.append(first)
            next_seq = scan.next_seq
            active_end = scan.end
            continue
        _check_cuttable(mode, path, scan.end, scan.damage_reason, last)
        _check_checkpoint(mode, directory, checkpoint, scan.next_seq - 1)
        cut_bytes = _nonzero_extent(buf, scan.end)
        if scan.end >= SEGMENT_HEADER_SIZE:
            fd = ops.open(path)
            try:
                ops.truncate(fd, scan.end)
                ops.sync(fd)
            finally:
                ops.close(fd)
            kept.append(first)
            active_end = scan.end
        else:
            ops.unlink(path)
        next_seq = scan.next_seq
        later = [os.path.join(directory, segment_name(s)) for s in seqs[i + 1 :]]
        for p in later:
            ops.unlink(p)
        if scan.end < SEGMENT_HEADER_SIZE or later:
            ops.sync_dir(directory)
        report = RecoveryReport(
            segment=path,
            offset=scan.end,
            reason=scan.damage_reason,
            bytes_cut=cut_bytes,
            records_dropped=scan.records_after,
            segments_removed=tuple(later),
            last_seq=next_seq - 1,
        )
        break
    if checkpoint is not None and checkpoint[0] > next_seq - 1:
        # Records the checkpoint covers are gone (a cut above, or missing segments).
        _check_checkpoint(mode, directory, checkpoint, next_seq - 1)
        write_file_atomically(ops, directory, META_NAME, encode_meta(low_water, None))
        if report is None:
            reason = f"the last checkpoint covers seq {checkpoint[0]}, the log ends at {next_seq - 1}"
            report = RecoveryReport(os.path.join(directory, META_NAME), 0, reason, 0, 0, (), next_seq - 1)
        report = dataclasses.replace(report, checkpoint_dropped=checkpoint)
        checkpoint = None
    if report is not None:
        log = logger.warning if report.records_dropped or report.segments_removed else logger.info
        log(
            "asyncwal: recovery cut %s at offset %d (%s): %d bytes, "
            "%d valid-looking records after the damage, %d later segments removed",
            report.segment,
            report.offset,
            report.reason,
            report.bytes_cut,
            report.records_dropped,
            len(report.segments_removed),
        )
    if not kept:
        active_end = 0
    return RecoveredLog(kept, next_seq, active_end, low_water, checkpoint, report, removed)


def _check_checkpoint(mode: str, directory: str, checkpoint: tuple[int, bytes] | None, last_seq: int) -> None:
    """Refuse, unless in point_in_time mode, to leave a checkpoint covering seqs beyond the end."""
    if checkpoint is None or checkpoint[0] <= last_seq or mode == "point_in_time":
        return
    raise CorruptLogError(
        f"the last checkpoint covers seq {checkpoint[0]} but the log would end at {last_seq}: records "
        "that were durable are missing. Open with recovery='point_in_time' to cut there and drop "
        "the checkpoint",
        segment=os.path.join(directory, META_NAME),
        offset=0,
    )


def _check_cuttable(mode: str, path: str, offset: int, reason: str, last: bool) -> None:
    if mode == "strict":
        raise CorruptLogError(
            f"damaged log ({reason}); recovery mode 'strict' cuts nothing", segment=path, offset=offset
        )
    if mode == "tolerate_tail" and not last:
        raise CorruptLogError(
            f"damage in a segment that is not the last ({reason}); "
            "open with recovery='point_in_time' to cut everything from here, or repair it",
            segment=path,
            offset=offset,
        )


def _cut_gap(
    ops: FileOps, directory: str, mode: str, path: str, rest: list[int], next_seq: int, reason: str
) -> RecoveryReport:
    """A segment is missing before ``rest[0]``: cut ``rest`` whole (point_in_time only)."""
    if mode != "point_in_time":
        raise CorruptLogError(f"damaged log ({reason})", segment=path, offset=0)
    later = [os.path.join(directory, segment_name(s)) for s in rest]
    for p in later:
        ops.unlink(p)
    ops.sync_dir(directory)
    return RecoveryReport(path, 0, reason, 0, 0, tuple(later), next_seq - 1)


def _nonzero_extent(buf: bytes, start: int) -> int:
    """Bytes from ``start`` to the last non-zero byte (the cut, not counting zero fill)."""
    stripped = buf[start:].rstrip(b"\0")
    return len(stripped)
