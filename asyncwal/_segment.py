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
* A group that must be synced is written with the FileOps' ``pwritev_sync`` (one
  ``pwritev2(RWF_DSYNC)`` on Linux instead of ``pwrite`` + ``fdatasync``) only while the
  file has no unsynced change before it: that call may make only its own bytes durable.
  The zero-fill that follows the group goes in the same call, so the zeros a later record
  is written over are as durable as they would be after ``fdatasync``.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from bisect import bisect_right
from collections import deque
from itertools import accumulate
from typing import TYPE_CHECKING, NamedTuple, ParamSpec, cast

from ._filenames import META_NAME, segment_name, tmp_name
from ._fileops import FileOps, PwritevSync, write_all, write_all_durable
from ._format import (
    MULTI,
    MULTI_OVERHEAD,
    SEGMENT_HEADER_SIZE,
    Meta,
    encode_frame,
    encode_meta,
    encode_segment_header,
    frame_header,
    frame_size,
    multi_frame_size,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

_P = ParamSpec("_P")

__all__ = ("MAX_GROUP_FRAME", "PREALLOCATE_STEP", "Batch", "SegmentWriter", "write_file_atomically")

PREALLOCATE_STEP = 1 << 18
#: Records written together share a MULTI frame of at most this many bytes (a single record
#: larger than that gets a SINGLE frame of its own).
MAX_GROUP_FRAME = 1 << 20
_ZEROS = bytes(PREALLOCATE_STEP)

logger = logging.getLogger("asyncwal")


def write_file_atomically(ops: FileOps, directory: str, name: str, data: bytes) -> None:
    """Replace ``directory/name`` with ``data`` so that a crash leaves the old or the new file.

    Write ``name.tmp``, sync it, rename it over ``name``, sync the directory.
    """
    path = os.path.join(directory, name)
    tmp = tmp_name(path)
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


class Batch(NamedTuple):
    """An ``append_batch()`` in a group: a MULTI payload that keeps a frame of its own."""

    body: bytes
    records: int  #: how many records it holds


class SegmentWriter:
    """Appends encoded frames to the active segment and rotates to new ones.

    :param ops: the file-operations seam
    :param directory: the log directory
    :param segment_size: bytes after which a new segment is started
    :param preallocate: zero-fill ahead of the write position
    :param max_frame: the largest frame readers accept (see _format.max_frame_length)
    :param log_id: the log's id, written in every META
    """

    def __init__(
        self,
        ops: FileOps,
        directory: str,
        segment_size: int,
        preallocate: bool,
        max_frame: int,
        *,
        log_id: str,
    ) -> None:
        self._ops = ops
        self._log_id = log_id
        self._dir = directory
        self._segment_size = segment_size
        self._frame_cap = min(max_frame, MAX_GROUP_FRAME)
        self._preallocate = preallocate
        self._pwritev_sync: PwritevSync | None = getattr(ops, "pwritev_sync", None)
        self._fd = -1
        # Whether the active file may hold changes not yet synced (then a group is written
        # with pwrite and synced with sync, never with pwritev_sync alone).
        self._dirty = False
        self._plain_writes = 0  # plain writes so far (a sync compares it before and after)
        self.first_seq = 0  # first seq of the active segment
        self.offset = 0  # where the next frame goes in the active segment
        self._allocated = 0  # bytes of the active file that exist (zeros past ``offset``)
        # Observability, read by the loop thread as snapshots (deque appends are atomic).
        self.fsync_seconds: deque[float] = deque(maxlen=4096)
        self.fsync_count = 0
        self.fsync_total_seconds = 0.0
        self.slow_fsync_seconds = 1.0
        self._broken: BaseException | None = None

    @property
    def fd(self) -> int:
        """The active segment's file handle; -1 when none is open."""
        return self._fd

    # -- opening ---------------------------------------------------------------------------

    def open_existing(self, first_seq: int, end: int) -> None:
        """Continue the segment ``first_seq``, whose valid frames end at ``end``."""
        path = os.path.join(self._dir, segment_name(first_seq))
        self._fd = self._ops.open(path)
        self.first_seq = first_seq
        self.offset = end
        self._allocated = self._ops.size(self._fd)
        self._dirty = True  # recovery may have cut or zeroed its tail

    def create(self, first_seq: int) -> None:
        """Create and switch to a new segment whose first record will be ``first_seq``.

        The previous segment must have been synced and closed by the caller.
        """
        name = segment_name(first_seq)
        path = os.path.join(self._dir, name)
        tmp = tmp_name(path)
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
            self._timed(self._ops.sync, fd)
            self._ops.rename(tmp, path)
            self._ops.sync_dir(self._dir)
        except BaseException:
            self._ops.close(fd)
            raise
        self._fd = fd
        self.first_seq = first_seq
        self.offset = SEGMENT_HEADER_SIZE
        self._allocated = allocated
        self._dirty = False

    # -- writing ---------------------------------------------------------------------------

    def write_group(
        self, items: Sequence[bytes | Batch], first_seq: int, last_seq: int, sync: bool, batches: bool
    ) -> tuple[list[int], int]:
        """Frame and write a group of records, rotating where a segment fills up.

        Consecutive single records share MULTI frames (one header and one CRC for many); a
        :class:`Batch` keeps a frame of its own. No frame spans two segments.

        :param items: the payloads of single records, and Batch items, in seq order
        :param first_seq: the seq of the first record in ``items``
        :param last_seq: the last seq held by ``items``
        :param sync: sync the active segment once everything is written
        :param batches: whether ``items`` holds any Batch (if not, a faster path is taken)
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
            return self._write_group(items, first_seq, last_seq, sync, batches)
        except BaseException as exc:
            # Fail-stop: a group queued behind a failed one is never written.
            self._broken = exc
            raise

    def write_in_place(self, seq: int, payload: bytes) -> bool:
        """Write one record as a SINGLE frame with one plain write, at ``offset``, if that
        needs no rotation and no zero fill; return False (nothing written) if it would.

        The caller's counterpart of ``write_group(..., sync=False)`` for a lone record, made
        on the event-loop thread (batch/none modes, the I/O thread idle).

        :raises OSError: the write failed; the writer is then broken, as after write_group
        """
        end = self.offset + frame_size(len(payload))
        if self._broken is not None or end > (self._allocated if self._preallocate else self._segment_size):
            return False
        frame = frame_header(seq, payload) + payload
        try:
            if self._ops.pwrite(self._fd, frame, self.offset) != len(frame):  # short: finish it
                write_all(self._ops, self._fd, frame, self.offset)
        except BaseException as exc:
            self._broken = exc
            raise
        self._dirty = True
        self._plain_writes += 1  # after the write: see sync()
        self.offset = end
        if end > self._allocated:  # no preallocation: the file grew
            self._allocated = end
        return True

    def fits_in_place(self, items: Sequence[bytes | Batch], nbytes: int, batches: bool) -> bool:
        """Whether :meth:`write_group` (without sync) of ``items`` would be one plain write:
        no rotation and no zero fill, only the group's frames written at ``offset``.

        :param nbytes: the items' payload bytes (a Batch counts its whole body)
        :param batches: whether ``items`` holds any Batch
        """
        # Single records share one MULTI frame. With Batch items, at most one frame per item,
        # each no larger than a MULTI frame of its own: a bound, not the exact size.
        bound = multi_frame_size(len(items), nbytes) + (len(items) * MULTI_OVERHEAD if batches else 0)
        limit = self._allocated if self._preallocate else self._segment_size
        return self.offset + bound <= limit and bound <= self._frame_cap

    def _write_group(
        self, items: Sequence[bytes | Batch], seq: int, last_seq: int, sync: bool, batches: bool
    ) -> tuple[list[int], int]:
        created: list[int] = []
        durable = 0
        out: list[bytes] = []  # encoded frames not yet written to the active segment
        used = self.offset  # where the next frame would start
        i, n = 0, len(items)
        while i < n:
            room = self._segment_size - used
            item = items[i]
            if batches and type(item) is Batch:
                end, count, size = i + 1, item.records, frame_size(len(item.body))
            else:
                end = _run_end(items, i) if batches else n
                end, size = _fit(items, i, end, min(room, self._frame_cap))
                count = end - i
            if size > room and used > SEGMENT_HEADER_SIZE:
                if out:
                    self._append(b"".join(out))
                    out = []
                self.rotate(seq)
                created.append(seq)
                durable = seq - 1
                used = self.offset
                continue
            if type(item) is Batch:
                out += (frame_header(seq, item.body, MULTI), item.body)
            else:
                out += encode_frame(seq, cast("Sequence[bytes]", items[i:end]))
            used += size
            seq += count
            i = end
        data = (b"".join(out) if len(out) > 2 else out[0] + out[1]) if out else b""
        if sync and data and not self._dirty and self._pwritev_sync is not None:
            self._append(data, durable=True)
        else:
            if data:
                self._append(data)
            if sync:
                self.sync()
        return created, last_seq if sync else durable

    def _append(self, data: bytes, durable: bool = False) -> None:
        """Write ``data`` at the write position, keeping the zero-filled margin ahead of it.

        With ``durable``, data and zero-fill go in one ``pwritev_sync`` call (the caller
        checks that the file has no unsynced change, and that the FileOps has that method).
        """
        start, end = self.offset, self.offset + len(data)
        zeros = 0  # how many zeros to write after ``data``
        if end > self._allocated:
            if self._preallocate:
                step_end = -(-end // PREALLOCATE_STEP) * PREALLOCATE_STEP
                zeros = max(0, min(step_end, self._segment_size) - end)
            self._allocated = end + zeros
        fill = memoryview(_ZEROS)[:zeros]
        if durable:
            assert self._pwritev_sync is not None
            buffers = (data, fill) if fill else (data,)
            self._timed(write_all_durable, self._pwritev_sync, self._fd, buffers, start)
        else:
            self._dirty = True
            write_all(self._ops, self._fd, data, start)
            if fill:
                write_all(self._ops, self._fd, fill, end)
            self._plain_writes += 1  # after the write: see sync()
        self.offset = end

    def rotate(self, first_seq: int) -> None:
        """Sync and close the active segment, then create the one starting at ``first_seq``."""
        self.sync()
        self._ops.close(self._fd)
        self._fd = -1
        self.create(first_seq)

    def sync(self) -> None:
        """Sync the active segment.

        May run on the I/O thread while the event-loop thread makes a plain write (batch and
        none modes): such a write may or may not be covered, so the file counts as clean
        afterwards only if no plain write completed while the sync ran. A failed sync breaks
        the writer for good, as a failed write does.
        """
        if self._broken is not None:
            raise OSError(errno.EIO, "not synced: an earlier write or fsync failed") from self._broken
        writes = self._plain_writes
        try:
            self._timed(self._ops.sync, self._fd)
        except BaseException as exc:
            self._broken = exc
            raise
        if self._plain_writes == writes:
            self._dirty = False

    def _timed(self, call: Callable[_P, object], *args: _P.args, **kwargs: _P.kwargs) -> None:
        """Run ``call``, a sync or a durable write, and count it as an fsync in the stats."""
        start = time.perf_counter()
        call(*args, **kwargs)
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
                self._timed(self._ops.sync, fd)
        finally:
            self._ops.close(fd)

    # -- META and truncation ---------------------------------------------------------------

    def write_meta(self, low_water: int, checkpoint: tuple[int, bytes] | None) -> None:
        """Replace META (atomically) with this low-water mark and checkpoint, and the log id."""
        meta = Meta(low_water, checkpoint, self._log_id)
        write_file_atomically(self._ops, self._dir, META_NAME, encode_meta(meta))

    def remove_segments(self, first_seqs: Sequence[int]) -> None:
        """Unlink the given (whole, inactive) segments, oldest first, then sync the directory."""
        for first in first_seqs:
            if first == self.first_seq:
                raise AssertionError("the active segment is never removed")
            self._ops.unlink(os.path.join(self._dir, segment_name(first)))
        self._ops.sync_dir(self._dir)


def _run_end(items: Sequence[bytes | Batch], i: int) -> int:
    """The end of the run of single records that starts at ``items[i]``."""
    n = len(items)
    while i < n and type(items[i]) is not Batch:
        i += 1
    return i


def _fit(items: Sequence[bytes | Batch], i: int, end: int, room: int) -> tuple[int, int]:
    """The longest run ``items[i:j]`` (``j <= end``, at least one record) whose frame fits in
    ``room`` bytes, and that frame's size: ``(j, size)``."""
    run = items[i:end]
    k = len(run)
    size = multi_frame_size(k, sum(map(len, run)))
    if k == 1 or size <= room:  # the common case: the whole run fits
        return end, size if k > 1 else frame_size(len(run[0]))
    lengths = list(accumulate(map(len, run), initial=0))  # lengths[k]: payload bytes of k records

    def run_frame_size(k: int) -> int:
        return multi_frame_size(k, lengths[k])

    k = max(1, bisect_right(range(k + 1), room, key=run_frame_size) - 1)
    if k == 1:
        return i + 1, frame_size(lengths[1])
    return i + k, run_frame_size(k)
