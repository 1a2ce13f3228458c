"""Read-only inspection of a log directory, for the command line (``asyncwal info|dump|verify``).

Nothing here calls :func:`asyncwal.open`, takes the writer's lock or changes a byte of the
log: every read goes through :class:`~asyncwal._fileops_wrappers.ReadOnlyFileOps` over the
FileOps given (the real file system, or one in memory in tests). What the directory holds,
and what opening it would do, come from recovery's own
:func:`~asyncwal._recovery.scan_log` and :func:`~asyncwal._recovery.decide` (which change
nothing): the command line and ``open()`` cannot disagree.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._filenames import LOCK_NAME
from ._fileops import NotRegularFileError
from ._fileops_wrappers import ReadOnlyFileOps
from ._reader import Frame, SegmentFrames
from ._recovery import LogScan, scan_log

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ._fileops import FileOps

__all__ = (
    "LockStatus",
    "LogFrames",
    "NotALogError",
    "Stop",
    "lock_status",
    "quiet_recovery_log",
    "read_log",
)


class NotALogError(Exception):
    """The directory does not exist, or holds no segment, META or LOCK file."""


def read_log(
    ops: FileOps,
    directory: str,
    max_length: int,
    *,
    read: str,
    count_after: bool = True,
    live_retries: int = 0,
    on_bytes: Callable[[int], None] | None = None,
) -> LogScan:
    """Recovery's scan of ``directory`` (see _recovery.scan_log), through read-only file
    operations over ``ops``: nothing can be changed.

    :raises NotALogError: it does not exist, is not a directory, or holds no log file
    """
    try:
        scan = scan_log(
            ReadOnlyFileOps(ops),
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

    def __init__(
        self, ops: FileOps, log: LogScan, max_length: int, *, from_seq: int = 0, live_retries: int = 0
    ) -> None:
        self._ops = ReadOnlyFileOps(ops)
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
        ops = self._ops
        expected: int | None = None
        for i in range(start, len(segs)):
            seg = segs[i]
            if seg.not_regular is not None:
                self.stop = Stop(seg.name, 0, f"a {seg.not_regular}, not a regular file", seg.first_seq)
                return
            if expected is not None and seg.first_seq != expected:
                reason = f"gap: segment starts at seq {seg.first_seq}, {expected} expected"
                self.stop = Stop(seg.name, 0, reason, expected)
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
    """Who holds the directory lock, found with ``FileOps.lock_probe`` (which changes nothing
    and holds a lock for an instant at most).

    :ivar exists: there is a LOCK file (the log was opened at least once)
    :ivar held: a live opener holds the lock
    :ivar pid: the pid written in LOCK by its holder (a free LOCK that still names a pid was
        not released cleanly: its holder died with the log open)
    :ivar problem: LOCK is not a regular file (then nobody can open the log)
    """

    exists: bool
    held: bool
    pid: int | None
    problem: str | None = None

    def describe(self) -> str:
        if self.problem is not None:
            return f"unusable: LOCK is {self.problem}"
        if not self.exists:
            return "free (no LOCK file)"
        if self.held:
            return f"held by pid {self.pid}" if self.pid is not None else "held (pid not written yet)"
        if self.pid is not None:
            return f"free (pid {self.pid} held it last and did not close the log cleanly)"
        return "free"


def lock_status(ops: FileOps, directory: str) -> LockStatus:
    """Probe ``directory/LOCK`` without taking it (for more than an instant) or changing it."""
    try:
        state = ops.lock_probe(os.path.join(directory, LOCK_NAME))
    except NotRegularFileError as exc:
        return LockStatus(True, False, None, str(exc.strerror))
    except (FileNotFoundError, NotADirectoryError):
        return LockStatus(False, False, None)
    return LockStatus(state.exists, state.held, state.pid)


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
