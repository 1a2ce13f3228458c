"""Read-only inspection of a log directory, for the command line (``asyncwal info|dump|verify``),
and the copy-before-cut file operations of ``asyncwal repair``.

Nothing here calls :func:`asyncwal.open`, takes the writer's lock or changes a byte of the
log, except :class:`SalvagingFileOps`, which ``repair`` hands to ``asyncwal.open`` on purpose.
What the directory holds, and what opening it would do, come from recovery's own
:func:`~asyncwal._recovery.scan_log` and :func:`~asyncwal._recovery.decide` (which change
nothing): the command line and ``open()`` cannot disagree.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._filenames import BROKEN_SUFFIX, LOCK_NAME, parse_segment_name
from ._fileops import OsFileOps
from ._reader import READ_CHUNK, Frame, SegmentFrames
from ._recovery import LogScan, scan_log

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = (
    "LockStatus",
    "LogFrames",
    "Stop",
    "NotALogError",
    "SalvagingFileOps",
    "Salvaged",
    "free_broken_name",
    "lock_status",
    "quiet_recovery_log",
    "read_log",
)


class NotALogError(Exception):
    """The directory does not exist, or holds no segment, META or LOCK file."""


def read_log(
    directory: str,
    max_length: int,
    *,
    read: str,
    count_after: bool = True,
    live_retries: int = 0,
    on_bytes: Callable[[int], None] | None = None,
) -> LogScan:
    """Recovery's scan of ``directory`` on the real file system (see _recovery.scan_log).

    :raises NotALogError: it does not exist, is not a directory, or holds no log file
    """
    try:
        scan = scan_log(
            OsFileOps(),
            directory,
            max_length,
            read=read,
            count_after=count_after,
            live_retries=live_retries,
            on_bytes=on_bytes,
        )
    except FileNotFoundError:
        raise NotALogError(f"{directory}: no such directory") from None
    except NotADirectoryError:
        raise NotALogError(f"{directory}: not a directory") from None
    if not (
        scan.segments
        or scan.leftover_segments
        or scan.has_meta_file
        or scan.has_lock_file
        or scan.leftover_tmp
    ):
        raise NotALogError(f"{directory}: not an asyncwal log (no segment, META or LOCK file)")
    return scan


# -- reading the records in order ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stop:
    """Why reading a log's records in order stopped before the end of its last segment.

    :ivar segment: file name of the segment where it stopped
    :ivar offset: byte offset there
    :ivar reason: what is wrong
    :ivar next_seq: the seq after the last record read
    """

    segment: str
    offset: int
    reason: str
    next_seq: int


class LogFrames:
    """The valid frames of a scanned log, segment by segment, in seq order, each as
    ``(segment name, frame)``; afterwards :attr:`stop` says why it stopped early, if it did
    (damage, a gap, a file that is not a regular file). Memory: one chunk plus one frame.

    :param from_seq: skip (without reading them) the segments that end before this seq
    :param live_retries: read a damaged-looking end of the last segment again this many
        times (a log open for writing)
    """

    def __init__(self, log: LogScan, max_length: int, *, from_seq: int = 0, live_retries: int = 0) -> None:
        self._log = log
        self._max_length = max_length
        self._from_seq = from_seq
        self._retries = live_retries
        self.stop: Stop | None = None

    def __iter__(self) -> Iterator[tuple[str, Frame]]:
        segs = self._log.segments
        start = 0
        while start + 1 < len(segs) and segs[start + 1].first_seq <= self._from_seq:
            start += 1
        ops = OsFileOps()
        expected: int | None = None
        for i in range(start, len(segs)):
            seg = segs[i]
            if expected is not None and seg.first_seq != expected:
                reason = f"gap: segment starts at seq {seg.first_seq}, {expected} expected"
                self.stop = Stop(seg.name, 0, reason, expected)
                return
            if seg.not_regular is not None:
                self.stop = Stop(seg.name, 0, f"a {seg.not_regular}, not a regular file", seg.first_seq)
                return
            try:
                fd = ops.open_readonly(seg.path)
            except FileNotFoundError:  # removed by a live log's truncate_before meanwhile
                expected = None
                continue
            try:
                retries = self._retries if i == len(segs) - 1 else 0
                frames = SegmentFrames(ops, fd, seg.first_seq, self._max_length, retries=retries)
                for frame in frames:
                    yield seg.name, frame
                end = frames.end
            finally:
                ops.close(fd)
            if end.reason is not None:
                self.stop = Stop(seg.name, end.offset, end.reason, end.next_seq)
                return
            expected = end.next_seq


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
