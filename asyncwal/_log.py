"""The public :class:`Log` and its group-commit writer task.

How a record travels (docs/design.md tells it at length):

1. ``append()`` runs on the event-loop thread. It validates the payload, takes the next seq
   and puts the payload on ``_pending``, with no ``await`` in between, so seq order is file
   order. It returns a future of its own: cancelling one caller's wait can never cancel
   another's.
2. One writer task per log takes *everything* pending as one group and runs the framing, the
   write (and, when the mode or a waiter needs it, the fdatasync) in ONE call on the log's
   private I/O thread. A group's records share frames: one header and one CRC per frame, not
   per record (see SegmentWriter.write_group). While that call runs, the next group
   accumulates. In sync mode up to two groups are in flight (two cohorts of callers: one
   appends while the other's fsync runs); the thread still runs them one at a time, in order.
3. When the call returns, the writer advances ``written_seq`` (and ``durable_seq`` if it
   synced) and resolves exactly the futures whose level is now reached.
4. If a write or sync raises, the log fails for good: every unresolved future gets its own
   :class:`LogFailedError` chained to the ``OSError``, and nothing is ever retried.

Only the writer task touches the :class:`SegmentWriter`, and it does so only through the
executor, one call at a time; all other state is touched only on the loop thread.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import logging
import os
import statistics
import threading
import warnings
import weakref
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar

from ._errors import (
    LogClosedError,
    LogFailedError,
    RecordTooLargeError,
    TruncatedError,
    WrongEventLoopError,
    WrongProcessError,
)
from ._fileops import FileOps, OsFileOps
from ._format import encode_batch, segment_name
from ._iothread import IOThread
from ._options import Durability, Options
from ._reader import Record, read_segment
from ._recovery import RecoveredLog, RecoveryReport, max_frame_length, recover
from ._segment import Batch, SegmentWriter

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable, Iterable, Sequence

__all__ = ("Checkpoint", "Log", "Stats", "open")

logger = logging.getLogger("asyncwal")

_T = TypeVar("_T")
_get_running_loop = asyncio._get_running_loop
_get_ident = threading.get_ident

_MEMORY: Final = Durability.MEMORY
_OS: Final = Durability.OS
_DISK: Final = Durability.DISK

# Log states.
_OPEN: Final = 0
_CLOSED: Final = 1
_FAILED: Final = 2
_FORKED: Final = 3  # this object was inherited by a child process through fork()

LOCK_NAME: Final = "LOCK"

#: Sync mode: a group of at least this many records, found while the I/O thread is idle, is
#: split in two, to start a second cohort (see _submit_group).
_SPLIT_RECORDS: Final = 64

#: MEMORY-level acks are immediate until this many records wait for the writer; past that,
#: an ack waits until the writer has taken the record (see _enqueue_record).
_MEMORY_ACK_RECORDS: Final = 1024


class Checkpoint(NamedTuple):
    """A durable marker: every record up to ``seq`` was on disk when it was taken."""

    #: the last seq the checkpoint covers (0 if the log was empty)
    seq: int
    #: the caller's data, e.g. a snapshot id
    data: bytes


@dataclass(frozen=True, slots=True)
class Stats:
    """An immutable snapshot of a log's counters, from :meth:`Log.stats`."""

    appends: int  #: records accepted (a batch counts each record)
    batches: int  #: append_batch() calls accepted
    bytes: int  #: payload bytes written (a batch counts its length table too)
    groups: int  #: write calls made by the writer (each one group of records)
    fsyncs: int  #: fdatasync/fsync calls on segments, and durable (RWF_DSYNC) group writes
    mean_group_size: float  #: records per group
    group_size_p50: float
    group_size_p99: float
    group_size_max: int
    fsync_p50: float  #: seconds, over the last 4096 fsyncs (a durable write's includes the write)
    fsync_p99: float
    fsync_max: float
    queue_depth: int  #: records accepted but not yet handed to the OS
    queued_bytes: int  #: bytes of those records
    executor_seconds: float  #: time the writer spent waiting on its executor
    segments: int  #: segment files in the log


class _Group(NamedTuple):
    """A group of records handed to the I/O thread."""

    first: int
    last: int
    nbytes: int  # payload bytes (a Batch counts its whole body)
    os_q: list[tuple[int, asyncio.Future[Any]]]  # waiting for OS
    disk_q: list[tuple[int, asyncio.Future[Any]]]  # waiting for DISK
    started: float


class _Waiter(NamedTuple):
    seq: int  # resolved once this seq reaches ``level``
    level: Durability
    future: asyncio.Future[Any]
    result: Any


class Log:
    """A write-ahead log bound to one directory and one event loop. Use :func:`open`.

    All methods must be called from the event loop that opened the log.
    """

    # -- construction (see open()) ---------------------------------------------------------

    def __init__(
        self,
        *,
        path: str,
        options: Options,
        loop: asyncio.AbstractEventLoop,
        io: IOThread,
        ops: FileOps,
        writer: SegmentWriter,
        recovered: RecoveredLog,
        lock_handle: int,
    ) -> None:
        self._path = path
        self._options = options
        self._loop = loop
        # The hot path checks the thread (33 ns) rather than the running loop (~230 ns under
        # CPython 3.11: it makes a getpid() call); one thread runs one loop at a time.
        self._thread = _get_ident()
        self._create_future = loop.create_future
        self._io = io
        self._ops = ops
        self._seg = writer
        self._lock_handle = lock_handle
        self._max_record = options.max_record_size
        self._max_length = max_frame_length(options.max_record_size, options.max_batch_bytes)
        self._max_pending = options.max_pending_bytes
        self._default_level = options.default_durability
        self._sync_each_group = options.sync_mode == "sync"
        self._batch_mode = options.sync_mode == "batch"
        self._batch_size = options.batch_size
        self._batch_interval = options.batch_interval

        self._segments: list[int] = recovered.segments  # first seqs, oldest first
        self._low_water = recovered.low_water
        cp = recovered.checkpoint
        self._checkpoint: Checkpoint | None = Checkpoint(*cp) if cp is not None else None
        self._recovery_report = recovered.report

        last = recovered.next_seq - 1
        self._next_seq = recovered.next_seq
        self._written_seq = last
        self._durable_seq = last

        # Records accepted and not yet taken by the writer: payloads, and a Batch for each
        # append_batch() call.
        self._pending: list[bytes | Batch] = []
        self._pending_batches = 0
        self._queued_bytes = 0  # pending + in flight: what backpressure bounds
        # Futures of records in ``_pending``, by the level they wait for: (seq, future).
        self._os_q: list[tuple[int, asyncio.Future[Any]]] = []
        self._disk_q: list[tuple[int, asyncio.Future[Any]]] = []
        self._mem_q: list[tuple[int, asyncio.Future[Any]]] = []  # MEMORY acks held back
        # Groups handed to the I/O thread and not yet completed, oldest first (the thread runs
        # them in this order). Sync mode keeps up to two in flight, so that one cohort of
        # appenders runs on the loop while the other's write + fsync runs on the thread.
        self._in_flight: deque[_Group] = deque()
        self._depth = 2 if options.sync_mode == "sync" else 1
        self._submitted_seq = last
        # Other waits: batches, wait_for(), sync(), checkpoints. Small; scanned on progress.
        self._waiters: list[_Waiter] = []
        # Appends waiting for queue space, in call order; they get a seq when admitted.
        self._space_waiters: deque[tuple[Any, Durability, asyncio.Future[Any]]] = deque()
        # Work for the writer that is not a record.
        self._checkpoints: list[tuple[int, bytes, asyncio.Future[Checkpoint]]] = []
        self._truncations: list[tuple[int, asyncio.Future[int]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_fired = False
        # Followers (follow()) wake on every progress event.
        self._progress: asyncio.Event | None = None

        self._state = _OPEN
        self._closing = False
        self._failure: BaseException | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._close_task: asyncio.Task[None] | None = None

        # Counters.
        self._n_appends = 0
        self._n_batches = 0
        self._n_bytes = 0
        self._n_groups = 0
        self._n_group_records = 0
        self._group_sizes: deque[int] = deque(maxlen=4096)
        self._executor_seconds = 0.0

        self._pid = os.getpid()
        _LIVE_LOGS.add(self)
        self._writer_task = loop.create_task(self._writer_main(), name=f"asyncwal writer {path}")

    # -- properties ------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The log directory."""
        return self._path

    @property
    def options(self) -> Options:
        return self._options

    @property
    def sync_mode(self) -> str:
        """``"sync"``, ``"batch"`` or ``"none"``."""
        return self._options.sync_mode

    @property
    def first_seq(self) -> int:
        """The oldest seq still in the log (``last_seq + 1`` when it holds no records)."""
        return self._segments[0] if self._segments else self._next_seq

    @property
    def last_seq(self) -> int:
        """The newest seq accepted (``MEMORY``); 0 in a new log."""
        return self._next_seq - 1

    @property
    def written_seq(self) -> int:
        """Every seq up to this one has reached ``OS``."""
        return self._written_seq

    @property
    def durable_seq(self) -> int:
        """Every seq up to this one has reached ``DISK``."""
        return self._durable_seq

    @property
    def last_checkpoint(self) -> Checkpoint | None:
        """The newest durable checkpoint, surviving reopen and ``truncate_before``."""
        return self._checkpoint

    @property
    def recovery_report(self) -> RecoveryReport | None:
        """What recovery cut at open, or None if it changed nothing."""
        return self._recovery_report

    @property
    def closed(self) -> bool:
        """True from the moment ``close()`` starts."""
        return self._state == _CLOSED or self._closing

    @property
    def failed(self) -> bool:
        """True once a write or fsync has failed; every later call raises LogFailedError."""
        return self._state == _FAILED

    def level_of(self, seq: int) -> Durability | None:
        """How far record ``seq`` has travelled, or None if it was never accepted."""
        if seq <= self._durable_seq:
            return _DISK
        if seq <= self._written_seq:
            return _OS
        if seq < self._next_seq:
            return _MEMORY
        return None

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
        :raises RecordTooLargeError: ``data`` is larger than ``max_record_size``
        :raises LogClosedError: the log is closed or closing
        :raises LogFailedError: the log has failed, or fails before the record reaches its level
        """
        if self._state or self._closing or _get_ident() != self._thread:
            if self._state or self._closing:
                raise self._unusable()
            raise WrongEventLoopError("a log can only be used from the event loop that opened it")
        if type(data) is not bytes:
            data = _to_bytes(data)
        n = len(data)
        if n > self._max_record:
            raise RecordTooLargeError(f"record of {n} bytes exceeds max_record_size={self._max_record}")
        level = self._default_level if durability is None else _check_level(durability)
        fut: asyncio.Future[int] = self._create_future()
        if self._queued_bytes > self._max_pending or self._space_waiters:
            self._space_waiters.append((data, level, fut))
            return fut
        # What _enqueue_record() does, inlined: this is the hot path, and the call would
        # cost about a sixth of it.
        seq = self._next_seq
        self._next_seq = seq + 1
        pending = self._pending
        pending.append(data)
        self._queued_bytes += n
        if level is _DISK:
            self._disk_q.append((seq, fut))
        elif level is _OS:
            self._os_q.append((seq, fut))
        elif len(pending) < _MEMORY_ACK_RECORDS:
            fut.set_result(seq)
        else:
            self._mem_q.append((seq, fut))  # see _enqueue_record
        if self._wakeup is not None:
            self._wake()
        return fut

    def _enqueue_record(self, data: bytes, level: Durability, fut: asyncio.Future[int]) -> None:
        """Give ``data`` the next seq and queue it; register ``fut`` for ``level``.

        No await and no exception in here: seq order must be file order. The framing (header
        and CRC) is done by the writer, per frame rather than per record.
        """
        seq = self._next_seq
        self._next_seq = seq + 1
        pending = self._pending
        pending.append(data)
        self._queued_bytes += len(data)
        if level is _DISK:
            self._disk_q.append((seq, fut))
        elif level is _OS:
            self._os_q.append((seq, fut))
        elif len(pending) < _MEMORY_ACK_RECORDS:
            fut.set_result(seq)
        else:
            # Already accepted, but acknowledged only when the writer takes it. Appenders
            # that await nothing else would otherwise never let the loop wait, and then the
            # I/O thread rarely gets the GIL back (a thread that releases the GIL for a moment
            # and takes it again at once keeps it from a waiting thread); the writer would
            # fall ever further behind and none mode would be the slowest mode.
            self._mem_q.append((seq, fut))

    def append_batch(self, records: Iterable[bytes | bytearray | memoryview]) -> asyncio.Future[list[int]]:
        """Append records atomically; the awaitable gives their seqs once they are on ``DISK``.

        The records get consecutive seqs, even with other appenders running, and are written
        as one frame: after any crash, recovery finds all of them or none.

        :raises TypeError: a record is not bytes-like
        :raises RecordTooLargeError: a record exceeds ``max_record_size``, or the batch
            (with its length table: 4 bytes per record + 4) exceeds ``max_batch_bytes``
        """
        self._check_usable()
        if isinstance(records, bytes | bytearray | memoryview | str):
            raise TypeError("append_batch() takes an iterable of records, not a single record")
        payloads = [r if type(r) is bytes else _to_bytes(r) for r in records]
        for p in payloads:
            if len(p) > self._max_record:
                raise RecordTooLargeError(
                    f"record of {len(p)} bytes exceeds max_record_size={self._max_record}"
                )
        fut: asyncio.Future[list[int]] = self._loop.create_future()
        if not payloads:
            fut.set_result([])
            return fut
        body = encode_batch(payloads)
        if len(body) > self._options.max_batch_bytes:
            raise RecordTooLargeError(
                f"batch of {len(body)} bytes exceeds max_batch_bytes={self._options.max_batch_bytes}"
            )
        if self._queued_bytes > self._max_pending or self._space_waiters:
            self._space_waiters.append(((body, len(payloads)), _DISK, fut))
            return fut
        self._enqueue_batch(body, len(payloads), fut)
        return fut

    def _enqueue_batch(self, body: bytes, count: int, fut: asyncio.Future[list[int]]) -> None:
        first = self._next_seq
        self._next_seq = first + count
        self._pending.append(Batch(body, count))
        self._pending_batches += 1
        self._queued_bytes += len(body)
        self._n_batches += 1
        last = first + count - 1
        self._waiters.append(_Waiter(last, _DISK, fut, list(range(first, last + 1))))
        self._wake()

    def _admit_space_waiters(self) -> None:
        """Give queued space waiters their seqs, in call order, while there is room."""
        waiting = self._space_waiters
        while waiting and self._queued_bytes <= self._max_pending:
            item, level, fut = waiting.popleft()
            if fut.done():  # cancelled while waiting for space: never appended
                continue
            if isinstance(item, tuple):
                self._enqueue_batch(item[0], item[1], fut)
                continue
            self._enqueue_record(item, level, fut)
        self._wake()

    # -- waiting ---------------------------------------------------------------------------

    async def wait_for(self, seq: int, durability: Durability = Durability.DISK) -> None:
        """Wait until record ``seq`` has reached ``durability`` (forcing an fsync for DISK).

        :raises ValueError: ``seq`` was never accepted (``seq > last_seq``)
        """
        self._check_usable()
        level = _check_level(durability)
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise TypeError("seq must be an int")
        if seq > self.last_seq:
            raise ValueError(f"seq {seq} has not been appended (last_seq is {self.last_seq})")
        if self._reached(seq, level):
            return
        fut: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(_Waiter(seq, level, fut, None))
        self._wake()
        await fut

    async def sync(self) -> int:
        """Make every record appended so far durable; return ``durable_seq``."""
        self._check_usable()
        target = self.last_seq
        if target > self._durable_seq:
            fut: asyncio.Future[None] = self._loop.create_future()
            self._waiters.append(_Waiter(target, _DISK, fut, None))
            self._wake()
            await fut
        return self._durable_seq

    async def checkpoint(self, data: bytes | bytearray | memoryview = b"") -> Checkpoint:
        """Record a durable checkpoint covering every record appended so far.

        Consumes no seq. The returned checkpoint (``seq`` = the last seq covered) is on disk
        when this returns, and stays ``last_checkpoint`` across reopen and truncation.
        """
        self._check_usable()
        payload = data if type(data) is bytes else _to_bytes(data)
        if len(payload) > self._max_record:
            raise RecordTooLargeError(f"checkpoint data of {len(payload)} bytes exceeds max_record_size")
        fut: asyncio.Future[Checkpoint] = self._loop.create_future()
        self._checkpoints.append((self.last_seq, payload, fut))
        self._wake()
        return await fut

    async def truncate_before(self, seq: int) -> int:
        """Delete whole segments that hold only records below ``seq``; return the new ``first_seq``.

        Truncation is by segment: records below ``seq`` that share a segment with ``seq``
        stay, and the segment being written is never deleted.

        :raises ValueError: ``seq > last_seq + 1``
        """
        self._check_usable()
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise TypeError("seq must be an int")
        if seq > self._next_seq:
            raise ValueError(f"cannot truncate before {seq}: last_seq is {self.last_seq}")
        fut: asyncio.Future[int] = self._loop.create_future()
        self._truncations.append((seq, fut))
        self._wake()
        return await fut

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
        self._check_usable()
        if from_checkpoint:
            start = self._checkpoint.seq + 1 if self._checkpoint is not None else None
        return self._read(self.first_seq if start is None else start, lambda: self._written_seq, follow=False)

    def follow(
        self, start: int | None = None, *, durability: Durability = Durability.OS
    ) -> AsyncGenerator[Record, None]:
        """Iterate over the records from ``start`` and then wait for new ones, forever.

        A record is yielded once it has reached ``durability``. Waiting costs nothing: the
        follower sleeps until the writer makes progress. The iteration ends when the log is
        closed. A follower's position is exact: it raises :class:`TruncatedError` when the
        record it has to read next is gone (``start`` below ``first_seq``, or removed by
        ``truncate_before`` since), and never skips ahead.
        """
        if start is not None and (isinstance(start, bool) or not isinstance(start, int)):
            raise TypeError("start must be an int")
        self._check_usable()
        level = _check_level(durability)
        if level is _MEMORY:
            raise ValueError("follow() reads from the files: durability must be OS or DISK")
        if start is not None and start < 1:
            raise ValueError(f"start must be >= 1, not {start}")

        def limit() -> int:
            return self._durable_seq if level is _DISK else self._written_seq

        return self._read(self.first_seq if start is None else start, limit, follow=True)

    async def _read(
        self, start: int, limit: Callable[[], int], *, follow: bool
    ) -> AsyncGenerator[Record, None]:
        # replay() skips what truncate_before removed; a follower must never skip (a replica
        # built from it would have a gap), so it raises TruncatedError instead.
        seq = start if follow else max(start, self.first_seq)
        while True:
            if seq > limit():
                if not follow or not await self._wait_progress(seq, limit):
                    return
                continue
            segs = self._segments
            if seq < segs[0]:
                raise TruncatedError(f"seq {seq} was removed by truncate_before (first_seq is now {segs[0]})")
            first = segs[bisect.bisect_right(segs, seq) - 1]
            path = os.path.join(self._path, segment_name(first))

            def seg_limit(first: int = first, path: str = path) -> int:
                """``limit()``, but never past the last seq of segment ``first``."""
                lim = limit()
                segs = self._segments
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
                if self._segments[-1] != first:
                    return False
                return await self._wait_progress(seq, limit)

            reader = self._ops.open_reader(path)
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

    async def _wait_progress(self, seq: int, limit: Callable[[], int]) -> bool:
        """Wait until the writer makes progress. False once the log is closed and drained."""
        while seq > limit():
            if self._state == _FAILED:
                raise self._unusable()
            if self._state == _CLOSED or (
                self._closing and self._close_task is not None and self._close_task.done()
            ):
                return False
            if self._progress is None:
                self._progress = asyncio.Event()
            await self._progress.wait()
        return True

    # -- the writer task -------------------------------------------------------------------

    def _wake(self) -> None:
        w = self._wakeup
        if w is not None:
            self._wakeup = None
            w.set_result(None)

    def _sync_wanted(self) -> bool:
        """Does anyone wait for DISK on a record that is already written?"""
        if self._timer_fired:
            return True
        d = self._durable_seq
        return any(w.level is _DISK and w.seq > d for w in self._waiters)

    async def _writer_main(self) -> None:
        loop = self._loop
        try:
            while not self._state:
                if self._pending and len(self._in_flight) < self._depth:
                    self._submit_group()
                    continue
                if not self._in_flight:
                    # The I/O thread is idle: syncs and control work run only then.
                    if self._written_seq > self._durable_seq and self._sync_wanted():
                        await self._sync_only()
                        continue
                    if self._truncations or (
                        self._checkpoints and self._checkpoints[0][0] <= self._written_seq
                    ):
                        await self._run_control()
                        continue
                    if self._closing and not self._pending and not self._space_waiters:
                        break
                # Woken by an append, a completed group, a timer, a control call or close().
                self._wakeup = loop.create_future()
                await self._wakeup
            if not self._state and self._written_seq > self._durable_seq:
                await self._sync_only()
        except asyncio.CancelledError:
            self._wakeup = None  # cancelled with this task: _fail() must not resolve it
            self._fail(LogClosedError("the log's writer task was cancelled (was the log closed?)"))
            raise
        except BaseException as exc:
            self._fail(exc)

    async def _in_executor(self, fn: Callable[..., _T], *args: Any) -> _T:
        start = self._loop.time()
        try:
            return await self._io.submit(fn, *args)
        finally:
            self._executor_seconds += self._loop.time() - start

    def _submit_group(self) -> None:
        """Hand the pending records (or, to start a second cohort, the first half) to the
        I/O thread as one group: one write, plus the fsync when needed, in one call."""
        items = self._pending
        first = self._submitted_seq + 1
        batches = self._pending_batches > 0
        if self._depth > 1 and not self._in_flight and len(items) >= _SPLIT_RECORDS and not batches:
            half = len(items) // 2
            self._pending = items[half:]
            items = items[:half]
            last = first + half - 1
            os_q, self._os_q = _split_queue(self._os_q, last + 1)
            disk_q, self._disk_q = _split_queue(self._disk_q, last + 1)
            mem_q, self._mem_q = _split_queue(self._mem_q, last + 1)
        else:
            self._pending = []
            last = self._next_seq - 1
            self._pending_batches = 0
            os_q, disk_q, mem_q = self._os_q, self._disk_q, self._mem_q
            self._os_q = []
            self._disk_q = []
            self._mem_q = []
        self._submitted_seq = last
        nbytes = sum(map(len, items)) if not batches else sum(map(_payload_bytes, items))
        need_sync = (
            self._sync_each_group
            or bool(disk_q)
            or self._sync_wanted()
            or (self._batch_mode and last - self._durable_seq >= self._batch_size)
        )
        group = _Group(first, last, nbytes, os_q, disk_q, self._loop.time())
        self._in_flight.append(group)
        fut = self._io.submit(self._seg.write_group, items, first, last, need_sync, batches)
        fut.add_done_callback(functools.partial(self._group_done, group))
        if mem_q:
            _resolve_all(mem_q)

    def _group_done(self, group: _Group, fut: asyncio.Future[tuple[list[int], int]]) -> None:
        """Completion of a group, in submission order: advance the levels, resolve waiters."""
        assert self._in_flight[0] is group, "groups complete in submission order"
        self._executor_seconds += self._loop.time() - group.started
        exc = fut.exception()  # retrieved even when unused: a failed group queued behind a failed one
        if exc is not None and not self._state:
            self._fail(exc)  # the group is still in _in_flight, so its futures are failed too
        self._in_flight.popleft()
        if self._state:  # failed (now or before) or closed: nothing to resolve
            return
        created, durable = fut.result()
        count = group.last - group.first + 1
        self._n_groups += 1
        self._n_group_records += count
        self._group_sizes.append(count)
        self._n_appends += count
        self._n_bytes += group.nbytes
        if created:
            self._segments.extend(created)
        self._written_seq = group.last
        self._queued_bytes -= group.nbytes
        if group.os_q:
            _resolve_all(group.os_q)
        if durable:
            self._synced(durable)
            _resolve_all(group.disk_q)
        elif self._batch_mode and self._timer is None and self._written_seq > self._durable_seq:
            self._timer = self._loop.call_later(self._batch_interval, self._on_timer)
        self._after_progress()
        if self._space_waiters:
            self._admit_space_waiters()
        self._wake()

    async def _sync_only(self) -> None:
        target = self._written_seq  # what this sync covers: writes only happen in this task
        await self._in_executor(self._seg.sync)
        self._synced(target)
        self._after_progress()

    def _synced(self, seq: int) -> None:
        if seq > self._durable_seq:
            self._durable_seq = seq
        if self._durable_seq >= self._written_seq:
            self._timer_fired = False
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self._written_seq > self._durable_seq:
            self._timer_fired = True
            self._wake()

    def _after_progress(self) -> None:
        """Resolve the waits that the last step satisfied, and wake followers."""
        if self._waiters:
            keep = []
            for w in self._waiters:
                if w.future.done():
                    continue
                if self._reached(w.seq, w.level):
                    w.future.set_result(w.result)
                else:
                    keep.append(w)
            self._waiters = keep
        if self._progress is not None:
            self._progress.set()
            self._progress = None

    def _reached(self, seq: int, level: Durability) -> bool:
        if level is _DISK:
            return seq <= self._durable_seq
        if level is _OS:
            return seq <= self._written_seq
        return seq < self._next_seq

    async def _run_control(self) -> None:
        # A request leaves its list only once its I/O is done, so that _fail() reaches it.
        while self._truncations:
            seq, tfut = self._truncations[0]
            victims = [
                self._segments[i] for i in range(len(self._segments) - 1) if self._segments[i + 1] <= seq
            ]
            if victims:
                low_water = max(self._low_water, seq)
                cp = (self._checkpoint.seq, self._checkpoint.data) if self._checkpoint else None
                await self._in_executor(self._truncate_io, low_water, cp, victims)
                self._low_water = low_water
                del self._segments[: len(victims)]
                if self._progress is not None:
                    self._progress.set()
                    self._progress = None
            self._truncations.pop(0)
            if not tfut.done():
                tfut.set_result(self.first_seq)
        ready = [c for c in self._checkpoints if c[0] <= self._written_seq]
        if not ready:
            return
        if self._durable_seq < ready[-1][0]:
            await self._sync_only()
        for cp_seq, data, cfut in ready:
            await self._in_executor(self._seg.write_meta, self._low_water, (cp_seq, data))
            self._checkpoint = Checkpoint(cp_seq, data)
            self._checkpoints.remove((cp_seq, data, cfut))
            if not cfut.done():
                cfut.set_result(self._checkpoint)

    def _truncate_io(self, low_water: int, cp: tuple[int, bytes] | None, victims: list[int]) -> None:
        self._seg.write_meta(low_water, cp)
        self._seg.remove_segments(victims)

    # -- failure ---------------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        """Enter the failed (or, for a cancelled writer, closed) state; fail every waiter."""
        if self._state == _FAILED:
            return
        if isinstance(exc, LogClosedError):
            self._state = _CLOSED
        else:
            self._state = _FAILED
            self._failure = exc
            logger.error("asyncwal: log %s failed: %r; reopen it to recover", self._path, exc)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

        def error() -> BaseException:
            if isinstance(exc, LogClosedError):
                return LogClosedError(str(exc))
            err = LogFailedError(
                f"the log failed ({exc!r}); this record's outcome is unknown: it may or may not be "
                "found when the log is reopened"
            )
            err.__cause__ = exc
            return err

        futures: list[asyncio.Future[Any]] = []
        for group in self._in_flight:
            futures += (f for _, f in group.os_q)
            futures += (f for _, f in group.disk_q)
        for q in (self._os_q, self._disk_q, self._mem_q):
            futures += (f for _, f in q)
        futures += (w.future for w in self._waiters)
        futures += (f for _, _, f in self._space_waiters)
        futures += (f for _, _, f in self._checkpoints)
        futures += (f for _, f in self._truncations)
        self._os_q, self._disk_q, self._mem_q = [], [], []
        self._waiters, self._checkpoints, self._truncations = [], [], []
        self._space_waiters.clear()
        self._pending = []
        self._pending_batches = 0
        for fut in futures:
            if not fut.done():
                fut.set_exception(error())
                # Mark retrieved: a caller that stopped waiting must not get a warning later.
                fut.exception()
        if self._progress is not None:
            self._progress.set()
            self._progress = None
        self._wake()

    def _unusable(self) -> Exception:
        if self._state == _FORKED:
            return WrongProcessError(
                f"the log {self._path} was opened by process {self._pid} and this is a child of it "
                "(after fork()): it cannot be used here. Open the log in this process instead (with "
                "several worker processes, one log each: see asyncwal.open_sharded)"
            )
        if self._state == _FAILED:
            err = LogFailedError(f"the log {self._path} has failed ({self._failure!r}); reopen it to recover")
            err.__cause__ = self._failure
            return err
        return LogClosedError(f"the log {self._path} is closed")

    def _check_usable(self) -> None:
        if self._state or self._closing:
            raise self._unusable()
        if self._loop is not _get_running_loop():
            raise WrongEventLoopError("a log can only be used from the event loop that opened it")

    # -- closing ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Write and fsync everything accepted, then release the directory.

        ``closed`` is True from the first line; later calls raise :class:`LogClosedError`,
        while everything already accepted is still written. Safe to call more than once and
        on a failed log (which it does not raise for).

        :raises LogFailedError: the final write or fsync failed
        """
        if self._state == _FORKED:
            return  # the parent's log: nothing of it belongs to this process
        if self._close_task is None:
            failed_before = self._state == _FAILED
            self._closing = True
            self._close_task = self._loop.create_task(self._close_impl(failed_before))
        await asyncio.shield(self._close_task)

    async def _close_impl(self, failed_before: bool) -> None:
        self._wake()
        try:
            await self._writer_task
        except asyncio.CancelledError:
            pass
        failed_now = self._state == _FAILED and not failed_before
        healthy = self._state != _FAILED
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        _LIVE_LOGS.discard(self)
        try:
            await self._io.submit(self._release, healthy)
        except OSError as exc:
            if healthy:
                self._fail(exc)
                failed_now = True
        finally:
            self._io.shutdown()
            if self._state == _OPEN:
                self._state = _CLOSED
            if self._progress is not None:
                self._progress.set()
                self._progress = None
        if failed_now:
            raise self._unusable()

    def _release(self, sync: bool) -> None:
        try:
            self._seg.close(sync)
        finally:
            self._ops.unlock(self._lock_handle)

    async def __aenter__(self) -> Log:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _forget_after_fork(self) -> None:
        """In a child after fork(): never touch the parent's files, lock or I/O thread again.

        Runs in the at-fork hook, so it takes no lock and makes no call into the FileOps but
        ``close_inherited`` (an optional method: the real file system closes the child's copies
        of the descriptors, so that the child does not hold the parent's lock alive).
        """
        self._state = _FORKED
        close_inherited = getattr(self._ops, "close_inherited", None)
        if close_inherited is not None:
            for handle in (self._seg.fd, self._lock_handle):
                try:
                    close_inherited(handle)
                except OSError:
                    pass

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if getattr(self, "_close_task", 1) is None and self._state != _FORKED:
            _warn(f"unclosed asyncwal log {self._path!r}", ResourceWarning, source=self, stacklevel=1)

    def __repr__(self) -> str:
        state = "failed" if self.failed else "closed" if self.closed else "open"
        if self._state == _FORKED:
            state = "forked"
        return (
            f"<asyncwal.Log {self._path!r} {state} sync_mode={self.sync_mode!r} "
            f"seqs={self.first_seq}..{self.last_seq} durable={self._durable_seq}>"
        )

    # -- observability ---------------------------------------------------------------------

    def stats(self) -> Stats:
        """A snapshot of the log's counters."""
        sizes = sorted(self._group_sizes)
        fsyncs = sorted(self._seg.fsync_seconds)
        return Stats(
            appends=self._n_appends,
            batches=self._n_batches,
            bytes=self._n_bytes,
            groups=self._n_groups,
            fsyncs=self._seg.fsync_count,
            mean_group_size=self._n_group_records / self._n_groups if self._n_groups else 0.0,
            group_size_p50=_quantile(sizes, 0.5),
            group_size_p99=_quantile(sizes, 0.99),
            group_size_max=sizes[-1] if sizes else 0,
            fsync_p50=_quantile(fsyncs, 0.5),
            fsync_p99=_quantile(fsyncs, 0.99),
            fsync_max=fsyncs[-1] if fsyncs else 0.0,
            queue_depth=self.last_seq - self._written_seq,
            queued_bytes=self._queued_bytes,
            executor_seconds=self._executor_seconds,
            segments=len(self._segments),
        )


#: Every open Log of this process, so that a child after fork() can disown them.
_LIVE_LOGS: weakref.WeakSet[Log] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for log in list(_LIVE_LOGS):
        log._forget_after_fork()
    _LIVE_LOGS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _split_queue(
    queue: list[tuple[int, asyncio.Future[Any]]], seq: int
) -> tuple[list[tuple[int, asyncio.Future[Any]]], list[tuple[int, asyncio.Future[Any]]]]:
    """Split a seq-ordered waiter queue into the waiters below ``seq`` and the rest."""
    i = bisect.bisect_left(queue, seq, key=_first)
    return queue[:i], queue[i:]


def _first(item: tuple[int, asyncio.Future[Any]]) -> int:
    return item[0]


def _resolve_all(queue: list[tuple[int, asyncio.Future[Any]]]) -> None:
    """Give each future its seq; one that its caller cancelled stays cancelled."""
    for seq, f in queue:
        try:
            f.set_result(seq)
        except asyncio.InvalidStateError:
            pass


def _payload_bytes(item: bytes | Batch) -> int:
    return len(item.body) if isinstance(item, Batch) else len(item)


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    return float(
        statistics.quantiles(sorted_values, n=1000, method="inclusive")[min(998, round(q * 1000) - 1)]
    )


def _to_bytes(data: object) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"a record must be bytes-like (bytes, bytearray, memoryview), not {type(data).__name__}")


def _check_level(durability: object) -> Durability:
    if isinstance(durability, Durability):
        return durability
    if isinstance(durability, int) and not isinstance(durability, bool):
        try:
            return Durability(durability)
        except ValueError:
            pass
    raise ValueError(f"durability must be an asyncwal.Durability, not {durability!r}")


# -- opening -------------------------------------------------------------------------------


class _Opener:
    """What :func:`open` returns: await it, or use it with ``async with``."""

    def __init__(self, path: str | os.PathLike[str], options: Options) -> None:
        self._path = os.fspath(path)
        self._options = options
        self._log: Log | None = None

    def __await__(self) -> Any:
        return self._open().__await__()

    async def _open(self) -> Log:
        loop = asyncio.get_running_loop()
        opts = self._options
        ops = opts.file_ops if opts.file_ops is not None else OsFileOps()
        io = IOThread(loop, f"asyncwal {self._path}")
        try:
            lock, recovered, writer = await io.submit(_prepare, ops, self._path, opts)
        except BaseException:
            io.shutdown()
            raise
        return Log(
            path=self._path,
            options=opts,
            loop=loop,
            io=io,
            ops=ops,
            writer=writer,
            recovered=recovered,
            lock_handle=lock,
        )

    async def __aenter__(self) -> Log:
        self._log = await self._open()
        return self._log

    async def __aexit__(self, *exc_info: object) -> None:
        if self._log is not None:
            await self._log.close()


def _prepare(ops: FileOps, path: str, opts: Options) -> tuple[int, RecoveredLog, SegmentWriter]:
    """Executor side of open(): lock, recover, and open or create the active segment."""
    ops.makedirs(path)
    lock = ops.lock(os.path.join(path, LOCK_NAME))
    try:
        max_frame = max_frame_length(opts.max_record_size, opts.max_batch_bytes)
        recovered = recover(ops, path, opts.recovery, max_frame)
        writer = SegmentWriter(ops, path, opts.segment_size, opts.preallocate, max_frame)
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


def open(path: str | os.PathLike[str], **options: Any) -> _Opener:
    """Open (creating if needed) the log in directory ``path``.

    ``await asyncwal.open(path)`` gives a :class:`Log`; ``async with asyncwal.open(path) as
    log`` also closes it. Recovery runs before the log is returned. The keyword options are
    the fields of :class:`Options`; unknown or invalid ones raise ``TypeError``/``ValueError``
    at once.

    :raises LogLockedError: another opener holds the directory
    :raises CorruptLogError: damage that the recovery mode does not allow to be cut
    :raises OSError: the directory cannot be created, read or locked, or recovery's own I/O
        failed. The lock is released; every step recovery takes is safe to repeat, so the
        next open starts over.
    """
    return _Opener(path, Options(**options))
