"""Reading a sharded log as a whole, from its files, without taking any lock.

Why it exists: the shards of a sharded log are written by other processes, and a process
reads them without being their writer: a worker answering ``GET /events?shard=3``, a
consumer that ships every shard somewhere else. ``Log.replay()`` and ``Log.follow()`` only
serve the process that holds the log (they learn its progress in memory); here the only
source of truth is the files, read as the command line reads them.

Invariants:

* **Read-only.** Nothing here takes a lock, opens a file for writing or changes a byte, so
  reading never disturbs a writer, nor a process that is about to claim a shard.
* **A record is yielded once its frame is complete and valid in the file**, in seq order
  within its shard: it has reached ``OS`` in the writer's process. Validity is the engine's
  (the command line's frame reader, the same CRC and seq rules). A record at ``OS`` can
  still be taken back by a power loss, in ``batch`` and ``none`` mode, or before its fsync.
* **End of what is there.** The last segment of a live shard ends with zeros or, for an
  instant, with a frame still being written: both end the records for now, and a follower
  reads on from there. A segment followed by another must end exactly where the next one
  begins; anything else is damage, raised as :class:`CorruptLogError`.
* **No order between shards.** A merged read takes turns between shards (each turn at most
  ``_TURN_BYTES`` of records), so a busy shard never starves a quiet one; the order of
  records from different shards means nothing.
* **Truncation.** ``replay`` skips what the owner's ``truncate_before`` removed; a follower
  never skips: it raises :class:`TruncatedError` when its next record is gone.
* Every file operation runs in a worker thread (``asyncio.to_thread``), never on the loop.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Final, NamedTuple

from ._errors import CorruptLogError, TruncatedError
from ._format import max_frame_length
from ._options import MiB
from ._reader import Record, SegmentFrames
from ._sharded import list_shards, shard_name

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Mapping

    from ._fileops import FileOps
    from ._reader import SegmentEnd
    from ._recovery import SegmentScan

__all__ = ("ShardRecord", "ShardedReader")

#: Bytes of records one shard hands over per turn (and per thread hop).
_TURN_BYTES: Final = 1 << 20
#: Seconds a follower waits before it looks at the files again, by default.
DEFAULT_POLL_INTERVAL: Final = 0.05


class ShardRecord(NamedTuple):
    """One record of a sharded log: its address ``(shard, seq)`` and its payload."""

    shard: int
    seq: int
    data: bytes


class _Cursor:
    """Where a reader is in one shard: the next seq it wants, and (once found) the segment
    and byte offset of that seq's frame. Used from one thread at a time."""

    def __init__(self, directory: str, shard: int, start: int | None, max_length: int, follow: bool) -> None:
        self.directory = directory
        self.shard = shard
        self.seq = start  # None: from the oldest record still there
        self.max_length = max_length
        self.follow = follow
        self.segment: SegmentScan | None = None
        self.resume: tuple[int, int] | None = None  # (offset, seq) of the next frame in segment

    def _segments(self) -> list[SegmentScan]:
        from ._fileops import OsFileOps
        from ._inspect import NotALogError, read_log

        try:
            return read_log(OsFileOps(), self.directory, self.max_length, read="list").segments
        except NotALogError:  # a shard directory made an instant ago, not opened yet
            return []

    def _place(self, segments: list[SegmentScan]) -> bool:
        """Find the segment holding ``self.seq``. False if the shard holds nothing yet."""
        if not segments:
            return False
        first = segments[0].first_seq
        if self.seq is None:
            self.seq = first
        elif self.seq < first:
            if self.follow:
                raise TruncatedError(
                    f"shard {self.shard}: seq {self.seq} was removed by truncate_before "
                    f"(the oldest record is now {first})"
                )
            self.seq = first
        self.segment = [s for s in segments if s.first_seq <= self.seq][-1]
        self.resume = None
        return True

    def step(self) -> tuple[list[Record], bool]:
        """Read on, up to about ``_TURN_BYTES`` of records. Sync (file I/O): call it in a
        worker thread. :return: the records, and whether more are there already."""
        from ._fileops import OsFileOps

        if self.segment is None and not self._place(self._segments()):
            return [], False
        assert self.segment is not None and self.seq is not None
        out: list[Record] = []
        size = 0
        ops = OsFileOps()
        try:
            fd = ops.open_readonly(self.segment.path)
        except FileNotFoundError:  # removed by the owner's truncate_before before it was read
            return out, self._after(None)
        try:
            frames = SegmentFrames(ops, fd, self.segment.first_seq, self.max_length, resume=self.resume)
            for frame in frames:
                for seq, data in frame.records(self.seq):
                    out.append(Record(seq, data))
                    size += len(data)
                self.seq = max(self.seq, frame.seq + frame.count)
                self.resume = (frame.offset + frame.size, frame.seq + frame.count)
                if size >= _TURN_BYTES:
                    return out, True
            end = frames.end
        finally:
            ops.close(fd)
        return out, self._after(end)

    def _after(self, end: SegmentEnd | None) -> bool:
        """At the end of the current segment's valid frames (None: the segment is gone):
        go on to the next segment if there is one. :return: whether more may be read at once."""
        assert self.segment is not None and self.seq is not None
        segments = self._segments()
        if end is None:
            self.segment = None
            return self._place(segments)  # a follower whose seq went with it raises here
        after = [s for s in segments if s.first_seq > self.segment.first_seq]
        if not after:
            return False  # the shard's last segment: the end of what is written so far
        if end.next_seq != after[0].first_seq or end.reason is not None:
            reason = (
                end.reason
                or f"segment ends at seq {end.next_seq - 1}, the next starts at {after[0].first_seq}"
            )
            raise CorruptLogError(
                f"shard {self.shard}: {reason}", segment=self.segment.path, offset=end.offset
            )
        self.segment, self.resume = after[0], None
        return True


class ShardedReader:
    """Reads every shard of the sharded log in ``path`` from its files, without locks, while
    other processes write it. Opening costs nothing: files are read when iterated.

    ``replay`` and ``follow`` read one shard in seq order; ``replay_all`` and
    ``follow_all`` read every shard, taking turns, so that no shard waits for another.
    Records of different shards have **no order** with respect to each other.

    :param path: the sharded log directory
    :param max_record_size: as the writers' option: readers never trust a length beyond it
    :param max_batch_bytes: as the writers' option
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_record_size: int = 16 * MiB,
        max_batch_bytes: int = 16 * MiB,
    ) -> None:
        self._path = os.fspath(path)
        self._max_length = max_frame_length(max_record_size, max_batch_bytes)

    @property
    def path(self) -> str:
        """The sharded log directory."""
        return self._path

    async def shards(self) -> list[int]:
        """The indexes of the shards that exist, ascending (none if ``path`` does not exist).

        :raises ValueError: ``path`` holds a plain log
        """
        return await asyncio.to_thread(self._list)

    def _list(self) -> list[int]:
        from ._fileops import OsFileOps

        ops: FileOps = OsFileOps()
        try:
            return list_shards(ops, self._path)
        except FileNotFoundError:
            return []

    def _cursor(self, shard: int, start: int | None, follow: bool) -> _Cursor:
        if isinstance(shard, bool) or not isinstance(shard, int) or shard < 0:
            raise ValueError(f"shard must be an int >= 0, not {shard!r}")
        if start is not None and (isinstance(start, bool) or not isinstance(start, int) or start < 1):
            raise ValueError(f"start must be an int >= 1, not {start!r}")
        return _Cursor(os.path.join(self._path, shard_name(shard)), shard, start, self._max_length, follow)

    def replay(self, shard: int, start: int | None = None) -> AsyncGenerator[Record, None]:
        """The records of shard ``shard`` from seq ``start`` (default: the oldest there), in
        order, as far as they are written now; then the iteration ends. A missing shard has
        no records.

        :raises ValueError: a negative ``shard`` or a ``start`` below 1 (at the call)
        :raises CorruptLogError: damage in the shard before its last segment
        """
        return self._replay(self._cursor(shard, start, follow=False))

    async def _replay(self, cursor: _Cursor) -> AsyncGenerator[Record, None]:
        more = True
        while more:
            records, more = await asyncio.to_thread(cursor.step)
            for rec in records:
                yield rec

    def follow(
        self, shard: int, start: int | None = None, *, poll_interval: float = DEFAULT_POLL_INTERVAL
    ) -> AsyncGenerator[Record, None]:
        """The records of shard ``shard`` from ``start`` on, in order, then each new one as it
        is written, forever (stop iterating to stop). A follower of another process's files
        looks at them again every ``poll_interval`` seconds once it has caught up.

        :raises ValueError: a bad ``shard``, ``start`` or ``poll_interval`` (at the call)
        :raises TruncatedError: the next record was removed by the owner's truncate_before
        :raises CorruptLogError: damage in the shard before its last segment
        """
        _check_interval(poll_interval)
        return self._follow(self._cursor(shard, start, follow=True), poll_interval)

    async def _follow(self, cursor: _Cursor, poll_interval: float) -> AsyncGenerator[Record, None]:
        while True:
            records, more = await asyncio.to_thread(cursor.step)
            for rec in records:
                yield rec
            if not more:
                await asyncio.sleep(poll_interval)

    def replay_all(self, start: Mapping[int, int] | None = None) -> AsyncGenerator[ShardRecord, None]:
        """The records of every shard as far as they are written now, each shard in seq
        order, shards taking turns; then the iteration ends.

        :param start: the next seq to read, by shard (a consumer's saved positions); a shard
            not named starts at its oldest record
        :raises ValueError: a bad ``start`` (at the call)
        """
        return self._replay_all(_check_starts(start))

    async def _replay_all(self, start: dict[int, int]) -> AsyncGenerator[ShardRecord, None]:
        cursors = {i: self._cursor(i, start.get(i), follow=False) for i in await self.shards()}
        while cursors:
            for i, cursor in list(cursors.items()):
                records, more = await asyncio.to_thread(cursor.step)
                for seq, data in records:
                    yield ShardRecord(i, seq, data)
                if not more:
                    del cursors[i]

    def follow_all(
        self, start: Mapping[int, int] | None = None, *, poll_interval: float = DEFAULT_POLL_INTERVAL
    ) -> AsyncGenerator[ShardRecord, None]:
        """Every shard's records from ``start`` on, then the new ones as they are written,
        forever; shards take turns, and a shard created later is read as soon as it appears.

        :raises ValueError: a bad ``start`` or ``poll_interval`` (at the call)
        :raises TruncatedError: a shard's next record was removed by its owner's truncate_before
        """
        _check_interval(poll_interval)
        return self._follow_all(_check_starts(start), poll_interval)

    async def _follow_all(
        self, start: dict[int, int], poll_interval: float
    ) -> AsyncGenerator[ShardRecord, None]:
        cursors: dict[int, _Cursor] = {}
        while True:
            for i in await self.shards():
                if i not in cursors:
                    cursors[i] = self._cursor(i, start.get(i), follow=True)
            busy = False
            for i, cursor in cursors.items():
                records, more = await asyncio.to_thread(cursor.step)
                busy = busy or more
                for seq, data in records:
                    yield ShardRecord(i, seq, data)
            if not busy:
                await asyncio.sleep(poll_interval)


def _check_starts(start: Mapping[int, int] | None) -> dict[int, int]:
    starts = dict(start or {})
    for shard, seq in starts.items():
        if isinstance(shard, bool) or not isinstance(shard, int) or shard < 0:
            raise ValueError(f"start: shard must be an int >= 0, not {shard!r}")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise ValueError(f"start: seq must be an int >= 1, not {seq!r}")
    return starts


def _check_interval(poll_interval: object) -> None:
    if isinstance(poll_interval, bool) or not isinstance(poll_interval, int | float) or not poll_interval > 0:
        raise ValueError(f"poll_interval must be a number of seconds > 0, not {poll_interval!r}")
