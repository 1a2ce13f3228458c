"""Read-only inspection of a log directory, for the command line (``asyncwal info|dump|verify``)
and the copy-before-cut file operations of ``asyncwal repair``.

Nothing here calls :func:`asyncwal.open`, takes the writer's lock or changes a byte of the
log, except :class:`SalvagingFileOps`, which ``repair`` hands to ``asyncwal.open`` on purpose.

Invariants of the readers:

* Memory is bounded by one read chunk plus one frame: :func:`read_frames` streams a segment
  and never holds more than ``chunk_size`` bytes it has not yet parsed plus the frame being
  checked, whose length is trusted only up to ``max_length`` (as the engine does).
* Validity is the engine's: frames are checked with :func:`asyncwal._format.scan_frame`, and
  what recovery would do is found by running the engine's own :func:`asyncwal._recovery.recover`
  against :class:`DryRunFileOps`, which records the truncations and unlinks instead of doing them.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Final

from ._errors import CorruptLogError
from ._fileops import AsyncReader, FileKind, LockState, OsFileOps
from ._format import (
    BATCH,
    END,
    FRAME_HEADER_SIZE,
    META_NAME,
    NEED_MORE,
    SEGMENT_HEADER_SIZE,
    FormatError,
    decode_batch,
    decode_meta,
    decode_segment_header,
    is_zero,
    parse_segment_name,
    scan_frame,
)
from ._log import LOCK_NAME
from ._recovery import RecoveryReport, recover

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = (
    "READ_CHUNK",
    "DryRunFileOps",
    "Frame",
    "Gap",
    "LockStatus",
    "LogDir",
    "Meta",
    "NotALogError",
    "Plan",
    "SalvagingFileOps",
    "Salvaged",
    "SegmentEnd",
    "SegmentFile",
    "list_log",
    "lock_status",
    "free_broken_name",
    "plan_recovery",
    "quiet_recovery_log",
    "read_frames",
    "scan_log",
    "segment_version",
)

READ_CHUNK: Final = 1 << 20
_LENGTH = struct.Struct("<I")
BROKEN_SUFFIX: Final = ".broken"


class NotALogError(Exception):
    """The directory does not exist, or holds no segment, META or LOCK file."""


# -- the directory --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SegmentFile:
    """One segment file as listed (its size is the size when listed)."""

    name: str
    path: str
    first_seq: int
    size: int


@dataclass(frozen=True, slots=True)
class Meta:
    """The META file: ``error`` is set (and the rest zero) when it does not validate."""

    low_water: int
    checkpoint: tuple[int, bytes] | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class LogDir:
    """What a log directory holds, from one ``listdir``."""

    path: str
    segments: tuple[SegmentFile, ...]  #: every segment file, oldest first
    meta: Meta | None  #: None when there is no META file (no checkpoint, never truncated)
    temp_files: tuple[str, ...]  #: ``*.tmp``: never renamed into place; recovery removes them
    broken_files: tuple[str, ...]  #: copies kept by ``asyncwal repair``
    other_files: tuple[str, ...]  #: anything else (the log owns its directory: there should be none)
    has_lock_file: bool

    @property
    def low_water(self) -> int:
        return self.meta.low_water if self.meta is not None else 0

    @property
    def leftovers(self) -> tuple[SegmentFile, ...]:
        """Segments wholly below the low-water mark: an interrupted ``truncate_before`` left
        them, and recovery removes them (the same rule as the engine's)."""
        segs = self.segments
        out = []
        i = 0
        while len(segs) - i > 1 and segs[i + 1].first_seq <= self.low_water:
            out.append(segs[i])
            i += 1
        return tuple(out)

    @property
    def live_segments(self) -> tuple[SegmentFile, ...]:
        """The segments recovery scans: all but the leftovers."""
        return self.segments[len(self.leftovers) :]

    @property
    def size(self) -> int:
        """Bytes of all segment files."""
        return sum(s.size for s in self.segments)


def list_log(directory: str) -> LogDir:
    """List ``directory`` without opening the log.

    :raises NotALogError: it does not exist, is not a directory, or holds no log file
    """
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        raise NotALogError(f"{directory}: no such directory") from None
    except NotADirectoryError:
        raise NotALogError(f"{directory}: not a directory") from None
    segments: list[SegmentFile] = []
    temps: list[str] = []
    broken: list[str] = []
    others: list[str] = []
    for name in names:
        first = parse_segment_name(name)
        path = os.path.join(directory, name)
        if first is not None:
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:  # removed by a live log's truncate_before meanwhile
                continue
            segments.append(SegmentFile(name, path, first, size))
        elif name.endswith(".tmp"):
            temps.append(name)
        elif BROKEN_SUFFIX in name:
            broken.append(name)
        elif name not in (META_NAME, LOCK_NAME):
            others.append(name)
    segments.sort(key=lambda s: s.first_seq)
    meta = _read_meta(os.path.join(directory, META_NAME)) if META_NAME in names else None
    has_lock = LOCK_NAME in names
    if not segments and meta is None and not has_lock:
        raise NotALogError(f"{directory}: not an asyncwal log (no segment, META or LOCK file)")
    return LogDir(directory, tuple(segments), meta, tuple(temps), tuple(broken), tuple(others), has_lock)


def _read_meta(path: str) -> Meta | None:
    try:
        with open(path, "rb") as f:
            raw = f.read()  # small: 48 bytes plus the checkpoint's data
    except FileNotFoundError:
        return None
    try:
        low_water, checkpoint = decode_meta(raw)
    except FormatError as exc:
        return Meta(0, None, str(exc))
    return Meta(low_water, checkpoint)


def segment_version(seg: SegmentFile) -> tuple[int | None, str | None]:
    """The format version in a segment's header, and what is wrong with the header if anything."""
    try:
        with open(seg.path, "rb") as f:
            head = f.read(SEGMENT_HEADER_SIZE)
    except FileNotFoundError:
        return None, "removed while reading"
    version = struct.unpack_from("<I", head, 8)[0] if len(head) >= 12 else None
    try:
        decode_segment_header(head)
    except FormatError as exc:
        return version, str(exc)
    return version, None


# -- the lock -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LockStatus:
    """Who holds the directory lock, found without taking it for more than an instant.

    :ivar exists: there is a LOCK file (the log was opened at least once)
    :ivar held: another open file description holds the flock
    :ivar pid: the pid written in LOCK by its holder (a free LOCK that still names a pid was
        not released cleanly: its holder died with the log open)
    """

    exists: bool
    held: bool
    pid: int | None

    def describe(self) -> str:
        if not self.exists:
            return "free (no LOCK file)"
        if self.held:
            return f"held by pid {self.pid}" if self.pid is not None else "held (pid not written yet)"
        if self.pid is not None:
            return f"free (pid {self.pid} held it last and did not close the log cleanly)"
        return "free"


def lock_status(directory: str) -> LockStatus:
    """Probe ``directory/LOCK`` with a non-blocking shared flock, released at once.

    The file is opened read-only and never written. The probe holds a shared lock for a few
    microseconds: an ``asyncwal.open`` of the same directory in that instant fails with
    ``LogLockedError`` (as it would against any other holder) and can simply be retried.
    """
    path = os.path.join(directory, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return LockStatus(False, False, None)
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        pid = int(text) if text.isdigit() else None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return LockStatus(True, True, pid)
        except OSError as exc:  # pragma: no cover - file systems without flock
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP):
                return LockStatus(True, False, pid)
            raise
        fcntl.flock(fd, fcntl.LOCK_UN)
        return LockStatus(True, False, pid)
    finally:
        os.close(fd)


# -- streaming frames -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One valid frame: a DATA record or a BATCH of ``count`` records from ``seq`` on."""

    segment: str  #: file name of its segment
    offset: int  #: byte offset of the frame header in that file
    seq: int
    count: int
    kind: int  #: DATA or BATCH
    payload: bytes

    def records(self) -> list[tuple[int, bytes]]:
        """``(seq, data)`` of each record in the frame."""
        if self.kind == BATCH:
            return list(enumerate(decode_batch(self.payload), self.seq))
        return [(self.seq, self.payload)]


@dataclass(frozen=True, slots=True)
class SegmentEnd:
    """How the scan of one segment ended.

    :ivar end: offset just past the last valid frame (0 if the header is bad)
    :ivar next_seq: the seq after the last valid record
    :ivar damage: what is wrong at ``end``, or None if the segment ends cleanly there
    :ivar vanished: the file was removed while the log was being read (a live log's
        ``truncate_before``); nothing was read from it
    """

    segment: SegmentFile
    end: int
    next_seq: int
    frames: int
    records: int
    damage: str | None = None
    vanished: bool = False


@dataclass(frozen=True, slots=True)
class Gap:
    """A segment does not start where the previous one ended (recovery calls this damage)."""

    segment: SegmentFile
    expected: int

    @property
    def reason(self) -> str:
        return f"gap: segment starts at seq {self.segment.first_seq}, {self.expected} expected"


def read_frames(
    seg: SegmentFile,
    max_length: int,
    *,
    resume: tuple[int, int] | None = None,
    chunk_size: int = READ_CHUNK,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[Frame | SegmentEnd]:
    """Yield the valid frames of ``seg`` in order, then one :class:`SegmentEnd`.

    Validity and the end rule are those of ``_recovery.scan_segment`` (same offsets, same
    reasons), but the file is read in ``chunk_size`` pieces rather than whole.

    :param resume: ``(offset, seq)`` of a frame boundary to start at instead of the header
    :param on_bytes: called with the number of bytes of each read, for progress display
    :raises FileNotFoundError: never; a segment that is gone gives ``SegmentEnd(vanished=True)``
    """
    try:
        f = open(seg.path, "rb", buffering=0)  # closed in the finally below
    except FileNotFoundError:
        yield SegmentEnd(seg, 0, seg.first_seq, 0, 0, vanished=True)
        return
    try:
        yield from _frames(f, seg, max_length, resume, chunk_size, on_bytes)
    finally:
        f.close()


def _frames(
    f: BinaryIO,
    seg: SegmentFile,
    max_length: int,
    resume: tuple[int, int] | None,
    chunk_size: int,
    on_bytes: Callable[[int], None] | None,
) -> Iterator[Frame | SegmentEnd]:
    def read(n: int) -> bytes:
        data = f.read(n) or b""
        if on_bytes is not None and data:
            on_bytes(len(data))
        return data

    if resume is None:
        head = read(SEGMENT_HEADER_SIZE)
        try:
            first = decode_segment_header(head)
        except FormatError as exc:
            yield SegmentEnd(seg, 0, seg.first_seq, 0, 0, f"bad segment header: {exc}")
            return
        if first != seg.first_seq:
            yield SegmentEnd(
                seg, 0, seg.first_seq, 0, 0, f"header says first seq {first}, name {seg.first_seq}"
            )
            return
        base, seq = SEGMENT_HEADER_SIZE, first
    else:
        base, seq = resume
        f.seek(base)
    buf = b""
    pos = 0  # buf[pos] is at file offset base + pos
    eof = False
    need = FRAME_HEADER_SIZE  # bytes wanted from pos before scanning
    frames = records = 0
    while True:
        if not eof and len(buf) - pos < need:
            # Keep only the unparsed part: the buffer holds at most one chunk plus one frame.
            want = max(chunk_size, need - (len(buf) - pos))
            parts = [buf[pos:]]
            got = 0
            while got < want:
                data = read(want - got)
                if not data:
                    eof = True
                    break
                parts.append(data)
                got += len(data)
            buf = b"".join(parts)
            base += pos
            pos = 0
            continue
        end, kind, count, reason = scan_frame(buf, pos, seq, max_length)
        if end >= 0:
            yield Frame(seg.name, base + pos, seq, count, kind, buf[pos + FRAME_HEADER_SIZE : end])
            frames += 1
            records += count
            seq += count
            pos = end
            need = FRAME_HEADER_SIZE
            continue
        if end == NEED_MORE and not eof:
            if len(buf) - pos >= FRAME_HEADER_SIZE:
                # scan_frame checked the length against max_length before saying NEED_MORE.
                need = FRAME_HEADER_SIZE + _LENGTH.unpack_from(buf, pos + 4)[0]
            else:
                need = FRAME_HEADER_SIZE
            if len(buf) - pos >= need:  # pragma: no cover - scan_frame would have decided
                raise AssertionError("scan_frame asked for bytes it had")
            continue
        damage: str | None = reason
        if end == END:
            damage = (
                None
                if _rest_is_zero(buf, pos, eof, read, chunk_size)
                else ("non-zero bytes after a zero frame header")
            )
        yield SegmentEnd(seg, base + pos, seq, frames, records, damage)
        return


def _rest_is_zero(buf: bytes, pos: int, eof: bool, read: Callable[[int], bytes], chunk_size: int) -> bool:
    if not is_zero(buf, pos):
        return False
    while not eof:
        data = read(chunk_size)
        if not data:
            return True
        if not is_zero(data, 0):
            return False
    return True


def scan_log(
    log: LogDir,
    max_length: int,
    *,
    from_seq: int = 0,
    live_retries: int = 0,
    retry_delay: float = 0.05,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[Frame | SegmentEnd | Gap]:
    """Yield every frame of the log in seq order, a :class:`SegmentEnd` after each segment
    and a :class:`Gap` before a segment that does not continue the previous one.

    Segments are read one at a time, so memory stays bounded however large the log is.

    :param from_seq: skip (without reading them) the segments that end before this seq
    :param live_retries: when the last segment ends in damage, read on from there this many
        more times (``retry_delay`` seconds apart) before reporting it: on a log that is open
        for writing, a frame being written can look torn for an instant
    """
    segs = log.live_segments
    start = 0
    while start + 1 < len(segs) and segs[start + 1].first_seq <= from_seq:
        start += 1
    expected: int | None = None
    for i in range(start, len(segs)):
        seg = segs[i]
        if expected is not None and seg.first_seq != expected:
            yield Gap(seg, expected)
        last = i == len(segs) - 1
        frames = records = 0
        resume: tuple[int, int] | None = None
        tries = live_retries if last else 0
        while True:
            result: SegmentEnd | None = None
            for item in read_frames(seg, max_length, resume=resume, on_bytes=on_bytes):
                if isinstance(item, SegmentEnd):
                    result = item
                else:
                    yield item
            assert result is not None
            frames += result.frames
            records += result.records
            if result.damage is None or tries <= 0 or result.end < SEGMENT_HEADER_SIZE:
                break
            tries -= 1
            time.sleep(retry_delay)
            resume = (result.end, result.next_seq)
        end = SegmentEnd(seg, result.end, result.next_seq, frames, records, result.damage, result.vanished)
        yield end
        # After damage the next segment cannot continue the seqs: that is the same damage, not a gap.
        expected = None if end.vanished or end.damage is not None else end.next_seq


# -- what recovery would do -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """What opening the log with one recovery mode would do, found without changing anything.

    :ivar error: the CorruptLogError opening would raise (then nothing below the leftovers
        would be cut)
    :ivar report: the RecoveryReport opening would produce (None: nothing cut)
    :ivar unlinks: files recovery would remove, in order (leftovers and damaged segments)
    :ivar truncations: ``(path, new_size)`` of the files recovery would cut
    :ivar next_seq: the seq the next append would get
    """

    mode: str
    error: CorruptLogError | None
    report: RecoveryReport | None
    unlinks: tuple[str, ...]
    truncations: tuple[tuple[str, int], ...]
    next_seq: int


class DryRunFileOps:
    """A :class:`~asyncwal._fileops.FileOps` that reads the real files and records every
    change instead of making it. Only what :func:`recover` uses is supported."""

    def __init__(self) -> None:
        self._os = OsFileOps()
        self._paths: dict[int, str] = {}
        self._new: dict[int, str] = {}  # files "created" (kept nowhere): fake negative fds
        self.unlinks: list[str] = []
        self.truncations: list[tuple[str, int]] = []
        #: files recovery would replace atomically (e.g. META, to drop a checkpoint)
        self.replacements: list[str] = []

    def makedirs(self, path: str) -> None:
        raise PermissionError(errno.EROFS, "dry run: makedirs", path)

    def listdir(self, path: str) -> list[str]:
        return [n for n in os.listdir(path) if os.path.join(path, n) not in self.unlinks]

    def exists(self, path: str) -> bool:
        return path not in self.unlinks and os.path.exists(path)

    def open(self, path: str, *, create: bool = False, exclusive: bool = False) -> int:
        if create or exclusive:
            fd = -2 - len(self._new)
            self._new[fd] = path
            return fd
        return self.open_readonly(path)

    def open_readonly(self, path: str) -> int:
        fd = self._os.open_readonly(path)
        self._paths[fd] = path
        return fd

    def close(self, fd: int) -> None:
        if fd in self._new:
            return
        self._paths.pop(fd, None)
        os.close(fd)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        if fd not in self._new:
            raise PermissionError(errno.EROFS, "dry run: pwrite")
        return len(data)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return os.pread(fd, size, offset)

    def size(self, fd: int) -> int:
        return os.fstat(fd).st_size

    def truncate(self, fd: int, size: int) -> None:
        self.truncations.append((self._paths[fd], size))

    def sync(self, fd: int) -> None:
        pass

    def sync_dir(self, path: str) -> None:
        pass

    def rename(self, src: str, dst: str) -> None:
        if src not in self._new.values():
            raise PermissionError(errno.EROFS, "dry run: rename", src)
        self.replacements.append(dst)

    def unlink(self, path: str) -> None:
        self.unlinks.append(path)

    def lock(self, path: str) -> int:
        raise PermissionError(errno.EROFS, "dry run: lock", path)

    def unlock(self, handle: int) -> None:
        raise PermissionError(errno.EROFS, "dry run: unlock")

    def open_reader(self, path: str) -> AsyncReader:
        raise PermissionError(errno.EROFS, "dry run: open_reader", path)

    def kind(self, path: str) -> FileKind:
        return FileKind.MISSING if path in self.unlinks else self._os.kind(path)

    def lock_probe(self, path: str) -> LockState:
        return self._os.lock_probe(path)


@contextmanager
def quiet_recovery_log() -> Iterator[None]:
    """Drop the engine's "recovery cut ..." log records meanwhile: the command line says what
    recovery did (or would do) itself, and a dry run must not claim that anything was cut."""
    logger = logging.getLogger("asyncwal")

    def drop(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("asyncwal: recovery cut")

    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def plan_recovery(directory: str, mode: str, max_length: int) -> Plan:
    """Run the engine's recovery in ``mode`` against :class:`DryRunFileOps`.

    Reads each segment whole, as recovery does (memory: one segment), up to the first damage.
    """
    ops = DryRunFileOps()
    try:
        with quiet_recovery_log():
            recovered = recover(ops, directory, mode, max_length)
    except CorruptLogError as exc:
        return Plan(mode, exc, None, tuple(ops.unlinks), tuple(ops.truncations), 0)
    return Plan(mode, None, recovered.report, tuple(ops.unlinks), tuple(ops.truncations), recovered.next_seq)


# -- repair: keep a copy of whatever recovery cuts --------------------------------------------


@dataclass(frozen=True, slots=True)
class Salvaged:
    """Bytes that ``repair`` kept before recovery cut them.

    :ivar path: the segment they were cut from
    :ivar offset: where the cut started in it (0: the whole file was removed)
    :ivar length: bytes kept (everything from ``offset`` to the end of the file)
    :ivar copy: the file holding them
    """

    path: str
    offset: int
    length: int
    copy: str


def free_broken_name(path: str) -> str:
    """``path.broken``, or ``path.broken.N`` with the smallest N that is free: a second
    repair never overwrites what the first one kept."""
    candidate = path + BROKEN_SUFFIX
    n = 1
    while os.path.lexists(candidate):
        n += 1
        candidate = f"{path}{BROKEN_SUFFIX}.{n}"
    return candidate


class SalvagingFileOps(OsFileOps):
    """The real file system, except that segment bytes are kept before they are cut.

    * ``truncate`` of a segment first copies the bytes beyond the new size to a ``.broken``
      file, fsyncs it and the directory, and only then truncates;
    * ``unlink`` of a segment renames it to a ``.broken`` name instead (recovery fsyncs the
      directory afterwards, as it would after an unlink).

    ``unlink`` of anything else (``*.tmp`` leftovers) is a plain unlink, listed in ``removed``.
    """

    def __init__(self) -> None:
        self.salvaged: list[Salvaged] = []
        self.removed: list[str] = []
        self._paths: dict[int, str] = {}

    def open(self, path: str, *, create: bool = False, exclusive: bool = False) -> int:
        fd = super().open(path, create=create, exclusive=exclusive)
        self._paths[fd] = path
        return fd

    def close(self, fd: int) -> None:
        self._paths.pop(fd, None)
        super().close(fd)

    def truncate(self, fd: int, size: int) -> None:
        path = self._paths.get(fd, "")
        current = self.size(fd)
        if size < current and parse_segment_name(os.path.basename(path)) is not None:
            copy = free_broken_name(path)
            out = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
            try:
                offset = size
                while offset < current:
                    chunk = os.pread(fd, min(READ_CHUNK, current - offset), offset)
                    if not chunk:
                        break
                    os.write(out, chunk)
                    offset += len(chunk)
                os.fsync(out)
            finally:
                os.close(out)
            self.sync_dir(os.path.dirname(path) or ".")
            self.salvaged.append(Salvaged(path, size, current - size, copy))
        super().truncate(fd, size)

    def unlink(self, path: str) -> None:
        if parse_segment_name(os.path.basename(path)) is None:
            super().unlink(path)
            self.removed.append(path)
            return
        copy = free_broken_name(path)
        length = os.stat(path).st_size
        os.rename(path, copy)
        self.salvaged.append(Salvaged(path, 0, length, copy))
