"""Segment files: creation, appending, rotation, META updates. Plain synchronous code.

Everything here runs on the log's single executor thread (or in a test, directly), never on
the event-loop thread. Invariants kept by :class:`SegmentWriter`:

* A segment file appears under its final name only after its header is durable: it is
  written as ``<name>.tmp``, synced, renamed, and the directory is synced before any record
  in it can be acknowledged at DISK.
* A segment is synced before the next one is created, so every segment but the last holds
  only durable records.
* With ``preallocate``, the file is zero-filled ahead of the write position in
  ``PREALLOCATE_STEP`` steps; a record is only ever written over zeros, so recovery can tell
  the end of the log from damage (see _format.py).
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections import deque
from typing import TYPE_CHECKING

from ._fileops import FileOps, write_all
from ._format import (
    META_NAME,
    SEGMENT_HEADER_SIZE,
    encode_meta,
    encode_segment_header,
    frame_seq,
    segment_name,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("PREALLOCATE_STEP", "SegmentWriter", "write_file_atomically")

PREALLOCATE_STEP = 1 << 20
_ZEROS = bytes(PREALLOCATE_STEP)

logger = logging.getLogger("asyncwal")


def write_file_atomically(ops: FileOps, directory: str, name: str, data: bytes) -> None:
    """Replace ``directory/name`` with ``data`` so that a crash leaves the old or the new file.

    Write ``name.tmp``, sync it, rename it over ``name``, sync the directory.
    """
    path = os.path.join(directory, name)
    tmp = path + ".tmp"
    if ops.exists(tmp):
        ops.unlink(tmp)
    fd = ops.open(tmp, create=True, exclusive=True)
    try:
        write_all(ops, fd, data, 0)
        ops.sync(fd)
    finally:
        ops.close(fd)
    ops.rename(tmp, path)
    ops.sync_dir(directory)


class SegmentWriter:
    """Appends encoded frames to the active segment and rotates to new ones.

    :param ops: the file-operations seam
    :param directory: the log directory
    :param segment_size: bytes after which a new segment is started
    :param preallocate: zero-fill ahead of the write position
    """

    def __init__(self, ops: FileOps, directory: str, segment_size: int, preallocate: bool) -> None:
        self._ops = ops
        self._dir = directory
        self._segment_size = segment_size
        self._preallocate = preallocate
        self._fd = -1
        self.first_seq = 0  # first seq of the active segment
        self.offset = 0  # where the next frame goes in the active segment
        self._allocated = 0  # bytes of the active file that exist (zeros past ``offset``)
        # Observability, read by the loop thread as snapshots (deque appends are atomic).
        self.fsync_seconds: deque[float] = deque(maxlen=4096)
        self.fsync_count = 0
        self.fsync_total_seconds = 0.0
        self.slow_fsync_seconds = 1.0
        self._broken: BaseException | None = None

    # -- opening ---------------------------------------------------------------------------

    def open_existing(self, first_seq: int, end: int) -> None:
        """Continue the segment ``first_seq``, whose valid frames end at ``end``."""
        path = os.path.join(self._dir, segment_name(first_seq))
        self._fd = self._ops.open(path)
        self.first_seq = first_seq
        self.offset = end
        self._allocated = self._ops.size(self._fd)

    def create(self, first_seq: int) -> None:
        """Create and switch to a new segment whose first record will be ``first_seq``.

        The previous segment must have been synced and closed by the caller.
        """
        name = segment_name(first_seq)
        path = os.path.join(self._dir, name)
        tmp = path + ".tmp"
        if self._ops.exists(tmp):
            self._ops.unlink(tmp)
        fd = self._ops.open(tmp, create=True, exclusive=True)
        try:
            header = encode_segment_header(first_seq)
            allocated = SEGMENT_HEADER_SIZE
            if self._preallocate:
                allocated = max(SEGMENT_HEADER_SIZE, min(PREALLOCATE_STEP, self._segment_size))
                header += _ZEROS[: allocated - SEGMENT_HEADER_SIZE]
            write_all(self._ops, fd, header, 0)
            self._timed_sync(fd)
            self._ops.rename(tmp, path)
            self._ops.sync_dir(self._dir)
        except BaseException:
            self._ops.close(fd)
            raise
        self._fd = fd
        self.first_seq = first_seq
        self.offset = SEGMENT_HEADER_SIZE
        self._allocated = allocated

    # -- writing ---------------------------------------------------------------------------

    def write_group(
        self, parts: Sequence[bytes], nbytes: int, last_seq: int, sync: bool
    ) -> tuple[list[int], int]:
        """Write a group of frames, rotating where a segment fills up.

        :param parts: frames as alternating header and payload parts, in seq order
        :param nbytes: total size of ``parts``
        :param last_seq: the last seq held by ``parts``
        :param sync: sync the active segment once everything is written
        :return: ``(created, durable)``: first seqs of the segments created, and the highest
            seq known durable after this call (0 if nothing was synced)
        :raises OSError: from the file system; the group's outcome is then unknown and the
            caller must stop using this writer
        """
        if self._broken is not None:
            raise OSError(
                errno.EIO, "not written: an earlier write or fsync of this log failed"
            ) from self._broken
        try:
            return self._write_group(parts, nbytes, last_seq, sync)
        except BaseException as exc:
            # Fail-stop: a group queued behind a failed one is never written.
            self._broken = exc
            raise

    def _write_group(
        self, parts: Sequence[bytes], nbytes: int, last_seq: int, sync: bool
    ) -> tuple[list[int], int]:
        created: list[int] = []
        durable = 0
        if self.offset + nbytes <= self._segment_size or (
            self.offset == SEGMENT_HEADER_SIZE and len(parts) == 2
        ):
            self._append(b"".join(parts) if len(parts) > 2 else parts[0] + parts[1])
        else:
            chunk: list[bytes] = []
            chunk_bytes = 0
            for i in range(0, len(parts), 2):
                size = len(parts[i]) + len(parts[i + 1])
                used = self.offset + chunk_bytes
                if used + size > self._segment_size and used > SEGMENT_HEADER_SIZE:
                    if chunk:
                        self._append(b"".join(chunk))
                        chunk, chunk_bytes = [], 0
                    first = frame_seq(parts[i])
                    self.rotate(first)
                    durable = first - 1
                    created.append(first)
                chunk += (parts[i], parts[i + 1])
                chunk_bytes += size
            if chunk:
                self._append(b"".join(chunk))
        if sync:
            self._timed_sync(self._fd)
            durable = last_seq
        return created, durable

    def _append(self, data: bytes) -> None:
        """Write ``data`` at the write position, keeping the zero-filled margin ahead of it."""
        end = self.offset + len(data)
        write_all(self._ops, self._fd, data, self.offset)
        if self._preallocate and end > self._allocated:
            target = max(end, min(-(-end // PREALLOCATE_STEP) * PREALLOCATE_STEP, self._segment_size))
            if target > end:
                write_all(self._ops, self._fd, memoryview(_ZEROS)[: target - end], end)
            self._allocated = target
        elif end > self._allocated:
            self._allocated = end
        self.offset = end

    def rotate(self, first_seq: int) -> None:
        """Sync and close the active segment, then create the one starting at ``first_seq``."""
        self._timed_sync(self._fd)
        self._ops.close(self._fd)
        self._fd = -1
        self.create(first_seq)

    def sync(self) -> None:
        self._timed_sync(self._fd)

    def _timed_sync(self, fd: int) -> None:
        start = time.perf_counter()
        self._ops.sync(fd)
        elapsed = time.perf_counter() - start
        self.fsync_seconds.append(elapsed)
        self.fsync_count += 1
        self.fsync_total_seconds += elapsed
        if elapsed > self.slow_fsync_seconds:
            logger.warning(
                "asyncwal: fsync took %.3f s in %s (threshold %.3f s): the disk is slow or overloaded",
                elapsed,
                self._dir,
                self.slow_fsync_seconds,
            )

    def close(self, sync: bool) -> None:
        """Close the active segment, syncing it first if ``sync``."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        try:
            if sync:
                self._timed_sync(fd)
        finally:
            self._ops.close(fd)

    # -- META and truncation ---------------------------------------------------------------

    def write_meta(self, low_water: int, checkpoint: tuple[int, bytes] | None) -> None:
        write_file_atomically(self._ops, self._dir, META_NAME, encode_meta(low_water, checkpoint))

    def remove_segments(self, first_seqs: Sequence[int]) -> None:
        """Unlink the given (whole, inactive) segments, oldest first, then sync the directory."""
        for first in first_seqs:
            if first == self.first_seq:
                raise AssertionError("the active segment is never removed")
            self._ops.unlink(os.path.join(self._dir, segment_name(first)))
        self._ops.sync_dir(self._dir)
