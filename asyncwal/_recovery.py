"""Recovery at open: scan the directory, decide what the recovery mode allows, then do it.

Runs on the log's I/O thread before the log accepts any call, in three steps that are
separate functions, so that ``asyncwal verify`` predicts what ``open()`` does by running the
first two (which change nothing) and showing the plan:

1. :func:`scan_log` reads: it lists the directory (names from _filenames.py), reads META,
   checks every segment header and streams the segments' frames through the one frame
   reader (_reader.py). Memory: one read chunk plus one frame. CPU: one pass over the
   segments, plus the budgeted count of valid-looking records after damage
   (:func:`~asyncwal._reader.count_valid_after`).
2. :func:`decide` is pure: from the scan and the mode it makes a :class:`Plan`, or the
   ``CorruptLogError`` that opening raises.
3. :func:`apply` carries the plan out through FileOps.

The rule behind every decision: recovery removes only bytes it can prove are a torn tail
of the newest segment (or, in ``point_in_time``, everything after the first damage), and only
in files this format wrote; anything it does not understand is refused with
``CorruptLogError``, and then nothing at all is changed. In detail:

* Refused in every mode: a META or a name asyncwal uses (segment, ``*.tmp`` of its own) that
  is not a regular file; a META that does not validate or is newer; a segment file whose
  header is not asyncwal's, is from a newer format, or names another first seq; two
  segments that hold the same seq.
* Damage (a torn or corrupt end, a damaged header checksum), a missing segment, and a
  checkpoint beyond the end are handled by the mode (docs/recovery.md has the table).
* Leftovers of interrupted work are removed in every mode: asyncwal's own ``*.tmp`` files
  (never renamed into place, so nothing in them was acknowledged) and segments wholly
  below META's low-water mark (an interrupted ``truncate_before``).
* Order of the changes: leftovers, then META (its new id, a raised low-water mark or a
  dropped checkpoint), then the cut. Each step is safe to repeat after a crash.

Why it is longer than the other modules (~660 lines): the decision table (every kind of
damage against every mode, missing segments found from META, foreign files) is one pure
function, and it is meant to be read whole, next to the scan that feeds it and the apply step
that carries it out; ``asyncwal verify`` shows the same decision without the apply.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from ._errors import CorruptLogError
from ._filenames import BROKEN_SUFFIX, LOCK_NAME, META_NAME, is_leftover_tmp, parse_segment_name
from ._fileops import FileKind
from ._format import (
    SEGMENT_HEADER_SIZE,
    FormatError,
    Meta,
    decode_meta,
    encode_meta,
    meta_size_limit,
    new_log_id,
)
from ._reader import End, SegmentEnd, SegmentFrames, count_valid_after, nonzero_end
from ._segment import write_file_atomically

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._fileops import FileOps

__all__ = (
    "MODES",
    "Cause",
    "LogScan",
    "Plan",
    "RecoveredLog",
    "RecoveryReport",
    "SegmentScan",
    "apply",
    "decide",
    "recover",
    "scan_log",
)

logger = logging.getLogger("asyncwal")

MODES: Final = ("tolerate_tail", "strict", "point_in_time")


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What recovery cut from the log at open. ``None`` on the log when nothing was cut.

    :ivar segment: the file in which the damage starts
    :ivar offset: byte offset of the first bad byte in that file
    :ivar reason: what was wrong there
    :ivar bytes_cut: bytes removed from that file (a zero-filled margin is not counted)
    :ivar records_dropped: records that looked valid after the damage and were cut with it
        (a power cut can tear writes sector by sector, so later records may survive intact;
        they are not reattached because the records before them are missing). Counted
        within a budget (see docs/recovery.md): a lower bound on a file full of them.
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
class RecoveredLog:
    """The state recovery leaves, for the engine to continue from."""

    segments: list[int]  # first seqs, oldest first; the last is the active one (may be empty)
    next_seq: int
    active_end: int  # write position in the active segment (0: no segment exists yet)
    low_water: int
    checkpoint: tuple[int, bytes] | None
    report: RecoveryReport | None
    removed: list[str] = field(default_factory=list)  # leftovers removed (not damage)
    log_id: str = ""


# -- 1. scan ----------------------------------------------------------------------------------


@dataclass(slots=True)
class SegmentScan:
    """One segment file as the scan found it.

    :ivar end: how its records end (None: its frames were not read, only its header)
    :ivar header: what is wrong with its header (None: valid); implies ``end`` at offset 0
    :ivar records_after: valid-looking records after the damage (counted only for the
        first damaged segment of the log); ``after_capped``: the count hit its budget
    """

    name: str
    path: str
    first_seq: int
    size: int
    end: SegmentEnd | None = None
    frames: int = 0
    records: int = 0
    records_after: int = 0
    after_capped: bool = False
    #: offset just past the last non-zero byte from the damage on (known for the first
    #: damaged segment only): what a cut removes, zero fill not counted
    nonzero_end: int = 0
    vanished: bool = False  #: removed while it was being read (a live log's truncate_before)
    not_regular: str | None = None  #: what the name is when it is not a regular file (not read)
    version: int | None = None  #: the version field of its header (None: too short to hold one)

    @property
    def next_seq(self) -> int:
        return self.end.next_seq if self.end is not None else self.first_seq

    @property
    def damaged(self) -> bool:
        return self.end is not None and self.end.end is not End.CLEAN


@dataclass(slots=True)
class LogScan:
    """What a log directory holds, found without changing anything.

    :ivar meta: META's content (None: there is no META, or it could not be read)
    :ivar refusal: what no recovery mode may handle, found while listing (then the
        segments may not all have been read)
    :ivar leftover_tmp: asyncwal's own ``*.tmp`` files (recovery removes them)
    :ivar leftover_segments: segments wholly below the low-water mark (removed too)
    :ivar segments: the live segments, oldest first
    :ivar strays: names that are not asyncwal's (never touched)
    """

    directory: str
    meta: Meta | None = None
    meta_error: str | None = None  #: why META could not be read (then ``meta`` is None)
    refusal: CorruptLogError | None = None
    leftover_tmp: list[str] = field(default_factory=list)
    leftover_segments: list[SegmentScan] = field(default_factory=list)
    segments: list[SegmentScan] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    has_meta_file: bool = False
    has_lock_file: bool = False
    #: asyncwal's names (segments, META, its own ``*.tmp``) that are not regular files: what each is
    not_regular: dict[str, str] = field(default_factory=dict)

    @property
    def low_water(self) -> int:
        return self.meta.low_water if self.meta is not None else 0

    @property
    def checkpoint(self) -> tuple[int, bytes] | None:
        return self.meta.checkpoint if self.meta is not None else None


def _not_regular(ops: FileOps, path: str) -> str | None:
    """What ``path`` is if it exists and is not a regular file (never followed, never opened)."""
    kind = ops.kind(path)
    return None if kind in (FileKind.REGULAR, FileKind.MISSING) else kind.value


def _refuse(path: str, message: str, offset: int = 0) -> CorruptLogError:
    return CorruptLogError(message, segment=path, offset=offset)


def scan_log(
    ops: FileOps,
    directory: str,
    max_length: int,
    *,
    read: str = "until_damage",
    count_after: bool = True,
    live_retries: int = 0,
    retry_delay: float = 0.05,
    on_bytes: Callable[[int], None] | None = None,
) -> LogScan:
    """List ``directory``, read META and the segment headers, and stream the frames.

    :param read: whose frames to read (every segment header is read in any case):
        ``"until_damage"`` (recovery: up to the first problem; after it only headers
        matter), ``"all"`` (``verify``), ``"last"`` (``info``), ``"none"`` (``dump``);
        ``"list"`` opens no segment at all (a reader that only needs the names)
    :param count_after: count the valid-looking records after the first damage
    :param live_retries: when the last segment ends in damage, read on from there this many
        more times, ``retry_delay`` seconds apart: on a log open for writing, a frame being
        written can look torn for an instant (the command line only)
    :param on_bytes: called with the size of every read of segment bytes
    :raises FileNotFoundError: the directory does not exist
    """
    scan = LogScan(directory)
    names = sorted(ops.listdir(directory))
    segments: list[SegmentScan] = []
    for name in names:
        path = os.path.join(directory, name)
        first = parse_segment_name(name)
        what = None
        if first is not None or is_leftover_tmp(name) or name == META_NAME:
            what = _not_regular(ops, path)
            if what is not None:
                scan.not_regular[name] = what
                refusal = _refuse(path, f"{name} is a {what}, not a regular file: move it out of the log")
                scan.refusal = scan.refusal or refusal
        if first is not None:
            segments.append(SegmentScan(name, path, first, 0, not_regular=what))
        elif is_leftover_tmp(name):
            scan.leftover_tmp.append(name)
        elif name == META_NAME:
            scan.has_meta_file = True
            if what is not None:
                scan.meta_error = f"a {what}, not a regular file"
            else:
                try:
                    scan.meta = _read_meta(ops, path, max_length)
                except CorruptLogError as exc:
                    scan.refusal = scan.refusal or exc
                    scan.meta_error = str(exc)
        elif name == LOCK_NAME:
            scan.has_lock_file = True
        elif BROKEN_SUFFIX in name:
            scan.broken.append(name)
        else:
            scan.strays.append(name)
    if scan.refusal is not None and read == "until_damage":
        scan.segments = segments
        return scan  # opening refuses whatever the segments hold: do not read them
    # Segments wholly below the low-water mark: an interrupted truncate_before left them.
    low_water = scan.low_water
    i = 0
    while len(segments) - i > 1 and segments[i + 1].first_seq <= low_water:
        i += 1
    scan.leftover_segments, scan.segments = segments[:i], segments[i:]

    if read == "list":
        return scan
    problem = False
    for seg in scan.leftover_segments:
        _read_segment(ops, seg, max_length, frames=False)
    for k, seg in enumerate(scan.segments):
        last = k == len(scan.segments) - 1
        frames = read == "all" or (read == "until_damage" and not problem) or (read == "last" and last)
        _read_segment(
            ops,
            seg,
            max_length,
            frames=frames,
            count_after=count_after and not problem,
            retries=live_retries if last else 0,
            retry_delay=retry_delay,
            on_bytes=on_bytes,
        )
        if k > 0 and seg.first_seq != scan.segments[k - 1].next_seq:
            problem = True
        if seg.end is None or seg.damaged:
            problem = True
    if scan.refusal is None:
        for seg in (*scan.leftover_segments, *scan.segments):
            header_refusal = _header_refusal(seg)
            if header_refusal is not None:
                scan.refusal = header_refusal
                break
    return scan


def _read_meta(ops: FileOps, path: str, max_length: int) -> Meta:
    fd = ops.open_readonly(path)
    try:
        size = ops.size(fd)
        limit = meta_size_limit(max_length)
        if size > limit:
            raise _refuse(path, f"META is {size} bytes, more than any META of this log ({limit})")
        raw = ops.pread(fd, size, 0) if size else b""
    finally:
        ops.close(fd)
    try:
        return decode_meta(raw)
    except FormatError as exc:
        raise _refuse(path, str(exc)) from None


def _read_segment(
    ops: FileOps,
    seg: SegmentScan,
    max_length: int,
    *,
    frames: bool,
    count_after: bool = False,
    retries: int = 0,
    retry_delay: float = 0.0,
    on_bytes: Callable[[int], None] | None = None,
) -> None:
    """Fill in ``seg``: its header (always) and, with ``frames``, how its records end."""
    if seg.not_regular is not None:
        return
    try:
        fd = ops.open_readonly(seg.path)
    except FileNotFoundError:
        seg.vanished = True
        return
    try:
        seg.size = ops.size(fd)
        reader = SegmentFrames(
            ops, fd, seg.first_seq, max_length, on_bytes=on_bytes, retries=retries, retry_delay=retry_delay
        )
        if not frames:
            seg.end = reader.check_header()
            seg.version = reader.decoder.version
            return
        header = reader.check_header()
        seg.version = reader.decoder.version
        end = reader.skim() if header is None else header
        if retries:
            seg.size = ops.size(fd)  # a live log may have grown meanwhile
        seg.end = end
        seg.frames = reader.frames
        seg.records = reader.records
        if count_after and end.end is not End.CLEAN:
            seg.records_after, seg.after_capped = count_valid_after(
                ops, fd, end.offset, end.next_seq, max_length, seg.size
            )
            seg.nonzero_end = nonzero_end(ops, fd, end.offset, seg.size)
    finally:
        ops.close(fd)


def _header_refusal(seg: SegmentScan) -> CorruptLogError | None:
    """The refusal a segment's header calls for in every mode, if any: a file that is not
    asyncwal's, from a newer format, or named for another first seq is never cut or removed."""
    end = seg.end
    if end is None or end.offset != 0 or end.damage is None or end.damage.name == "BAD_HEADER":
        return None
    what = end.reason or ""
    if end.damage.name == "NEWER_FORMAT":
        advice = "it was written by a newer asyncwal: open the log with that version"
    elif end.damage.name == "MISNAMED":
        advice = "a segment renamed by hand? give it its name back"
    else:
        advice = "it is not an asyncwal segment: move it out of the log"
    return _refuse(seg.path, f"{seg.name}: {what}; no recovery mode touches it ({advice})")


# -- 2. decide --------------------------------------------------------------------------------


class Cause(enum.Enum):
    """What a plan handles (the first problem of the log, in log order)."""

    #: a segment's records end in damage (torn or corrupt frames, or a damaged header)
    DAMAGE = "damage"
    #: a segment is missing between two others
    GAP = "gap"
    #: segments are missing at the start of the log (below its first segment)
    MISSING_START = "missing start"
    #: META shows the log had records, and no segment is left
    MISSING_ALL = "missing all"
    #: the checkpoint covers seqs beyond the end of the log
    CHECKPOINT_BEYOND_END = "checkpoint beyond the end"


@dataclass(frozen=True, slots=True)
class Plan:
    """What opening the log with one recovery mode does, found without changing anything.

    :ivar error: the CorruptLogError opening raises (then it changes nothing at all)
    :ivar cause: the problem the plan handles (None: the log is healthy)
    :ivar remove: leftovers removed (own ``*.tmp`` files, segments below the low-water mark)
    :ivar meta: the META written (a new log id, a raised low-water mark or a dropped
        checkpoint), or None
    :ivar truncate: ``(path, size)`` of the damaged segment cut, or None
    :ivar unlink: segments removed as damage (a damaged header, everything after the cut)
    :ivar report: the RecoveryReport the log gets (None: nothing cut)
    :ivar recovered: the state the engine continues from (None with an error)
    """

    mode: str
    error: CorruptLogError | None = None
    cause: Cause | None = None
    remove: tuple[str, ...] = ()
    meta: Meta | None = None
    truncate: tuple[str, int] | None = None
    unlink: tuple[str, ...] = ()
    report: RecoveryReport | None = None
    recovered: RecoveredLog | None = None

    @property
    def changes(self) -> bool:
        return bool(self.remove or self.meta or self.truncate or self.unlink)


def decide(scan: LogScan, mode: str, *, new_id: Callable[[], str] = new_log_id) -> Plan:
    """What opening the scanned log in ``mode`` does. Pure: reads and changes nothing.

    :param new_id: makes the log id given to a log that has none
    """
    if mode not in MODES:
        raise ValueError(f"unknown recovery mode {mode!r}")
    if scan.refusal is not None:
        return Plan(mode, error=scan.refusal)
    directory = scan.directory
    meta_path = os.path.join(directory, META_NAME)
    low_water = scan.low_water
    checkpoint = scan.checkpoint
    remove = tuple(os.path.join(directory, n) for n in scan.leftover_tmp)
    remove += tuple(s.path for s in scan.leftover_segments)
    segs = scan.segments
    cause: Cause | None = None
    notes: list[str] = []  # what point_in_time accepted before the cut, for the report
    report: RecoveryReport | None = None
    truncate: tuple[str, int] | None = None
    unlink: tuple[str, ...] = ()

    def refuse(path: str, message: str, offset: int = 0) -> Plan:
        return Plan(mode, error=_refuse(path, message, offset), cause=cause)

    # Missing segments, found from META: a log starts at or below max(low_water, 1).
    if not segs:
        if low_water > 0 or checkpoint is not None:
            cause = Cause.MISSING_ALL
            known = f"low-water mark {low_water}" + (
                f", checkpoint at seq {checkpoint[0]}" if checkpoint else ""
            )
            message = f"every segment is missing, yet META shows the log had records ({known})"
            if mode != "point_in_time":
                return refuse(meta_path, message + _POINT_IN_TIME_HINT)
            # Continue after everything META vouches for; the checkpoint stays true.
            start = max(low_water, checkpoint[0] + 1 if checkpoint else 1)
            low_water = start
            report = RecoveryReport(meta_path, 0, message, 0, 0, (), start - 1)
        start = max(low_water, 1)
        meta = _meta_to_write(scan, Meta(low_water, checkpoint, None), new_id)
        recovered = RecoveredLog(
            [], start, 0, low_water, checkpoint, report, list(remove), _log_id_after(meta, scan)
        )
        return Plan(mode, None, cause, remove, meta, None, (), report, recovered)

    first = segs[0].first_seq
    if first > max(low_water, 1):
        cause = Cause.MISSING_START
        message = f"segments are missing: the log starts at seq {first}, but " + (
            f"META's low-water mark is {low_water}" if low_water else "nothing was ever truncated"
        )
        if mode != "point_in_time":
            return refuse(segs[0].path, message + _POINT_IN_TIME_HINT)
        notes.append(f"{message} (the low-water mark is raised to {first})")
        low_water = first

    next_seq = first
    kept: list[int] = []
    active_end = 0
    for k, seg in enumerate(segs):
        if seg.vanished:
            return refuse(seg.path, f"{seg.name} was removed while recovery read it")
        if seg.first_seq < next_seq:
            return refuse(
                seg.path, f"{seg.name} holds seq {seg.first_seq}, which an earlier segment holds too"
            )
        if seg.first_seq > next_seq:
            cause = Cause.GAP
            reason = f"gap: segment starts at seq {seg.first_seq}, {next_seq} expected"
            if mode != "point_in_time":
                return refuse(seg.path, f"damaged log ({reason}){_POINT_IN_TIME_HINT}")
            unlink = tuple(s.path for s in segs[k:])
            report = RecoveryReport(seg.path, 0, reason, 0, 0, unlink, next_seq - 1)
            break
        end = seg.end
        assert end is not None, "scan_log reads the frames up to the first problem"
        if end.end is End.CLEAN:
            kept.append(seg.first_seq)
            next_seq = end.next_seq
            active_end = end.offset
            continue
        cause = Cause.DAMAGE
        last = k == len(segs) - 1
        reason = end.reason or ""
        if mode == "strict":
            return refuse(
                seg.path, f"damaged log ({reason}); recovery mode 'strict' cuts nothing", end.offset
            )
        if end.offset == 0:
            if mode == "tolerate_tail":
                return refuse(
                    seg.path,
                    f"damaged segment header ({reason}): not a torn write, so 'tolerate_tail' does not "
                    "cut it; open with recovery='point_in_time' to remove it and every later segment",
                )
        elif mode == "tolerate_tail" and not last:
            return refuse(
                seg.path,
                f"damage in a segment that is not the last ({reason}); "
                "open with recovery='point_in_time' to cut everything from here, or repair it",
                end.offset,
            )
        later = tuple(s.path for s in segs[k + 1 :])
        if end.offset >= SEGMENT_HEADER_SIZE:
            truncate = (seg.path, end.offset)
            kept.append(seg.first_seq)
            active_end = end.offset
            unlink = later
        else:
            unlink = (seg.path, *later)
        next_seq = end.next_seq
        report = RecoveryReport(
            segment=seg.path,
            offset=end.offset,
            reason=reason,
            bytes_cut=max(0, seg.nonzero_end - end.offset),
            records_dropped=seg.records_after,
            segments_removed=later,
            last_seq=next_seq - 1,
        )
        break

    if checkpoint is not None and checkpoint[0] > next_seq - 1:
        # Records the checkpoint covers are gone (damage, or missing segments).
        message = (
            f"the last checkpoint covers seq {checkpoint[0]} but the log would end at {next_seq - 1}: "
            "records that were durable are missing"
        )
        if mode != "point_in_time":
            return Plan(
                mode,
                error=_refuse(meta_path, message + _POINT_IN_TIME_HINT + " and drop the checkpoint"),
                cause=cause or Cause.CHECKPOINT_BEYOND_END,
            )
        if report is None:
            cause = Cause.CHECKPOINT_BEYOND_END
            reason = f"the last checkpoint covers seq {checkpoint[0]}, the log ends at {next_seq - 1}"
            report = RecoveryReport(meta_path, 0, reason, 0, 0, (), next_seq - 1)
        report = dataclasses.replace(report, checkpoint_dropped=checkpoint)
        checkpoint = None
    if notes:
        if report is None:
            report = RecoveryReport(segs[0].path, 0, notes[0], 0, 0, (), next_seq - 1)
        else:
            report = dataclasses.replace(report, reason=f"{report.reason}; {notes[0]}")
    meta = _meta_to_write(scan, Meta(low_water, checkpoint, None), new_id)
    if not kept:
        active_end = 0
    recovered = RecoveredLog(
        kept, next_seq, active_end, low_water, checkpoint, report, list(remove), _log_id_after(meta, scan)
    )
    return Plan(mode, None, cause, remove, meta, truncate, unlink, report, recovered)


_POINT_IN_TIME_HINT: Final = ". Open with recovery='point_in_time' to cut there"


def _meta_to_write(scan: LogScan, wanted: Meta, new_id: Callable[[], str]) -> Meta | None:
    """The META to write so that it holds ``wanted`` and a log id, or None if it does already."""
    current = scan.meta
    log_id = current.log_id if current is not None and current.log_id is not None else new_id()
    target = Meta(wanted.low_water, wanted.checkpoint, log_id)
    return None if target == current else target


def _log_id_after(meta: Meta | None, scan: LogScan) -> str:
    """The log id after the plan: the one written, or the one META holds."""
    if meta is not None and meta.log_id is not None:
        return meta.log_id
    assert scan.meta is not None and scan.meta.log_id is not None
    return scan.meta.log_id


# -- 3. apply ---------------------------------------------------------------------------------


def apply(ops: FileOps, directory: str, plan: Plan) -> RecoveredLog:
    """Carry out ``plan``: leftovers, then META, then the cut; each step durable before the next.

    :raises CorruptLogError: the plan is a refusal (nothing is changed)
    """
    if plan.error is not None:
        raise plan.error
    assert plan.recovered is not None
    for path in plan.remove:
        ops.unlink(path)
    if plan.remove:
        ops.sync_dir(directory)
    if plan.meta is not None:
        write_file_atomically(ops, directory, META_NAME, encode_meta(plan.meta))
    if plan.truncate is not None:
        path, size = plan.truncate
        fd = ops.open(path)
        try:
            ops.truncate(fd, size)
            ops.sync(fd)
        finally:
            ops.close(fd)
    for path in plan.unlink:
        ops.unlink(path)
    if plan.unlink:
        ops.sync_dir(directory)
    report = plan.report
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
    return plan.recovered


def recover(ops: FileOps, directory: str, mode: str, max_length: int) -> RecoveredLog:
    """Bring the directory to a consistent state and describe it: scan, decide, apply.

    :raises CorruptLogError: damage that ``mode`` does not allow to be cut, or anything
        that no mode may touch (nothing is changed then)
    """
    scan = scan_log(ops, directory, max_length, count_after=mode != "strict")
    return apply(ops, directory, decide(scan, mode))
