"""The public face of a log: :class:`Log` (what ``asyncwal.open`` gives) and :func:`open`.

Read this module first. Every method here validates its arguments, then hands the work to the
group-commit :class:`~asyncwal._engine.Engine` (``_engine.py``: pending records, the writer
task, the levels table, the failure state). Reading (``replay``, ``follow``) is here too: it
walks the segment files through the frame reader (``_reader.py``), bounded by how far the
levels have got.

Which module holds what:

* the write path: ``_engine.py`` (loop thread) and ``_segment.py`` (I/O thread);
* the bytes on disk: ``_format.py`` (codec) and ``_reader.py`` (the one frame reader);
* the operating system: ``_fileops.py`` (the seam every file operation goes through);
* what survives a crash: ``_recovery.py``, run by :func:`open` before the log is returned.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import warnings
from typing import TYPE_CHECKING, Any

from ._engine import Checkpoint, Engine, to_bytes
from ._errors import RecordTooLargeError, TruncatedError
from ._filenames import LOCK_NAME, parse_shard_name, segment_name
from ._fileops import FileOps, OsFileOps, makedirs_durably
from ._format import max_frame_length
from ._iothread import IOThread
from ._options import Durability, Options
from ._reader import Record, read_segment
from ._recovery import RecoveredLog, RecoveryReport, recover
from ._segment import SegmentWriter
from ._stats import Stats

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable, Generator, Iterable

__all__ = ("LOCK_NAME", "Checkpoint", "Log", "Stats", "open")


_MEMORY = Durability.MEMORY
_DISK = Durability.DISK


class Log:
    """A write-ahead log bound to one directory, one event loop and one process. Use :func:`open`.

    All methods must be called from the event loop that opened the log.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # The hot path: ``log.append`` is the engine's own method, bound on the instance, so
        # that an append costs no delegating call (~500 instructions, 5-7% of an append at
        # W=256). Log.append below documents it; tests check that the two signatures agree.
        setattr(self, "append", engine.append)  # noqa: B010 (mypy must not see this assignment)
        self._max_record = engine.options.max_record_size
        self._max_length = max_frame_length(engine.options.max_record_size, engine.options.max_batch_bytes)

    # -- properties ------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The log directory."""
        return self._engine.path

    @property
    def options(self) -> Options:
        return self._engine.options

    @property
    def sync_mode(self) -> str:
        """``"sync"``, ``"batch"`` or ``"none"``."""
        return self._engine.options.sync_mode

    @property
    def first_seq(self) -> int:
        """The oldest seq still in the log (``last_seq + 1`` when it holds no records)."""
        return self._engine.first_seq

    @property
    def last_seq(self) -> int:
        """The newest seq accepted (``MEMORY``); 0 in a new log."""
        return self._engine.next_seq - 1

    @property
    def written_seq(self) -> int:
        """Every seq up to this one has reached ``OS``."""
        return self._engine.mark(Durability.OS)

    @property
    def durable_seq(self) -> int:
        """Every seq up to this one has reached ``DISK``."""
        return self._engine.mark(_DISK)

    @property
    def replicated_seq(self) -> int | None:
        """Every seq up to this one has reached ``REPLICATED`` (on ``DISK`` and acknowledged
        by the replica); None while the log is not replicated."""
        return self._engine.replicated_seq

    @property
    def last_checkpoint(self) -> Checkpoint | None:
        """The newest durable checkpoint, surviving reopen and ``truncate_before``."""
        return self._engine.checkpoint

    @property
    def log_id(self) -> str:
        """The log's durable identity: a UUID string kept in META since the log was created
        (an older log got one at its first open). It names the log's replication stream."""
        return self._engine.log_id

    @property
    def recovery_report(self) -> RecoveryReport | None:
        """What recovery cut at open, or None if it changed nothing."""
        return self._engine.recovery_report

    @property
    def closed(self) -> bool:
        """True from the moment ``close()`` starts."""
        return self._engine.closed

    @property
    def failed(self) -> bool:
        """True once a write or fsync has failed; every later call raises LogFailedError."""
        return self._engine.failed

    def level_of(self, seq: int) -> Durability | None:
        """How far record ``seq`` has travelled, or None if it was never accepted."""
        engine = self._engine
        if seq < 1 or seq >= engine.next_seq:
            return None
        for level in reversed(Durability):
            if engine.levels.offered(level) and seq <= engine.mark(level):
                return level
        return _MEMORY

    # -- appending -------------------------------------------------------------------------

    def append(
        self, data: bytes | bytearray | memoryview, durability: Durability | None = None
    ) -> asyncio.Future[int]:
        """Append one record; the returned future gives its seq once it reaches its level.

        The record is accepted when ``append()`` is called, not when it is awaited: seqs are
        taken in call order. It is then awaited until the record reaches ``durability``
        (default: the level of the log's ``sync_mode``). Cancelling the wait does not take
        the record back; it is written all the same. While more than ``max_pending_bytes``
        are queued, the record waits for space (in call order) before it gets a seq; a wait
        cancelled then does take it back.

        :param data: the payload, any bytes-like object (copied if mutable)
        :param durability: wait for this level instead of the mode's
        :raises TypeError: ``data`` is not bytes-like
        :raises ValueError: ``durability`` is not a level this log offers
        :raises RecordTooLargeError: ``data`` is larger than ``max_record_size``
        :raises LogClosedError: the log is closed or closing
        :raises LogFailedError: the log has failed, or fails before the record reaches its level
        :raises WrongEventLoopError: called from another event loop or thread
        :raises WrongProcessError: called in a child process after fork()
        """
        return self._engine.append(data, durability)  # not reached: __init__ binds the engine's

    def append_batch(self, records: Iterable[bytes | bytearray | memoryview]) -> asyncio.Future[list[int]]:
        """Append records atomically; the awaitable gives their seqs once they are on ``DISK``.

        The records get consecutive seqs, even with other appenders running, and are written
        as one frame: after any crash, recovery finds all of them or none.

        :raises TypeError: a record is not bytes-like
        :raises RecordTooLargeError: a record exceeds ``max_record_size``, or the batch
            (with its length table: 4 bytes per record + 4) exceeds ``max_batch_bytes``
        """
        self._engine.check_usable()
        if isinstance(records, bytes | bytearray | memoryview | str):
            raise TypeError("append_batch() takes an iterable of records, not a single record")
        payloads = [r if type(r) is bytes else to_bytes(r) for r in records]
        for p in payloads:
            if len(p) > self._max_record:
                raise RecordTooLargeError(
                    f"record of {len(p)} bytes exceeds max_record_size={self._max_record}"
                )
        return self._engine.append_batch(payloads)

    # -- waiting ---------------------------------------------------------------------------

    async def wait_for(self, seq: int, durability: Durability = Durability.DISK) -> None:
        """Wait until record ``seq`` has reached ``durability`` (forcing an fsync for DISK).

        :raises ValueError: ``seq`` was never accepted (``seq < 1`` or ``seq > last_seq``), or
            ``durability`` is not a level this log offers
        """
        engine = self._engine
        engine.check_usable()
        level = engine.check_level(durability)
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise TypeError("seq must be an int")
        if seq < 1 or seq > engine.last_seq:
            raise ValueError(
                f"seq {seq} has not been appended (seqs run from 1 to last_seq={engine.last_seq})"
            )
        await engine.wait(seq, level)

    async def sync(self) -> int:
        """Make every record appended so far durable; return ``durable_seq``."""
        engine = self._engine
        engine.check_usable()
        target = engine.last_seq
        if target > engine.mark(_DISK):
            await engine.wait(target, _DISK)
        return engine.mark(_DISK)

    async def checkpoint(self, data: bytes | bytearray | memoryview = b"") -> Checkpoint:
        """Record a durable checkpoint covering every record appended so far.

        Consumes no seq. The returned checkpoint (``seq`` = the last seq covered) is on disk
        when this returns, and stays ``last_checkpoint`` across reopen and truncation.
        """
        self._engine.check_usable()
        payload = data if type(data) is bytes else to_bytes(data)
        if len(payload) > self._max_record:
            raise RecordTooLargeError(f"checkpoint data of {len(payload)} bytes exceeds max_record_size")
        return await self._engine.request_checkpoint(payload)

    async def truncate_before(self, seq: int) -> int:
        """Delete whole segments that hold only records below ``seq``; return the new ``first_seq``.

        Truncation is by segment: records below ``seq`` that share a segment with ``seq``
        stay, and the segment being written is never deleted. A replicated log never deletes
        a record its replica does not have yet: ``seq`` is clamped to the first such record
        (so the returned ``first_seq`` may be lower than asked).

        :raises ValueError: ``seq > last_seq + 1``
        """
        engine = self._engine
        engine.check_usable()
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise TypeError("seq must be an int")
        if seq > engine.next_seq:
            raise ValueError(f"cannot truncate before {seq}: last_seq is {engine.last_seq}")
        return await engine.request_truncation(seq)

    # -- reading ---------------------------------------------------------------------------

    def replay(
        self, start: int | None = None, *, from_checkpoint: bool = False
    ) -> AsyncGenerator[Record, None]:
        """Iterate over the records from ``start`` (default ``first_seq``), in order.

        Yields every record that has reached at least ``OS`` by the time the iteration gets
        to it, then ends; it never waits for new records (see :meth:`follow`). A ``start``
        below ``first_seq`` starts at ``first_seq``. With ``from_checkpoint=True`` it starts
        after ``last_checkpoint.seq`` (at ``first_seq`` if there is no checkpoint).

        :raises ValueError: both ``start`` and ``from_checkpoint`` are given
        """
        if start is not None and from_checkpoint:
            raise ValueError("give either start or from_checkpoint, not both")
        if start is not None and (isinstance(start, bool) or not isinstance(start, int)):
            raise TypeError("start must be an int")
        engine = self._engine
        engine.check_usable()
        if from_checkpoint:
            start = engine.checkpoint.seq + 1 if engine.checkpoint is not None else None
        written = engine.levels.mark
        return self._read(
            max(self.first_seq if start is None else start, self.first_seq),
            lambda: written[Durability.OS],
            follow=False,
        )

    def follow(
        self, start: int | None = None, *, durability: Durability = Durability.OS
    ) -> AsyncGenerator[Record, None]:
        """Iterate over the records from ``start`` and then wait for new ones, forever.

        A record is yielded once it has reached ``durability`` (``OS`` or above). Waiting costs
        nothing: the follower sleeps until the log makes progress. The iteration ends when the
        log is closed. A follower's position is exact: it raises :class:`TruncatedError` when
        the record it has to read next is gone (``start`` below ``first_seq``, or removed by
        ``truncate_before`` since), and never skips ahead.
        """
        if start is not None and (isinstance(start, bool) or not isinstance(start, int)):
            raise TypeError("start must be an int")
        engine = self._engine
        engine.check_usable()
        level = engine.check_level(durability)
        if level is _MEMORY:
            raise ValueError("follow() reads from the files: durability must be OS or above")
        if start is not None and start < 1:
            raise ValueError(f"start must be >= 1, not {start}")
        marks = engine.levels.mark
        return self._read(self.first_seq if start is None else start, lambda: marks[level], follow=True)

    async def _read(
        self, seq: int, limit: Callable[[], int], *, follow: bool
    ) -> AsyncGenerator[Record, None]:
        """Records from ``seq`` on, up to ``limit()``, segment by segment.

        replay() skips what truncate_before removed; a follower must never skip (a replica
        built from it would have a gap), so it raises TruncatedError instead.
        """
        engine = self._engine
        while True:
            if seq > limit():
                if not follow or not await engine.wait_progress(seq, limit):
                    return
                continue
            segs = engine.segments
            if seq < segs[0]:
                raise TruncatedError(f"seq {seq} was removed by truncate_before (first_seq is now {segs[0]})")
            first = segs[bisect.bisect_right(segs, seq) - 1]
            path = os.path.join(engine.path, segment_name(first))

            def seg_limit(first: int = first, path: str = path) -> int:
                """``limit()``, but never past the last seq of segment ``first``."""
                lim = limit()
                segs = engine.segments
                if segs[-1] != first:
                    i = bisect.bisect_right(segs, first)
                    if i == 0:  # removed while being read: where it ends is no longer known
                        raise TruncatedError(
                            f"segment {path} was removed by truncate_before while being read"
                        )
                    lim = min(lim, segs[i] - 1)
                return lim

            async def seg_wait(seq: int, first: int = first) -> bool:
                """Follow mode: wait for more of segment ``first``; False when it is finished."""
                if engine.segments[-1] != first:
                    return False
                return await engine.wait_progress(seq, limit)

            reader = engine.ops.open_reader(path)
            try:
                async for records in read_segment(
                    reader, path, first, seq, seg_limit, self._max_length, seg_wait if follow else None
                ):
                    seq = records[-1].seq + 1
                    for rec in records:
                        yield rec
            except FileNotFoundError:
                raise TruncatedError(
                    f"segment {path} was removed by truncate_before before it was read"
                ) from None
            finally:
                await reader.close()

    # -- closing ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Write and fsync everything accepted, then release the directory.

        ``closed`` is True from the first line; later calls raise :class:`LogClosedError`,
        while everything already accepted is still written. Safe to call more than once and
        on a failed log (which it does not raise for). In a child process after fork() it
        does nothing: the log is the parent's.

        :raises LogFailedError: the final write or fsync failed
        """
        await self._engine.close()

    async def __aenter__(self) -> Log:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None and not engine.close_started and not engine.forked:
            _warn(f"unclosed asyncwal log {engine.path!r}", ResourceWarning, source=self, stacklevel=1)

    def __repr__(self) -> str:
        engine = self._engine
        state = "failed" if engine.failed else "closed" if engine.closed else "open"
        if engine.forked:
            state = "forked"
        return (
            f"<asyncwal.Log {engine.path!r} {state} sync_mode={self.sync_mode!r} "
            f"seqs={self.first_seq}..{self.last_seq} durable={self.durable_seq}>"
        )

    # -- observability ---------------------------------------------------------------------

    def stats(self) -> Stats:
        """A snapshot of the log's counters."""
        return self._engine.stats()


# -- opening -------------------------------------------------------------------------------


class _Opener:
    """What :func:`open` returns: await it, or use it with ``async with``."""

    def __init__(self, path: str | os.PathLike[str], options: Options) -> None:
        self._path = os.fspath(path)
        self._options = options
        self._log: Log | None = None

    def __await__(self) -> Generator[Any, None, Log]:
        return self._open().__await__()

    async def _open(self) -> Log:
        loop = asyncio.get_running_loop()
        opts = self._options
        ops = opts.file_ops if opts.file_ops is not None else OsFileOps()
        io = IOThread(loop, f"asyncwal {self._path}")
        prepared = io.submit(_prepare, ops, self._path, opts)
        try:
            # Shielded: recovery cannot be interrupted half-way on the I/O thread, so a
            # cancelled open() lets it finish and then releases what it took (below).
            lock, recovered, writer = await asyncio.shield(prepared)
        except asyncio.CancelledError:
            prepared.add_done_callback(lambda f: _abandon(f, io, ops))
            raise
        except BaseException:
            io.shutdown()
            raise
        engine = Engine(
            path=self._path,
            options=opts,
            loop=loop,
            io=io,
            ops=ops,
            writer=writer,
            recovered=recovered,
            lock_handle=lock,
        )
        log = Log(engine)
        if opts.replicate is not None:
            try:
                await opts.replicate.start_replication(log)
            except BaseException:
                await log.close()
                raise
        return log

    async def __aenter__(self) -> Log:
        self._log = await self._open()
        return self._log

    async def __aexit__(self, *exc_info: object) -> None:
        if self._log is not None:
            await self._log.close()


def _prepare(ops: FileOps, path: str, opts: Options) -> tuple[int, RecoveredLog, SegmentWriter]:
    """I/O-thread side of open(): lock, recover, and open or create the active segment."""
    makedirs_durably(ops, path)  # a new log's directory entry survives a power loss
    shards = [name for name in ops.listdir(path) if parse_shard_name(name) is not None]
    if shards:
        raise ValueError(
            f"{path} holds a sharded log ({', '.join(sorted(shards)[:3])}): open it with "
            "asyncwal.open_sharded(), or one shard's directory with asyncwal.open()"
        )
    lock = ops.lock(os.path.join(path, LOCK_NAME))
    try:
        max_frame = max_frame_length(opts.max_record_size, opts.max_batch_bytes)
        recovered = recover(ops, path, opts.recovery, max_frame)
        writer = SegmentWriter(
            ops, path, opts.segment_size, opts.preallocate, max_frame, log_id=recovered.log_id
        )
        writer.slow_fsync_seconds = opts.slow_fsync_seconds
        if recovered.segments:
            writer.open_existing(recovered.segments[-1], recovered.active_end)
        else:
            writer.create(recovered.next_seq)
            recovered.segments = [recovered.next_seq]
    except BaseException:
        ops.unlock(lock)
        raise
    return lock, recovered, writer


def _abandon(
    prepared: asyncio.Future[tuple[int, RecoveredLog, SegmentWriter]], io: IOThread, ops: FileOps
) -> None:
    """open() was cancelled while recovery ran: once it is done, close and unlock what it took."""
    if not prepared.cancelled() and prepared.exception() is None:
        lock, _, writer = prepared.result()
        io.submit(_release_unused, ops, lock, writer)
    io.shutdown()


def _release_unused(ops: FileOps, lock: int, writer: SegmentWriter) -> None:
    try:
        writer.close(sync=False)
    finally:
        ops.unlock(lock)


def open(path: str | os.PathLike[str], **options: Any) -> _Opener:
    """Open (creating if needed) the log in directory ``path``.

    ``await asyncwal.open(path)`` gives a :class:`Log`; ``async with asyncwal.open(path) as
    log`` also closes it. Recovery runs before the log is returned. The keyword options are
    the fields of :class:`Options`; unknown or invalid ones raise ``TypeError``/``ValueError``
    at once. Cancelling the ``await`` lets recovery finish in the background and releases the
    directory afterwards (no lock or file descriptor is left behind).

    :raises LogLockedError: another opener holds the directory
    :raises CorruptLogError: damage that the recovery mode does not allow to be cut
    :raises OSError: the directory cannot be created, read or locked, or recovery's own I/O
        failed. The lock is released; every step recovery takes is safe to repeat, so the
        next open starts over.
    :raises ReplicationError: with ``replicate``: the stream belongs to another log
        (:class:`StreamMismatchError`) or disagrees with the log (:class:`DivergedError`);
        the log is closed again. An unreachable stream is not an error (shipping starts
        when it answers).
    """
    return _Opener(path, Options(**options))
