"""The group-commit engine: pending records, the writer task, groups, levels, failure.

How a record travels (docs/design.md tells it at length):

1. :meth:`Engine.append` runs on the event-loop thread. It takes the next seq and puts the
   payload on ``_pending``, with no ``await`` in between, so seq order is file order. It
   registers the caller's own future in the :class:`~asyncwal._levels.Levels` table for the
   level the caller waits for: cancelling one caller's wait can never cancel another's.
2. One writer task takes *everything* pending as one group and runs the framing, the write
   (and, when the mode or a waiter needs it, the fdatasync) in ONE call on the log's private
   I/O thread (:class:`~asyncwal._segment.SegmentWriter.write_group`). While that call runs, the
   next group accumulates. In sync mode up to two groups are in flight (one cohort of callers
   appends while the other's fsync runs); the thread still runs them one at a time, in order.
3. When the call returns, the engine advances ``OS`` (and ``DISK`` if it synced) in the table,
   which resolves exactly the futures whose level is now reached. A level above ``DISK`` is
   advanced by its own acknowledger (:meth:`Engine.external_level`).
4. If a write or sync raises, the log fails for good: every unresolved future gets its own
   :class:`LogFailedError` chained to the ``OSError``, and nothing is ever retried.

Only the writer task touches the :class:`SegmentWriter`, and only through the I/O thread, one
call at a time; every other piece of state here is touched only on the loop thread.

States: OPEN (``_closing`` set once ``close()`` starts: no new work, the writer drains), CLOSED,
FAILED (sticky), FORKED (this object was inherited by a child process: it never acts again).

Why this module is longer than the others (~1,000 lines): it is one state machine. Seq
assignment, the pending records, the levels, the groups in flight, the background fsync,
the control work and the failure state change together, often in one step, and every
transition checks several of them; split across modules they would have to be shared
through attributes of each other, which is the coupling this layout removed. What could be
apart is apart: the levels table (_levels.py), the loop-thread write policy
(_loopwrites.py), the durable tap (_tap.py), the statistics snapshot (_stats.py), the
segment files (_segment.py) and the public face (_log.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol, TypeVar

from ._errors import (
    LogClosedError,
    LogFailedError,
    RecordTooLargeError,
    WrongEventLoopError,
    WrongProcessError,
)
from ._format import encode_batch
from ._levels import Levels
from ._loopwrites import LoopWrites
from ._options import Durability
from ._segment import Batch
from ._stats import Stats, quantile
from ._tap import DurableTap

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._fileops import FileOps
    from ._iothread import IOThread
    from ._levels import ExternalLevel
    from ._options import Options
    from ._recovery import RecoveredLog, RecoveryReport
    from ._segment import SegmentWriter

__all__ = ("Checkpoint", "Engine", "Replication")

logger = logging.getLogger("asyncwal")

_T = TypeVar("_T")
_get_running_loop = asyncio._get_running_loop
_get_ident = threading.get_ident
_perf = time.perf_counter

_MEMORY: Final = Durability.MEMORY
_OS: Final = Durability.OS
_DISK: Final = Durability.DISK
_REPLICATED: Final = Durability.REPLICATED

# States.
_OPEN: Final = 0
_CLOSED: Final = 1
_FAILED: Final = 2
_FORKED: Final = 3

#: Sync mode: a group of at least this many records, found while the I/O thread is idle, is
#: split in two, to start a second cohort (see _submit_group).
_SPLIT_RECORDS: Final = 64

#: MEMORY-level acks are immediate until this many records wait for the writer; past that,
#: an ack waits until the writer has taken the record (see _enqueue_record).
_MEMORY_ACK_RECORDS: Final = 1024

#: batch/none modes: the largest group the event-loop thread writes itself (see _write_on_loop).
#: Framing, CRC and a page-cache pwrite of 64 KiB take ~80 us on the project machine (128 KiB:
#: ~160 us, too long a step for the loop).
_LOOP_WRITE_MAX_BYTES: Final = 64 * 1024

#: batch/none modes: how many appends in a row may write their record themselves (see
#: _append_direct) before one goes through the writer task, which lets the loop turn (timers,
#: fsync completions, other tasks) and starts a new run.
_DIRECT_RUN: Final = 64


class Checkpoint(NamedTuple):
    """A durable marker: every record up to ``seq`` was on disk when it was taken."""

    #: the last seq the checkpoint covers (0 if the log was empty)
    seq: int
    #: the caller's data, e.g. a snapshot id
    data: bytes


class Replication(Protocol):
    """What replicates a log (``asyncwal.replication.Replicator``), as the engine sees it."""

    async def close(self) -> None:
        """Ship what is durable, then stop (called by the log's close, before the files go)."""
        ...


class _Group(NamedTuple):
    """A group of records handed to the I/O thread."""

    first: int
    last: int
    nbytes: int  # payload bytes (a Batch counts its whole body)
    started: float


class Engine:
    """The group-commit core of one open log. :class:`~asyncwal.Log` is its public face.

    Bound to one event loop (and its thread) and one process. Construct it only through
    ``asyncwal.open``: recovery has run and the active segment is open.
    """

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
        self.path = path
        self.options = options
        self.loop = loop
        # The hot path checks the thread (33 ns) and that our loop runs (30-50 ns) rather than
        # the running loop (~230 ns under CPython 3.11: it makes a getpid() call); one thread
        # runs one loop at a time.
        self._thread = _get_ident()
        self._loop_running = loop.is_running
        self._create_future = loop.create_future
        self._io = io
        self.ops = ops
        self._seg = writer
        self._lock_handle = lock_handle
        self._pid = os.getpid()
        self._max_record = options.max_record_size
        self._max_pending = options.max_pending_bytes
        self._default_level = options.default_durability
        self._sync_each_group = options.sync_mode == "sync"
        self._batch_mode = options.sync_mode == "batch"
        self._batch_size = options.batch_size
        self._batch_interval = options.batch_interval

        #: first seqs of the segment files, oldest first; the last is the active one
        self.segments: list[int] = recovered.segments
        self.low_water = recovered.low_water
        cp = recovered.checkpoint
        self.checkpoint: Checkpoint | None = Checkpoint(*cp) if cp is not None else None
        self.recovery_report: RecoveryReport | None = recovered.report
        #: the log's durable identity (a UUID string, kept in META)
        self.log_id = recovered.log_id
        #: the lowest seq that truncate_before() must keep (a replication shipper sets it)
        self.retain_from: Callable[[], int] | None = None
        #: the log's replicator, if any: close() awaits its close() once every accepted
        #: record is durable (or the log failed), before the files are released
        self.replication: Replication | None = None

        last = recovered.next_seq - 1
        self.next_seq = recovered.next_seq
        self.levels = Levels(last, self._progressed, self._later)
        self._queue = self.levels.queue  # per level: (seq, future) of appends, in seq order
        self._mark = self.levels.mark

        # Records accepted and not yet taken by the writer: payloads, and a Batch for each
        # append_batch() call.
        self._pending: list[bytes | Batch] = []
        self._pending_batches = 0
        self._queued_bytes = 0  # pending + in flight: what backpressure bounds
        self._in_flight_bytes = 0  # the part of it in groups on the I/O thread
        # Groups handed to the I/O thread and not yet completed, oldest first (the thread runs
        # them in this order). Sync mode keeps up to two in flight, so that one cohort of
        # appenders runs on the loop while the other's write + fsync runs on the thread.
        self._in_flight: deque[_Group] = deque()
        self._depth = 1 if options.sync_mode == "none" else 2
        # A background fsync on the I/O thread (batch/none modes: the loop thread may go on
        # writing meanwhile); the seq it covers, or 0.
        self._syncing = 0
        # batch mode: start an fsync once this many written records are unsynced, so that it
        # has run by the time batch_size would force the appenders to wait for one; but only
        # while that pays (LoopWrites.early_sync_pays).
        self._early_sync = max(1, options.batch_size // 2)
        self._submitted_seq = last
        # Appends waiting for queue space, in call order; they get a seq when admitted.
        self._space_waiters: deque[tuple[Any, Durability, asyncio.Future[Any]]] = deque()
        # Work for the writer that is not a record.
        self._checkpoints: list[tuple[int, bytes, asyncio.Future[Checkpoint]]] = []
        self._truncations: list[tuple[int, asyncio.Future[int]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_fired = False
        # Followers wait on this; set (and dropped) on every progress.
        self._progress: asyncio.Event | None = None
        # The durable tap (see tap_durable), if a consumer asked for one.
        self._tap: DurableTap | None = None

        self.state = _OPEN
        self.closing = False
        self._refusing = False  # state != OPEN or closing: what the hot path checks
        self._failure: BaseException | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._close_task: asyncio.Task[None] | None = None

        # batch/none modes: groups may be written by the loop thread (see _write_on_loop).
        self._loop_writes = LoopWrites(options, loop, path)
        # Appends that may still write their own record before the writer task runs again
        # (refilled while the appends come one at a time: see _complete).
        self._direct_run = 0
        self._lone_appender = True
        # ...as long as the acknowledged, unsynced records stay below this (batch_size).
        self._direct_bound = options.batch_size if options.sync_mode == "batch" else 1 << 62
        # How long each of the log's own steps held the loop (writer task steps, callbacks).
        self._steps: deque[float] = deque(maxlen=16384)
        self._step_started = 0.0

        # Counters.
        self._n_loop_writes = 0
        self._n_appends = 0
        self._n_batches = 0
        self._n_bytes = 0
        self._n_groups = 0
        self._n_group_records = 0
        self._group_sizes: deque[int] = deque(maxlen=4096)
        self._executor_seconds = 0.0

        _LIVE.add(self)
        self._writer_task = loop.create_task(self._writer_main(), name=f"asyncwal writer {path}")

    # -- where the log is ------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1

    @property
    def first_seq(self) -> int:
        return self.segments[0] if self.segments else self.next_seq

    @property
    def replicated_seq(self) -> int | None:
        """The ``REPLICATED`` mark, or None while nothing advances that level."""
        return self._mark[_REPLICATED] if self.levels.offered(_REPLICATED) else None

    def mark(self, level: Durability) -> int:
        """Every seq up to this one has reached ``level`` (``MEMORY``: been accepted)."""
        return self.next_seq - 1 if level is _MEMORY else self._mark[level]

    # -- accepting work --------------------------------------------------------------------

    def append(
        self, data: bytes | bytearray | memoryview, durability: Durability | None = None
    ) -> asyncio.Future[int]:
        """Take a seq for ``data`` and queue it; the future resolves at its level.

        This IS ``Log.append`` (each Log binds it as its own ``append``, see Log.__init__): keep
        the signature and the behaviour documented there.
        """
        if self._refusing or _get_ident() != self._thread or not self._loop_running():
            raise self.refusal()
        if type(data) is not bytes:
            data = to_bytes(data)
        n = len(data)
        if n > self._max_record:
            raise RecordTooLargeError(f"record of {n} bytes exceeds max_record_size={self._max_record}")
        level = self._default_level if durability is None else self.check_level(durability)
        if (
            self._direct_run
            and level is _OS
            and not self._pending
            and not self._in_flight
            and self.next_seq - self._mark[_DISK] < self._direct_bound
            and n <= _LOOP_WRITE_MAX_BYTES
        ):
            direct = self._append_direct(data)
            if direct is not None:
                return direct
        fut: asyncio.Future[int] = self._create_future()
        if self._queued_bytes > self._max_pending or self._space_waiters:
            self._space_waiters.append((data, level, fut))
            return fut
        # What _enqueue_record() does, inlined: this is the hot path, and the call would
        # cost about a sixth of it.
        seq = self.next_seq
        self.next_seq = seq + 1
        pending = self._pending
        pending.append(data)
        self._queued_bytes += n
        if level is not _MEMORY:
            self._queue[level].append((seq, fut))
            if level > _DISK:
                self.levels.started(level, seq, fut)
        elif len(pending) < _MEMORY_ACK_RECORDS:
            fut.set_result(seq)
        else:
            self._queue[_MEMORY].append((seq, fut))  # see _enqueue_record
        if self._wakeup is not None:
            self._wake()
        return fut

    def _append_direct(self, data: bytes) -> asyncio.Future[int] | None:
        """batch/none modes, an append at ``OS`` while the log is idle (nothing pending, no
        write on the I/O thread): write the record from this step and acknowledge it at once.

        Redis's way: the event-loop thread writes into the page cache, a background thread
        fsyncs. A lone record would otherwise cost two task switches through the writer task
        (~4 us of the loop's CPU here). Runs of at most _DIRECT_RUN, so that the loop turns
        and concurrent appends still form groups. Returns None (nothing done) when the record
        does not fit the active segment's zero-filled space. Only while appends come one at a
        time (the last group held one record): many concurrent appenders form groups instead.
        """
        seq = self.next_seq
        started = _perf()
        self._loop_writes.appended(started)
        try:
            if not self._seg.write_in_place(seq, data):
                return None
        except BaseException as exc:
            self.next_seq = seq + 1  # accepted: its outcome is unknown
            self._fail(exc)
            raise self.refusal() from exc
        elapsed = _perf() - started
        self.next_seq = seq + 1
        self._submitted_seq = seq
        self._direct_run -= 1
        if self._loop_writes.is_slow(elapsed) and self._loop_writes.took(elapsed):
            self._direct_run = 0
        self._steps.append(elapsed)
        n = len(data)
        self._n_appends += 1
        self._n_bytes += n
        self._n_groups += 1
        self._n_group_records += 1
        self._group_sizes.append(1)
        self._n_loop_writes += 1
        mark = self._mark
        mark[_MEMORY] = seq
        if self._tap is not None:
            self._tap.taken(seq, seq, [data], n)
        if self._queue[_OS] or self._progress is not None or self.levels.waits[_OS]:
            self.levels.advance(_OS, seq)
        else:
            mark[_OS] = seq  # nobody to wake
        if self._batch_mode:
            if self._timer is None:
                self._timer = self.loop.call_later(self._batch_interval, self._on_timer)
            if not self._syncing and self._early_sync_due():
                self._start_sync()
        fut: asyncio.Future[int] = self._create_future()
        fut.set_result(seq)
        return fut

    def _enqueue_record(self, data: bytes, level: Durability, fut: asyncio.Future[int]) -> None:
        """Give ``data`` the next seq and queue it; register ``fut`` for ``level``.

        No await and no exception in here: seq order must be file order. The framing (header
        and CRC) is done by the writer, per frame rather than per record.
        """
        seq = self.next_seq
        self.next_seq = seq + 1
        pending = self._pending
        pending.append(data)
        self._queued_bytes += len(data)
        if level is not _MEMORY:
            self._queue[level].append((seq, fut))
            if level > _DISK:
                self.levels.started(level, seq, fut)
        elif len(pending) < _MEMORY_ACK_RECORDS:
            fut.set_result(seq)
        else:
            # Already accepted, but acknowledged only when the writer takes it. Appenders
            # that await nothing else would otherwise never let the loop wait, and then the
            # I/O thread rarely gets the GIL back (a thread that releases the GIL for a moment
            # and takes it again at once keeps it from a waiting thread); the writer would
            # fall ever further behind and none mode would be the slowest mode.
            self._queue[_MEMORY].append((seq, fut))

    def append_batch(self, payloads: list[bytes]) -> asyncio.Future[list[int]]:
        """Queue ``payloads`` as one atomic frame; the future gives their seqs at ``DISK``."""
        fut: asyncio.Future[list[int]] = self._create_future()
        if not payloads:
            fut.set_result([])
            return fut
        body = encode_batch(payloads)
        if len(body) > self.options.max_batch_bytes:
            raise RecordTooLargeError(
                f"batch of {len(body)} bytes exceeds max_batch_bytes={self.options.max_batch_bytes}"
            )
        if self._queued_bytes > self._max_pending or self._space_waiters:
            self._space_waiters.append(((body, len(payloads)), _DISK, fut))
            return fut
        self._enqueue_batch(body, len(payloads), fut)
        return fut

    def _enqueue_batch(self, body: bytes, count: int, fut: asyncio.Future[list[int]]) -> None:
        first = self.next_seq
        self.next_seq = first + count
        self._pending.append(Batch(body, count))
        self._pending_batches += 1
        self._queued_bytes += len(body)
        self._n_batches += 1
        last = first + count - 1
        self.levels.wait(last, _DISK, fut, list(range(first, last + 1)))
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

    def wait(self, seq: int, level: Durability) -> asyncio.Future[None]:
        """A future that resolves once ``seq`` (already accepted) has reached ``level``."""
        fut: asyncio.Future[None] = self._create_future()
        if level is _MEMORY:
            fut.set_result(None)
            return fut
        self.levels.wait(seq, level, fut, None)
        if not fut.done():
            self._wake()
        return fut

    def request_checkpoint(self, data: bytes) -> asyncio.Future[Checkpoint]:
        fut: asyncio.Future[Checkpoint] = self._create_future()
        self._checkpoints.append((self.last_seq, data, fut))
        self._wake()
        return fut

    def request_truncation(self, seq: int) -> asyncio.Future[int]:
        fut: asyncio.Future[int] = self._create_future()
        self._truncations.append((seq, fut))
        self._wake()
        return fut

    def external_level(
        self,
        level: Durability,
        *,
        timeout: float,
        timeout_error: Callable[[int], BaseException],
        start: int = 0,
    ) -> ExternalLevel:
        """Hand ``level`` (above ``DISK``) to an acknowledger outside the writer.

        :param timeout: seconds a wait at ``level`` may last; then its future fails with
            ``timeout_error(seq)`` (the record stays where it is)
        :param start: the level's mark to begin with (what the acknowledger knows to have
            reached it already; never above ``durable_seq``)
        :raises ValueError: ``level`` is one of the engine's own, or is taken
        """
        return self.levels.external(level, self.loop, timeout, timeout_error, min(start, self._mark[_DISK]))

    def tap_durable(self, callback: Callable[[int, list[bytes] | None], None], *, max_bytes: int) -> int:
        """Hand every record to ``callback`` once it is durable, in seq order, from memory.

        ``callback(first, payloads)`` (on the loop thread; it must not block) gets the records
        ``first, first + 1, ...`` as soon as they reach ``DISK``; records accepted before the
        tap are not delivered. While more than ``max_bytes`` wait for their fsync (``none``
        mode with nobody syncing), they are dropped from memory and ``callback(first, None)``
        says so: the records from ``first`` up to the next delivery's first seq must then be
        read from the files. Used by the replication shipper; one tap per log.

        :return: the first seq the tap delivers (records below it are already with the writer)
        :raises ValueError: a tap is already set
        """
        if self._tap is not None:
            raise ValueError("this log already has a durable tap")
        self._tap = DurableTap(callback, max_bytes)
        return self._submitted_seq + 1

    def untap_durable(self) -> None:
        self._tap = None

    def check_level(self, durability: object) -> Durability:
        """``durability`` as a level this log offers; ValueError otherwise."""
        level = _as_level(durability)
        if not self.levels.offered(level):
            raise ValueError(
                f"this log does not offer {level.name}: it was not opened with an acknowledger for it "
                "(for REPLICATED, open it with replication)"
            )
        return level

    # -- state -----------------------------------------------------------------------------

    def refusal(self) -> Exception:
        """Why a call is refused right now (the caller has checked that it is)."""
        if self.state == _FORKED:
            return WrongProcessError(
                f"the log {self.path} was opened by process {self._pid} and this is a child of it "
                "(after fork()): it cannot be used here. Open the log in this process instead (with "
                "several worker processes, one log each: see asyncwal.open_sharded)"
            )
        if self.state == _FAILED:
            err = LogFailedError(f"the log {self.path} has failed ({self._failure!r}); reopen it to recover")
            err.__cause__ = self._failure
            return err
        if self.state or self.closing:
            return LogClosedError(f"the log {self.path} is closed")
        return WrongEventLoopError("a log can only be used from the event loop that opened it")

    def check_usable(self) -> None:
        if self._refusing or self.loop is not _get_running_loop():
            raise self.refusal()

    def _set_state(self, state: int) -> None:
        self.state = state
        self._refusing = state != _OPEN or self.closing

    @property
    def failed(self) -> bool:
        return self.state == _FAILED

    @property
    def forked(self) -> bool:
        return self.state == _FORKED

    @property
    def closed(self) -> bool:
        return self.state == _CLOSED or self.closing

    def forget_after_fork(self) -> None:
        """In a child after fork(): never touch the parent's files, lock or I/O thread again.

        Runs in the at-fork hook, so it takes no lock and makes no call into the FileOps but
        ``close_inherited`` (an optional method: the real file system closes the child's copies
        of the descriptors, so that the child does not keep the parent's lock alive).
        """
        self._set_state(_FORKED)
        close_inherited = getattr(self.ops, "close_inherited", None)
        if close_inherited is not None:
            for handle in (self._seg.fd, self._lock_handle):
                try:
                    close_inherited(handle)
                except OSError:
                    pass

    # -- progress --------------------------------------------------------------------------

    def _progressed(self) -> None:
        """A mark moved: wake the followers."""
        if self._progress is not None:
            self._progress.set()
            self._progress = None

    async def wait_progress(self, seq: int, limit: Callable[[], int]) -> bool:
        """Wait until ``limit()`` reaches ``seq``. False once the log is closed and drained.

        :raises LogFailedError: the log failed
        """
        while seq > limit():
            if self.state == _FAILED or self.state == _FORKED:
                raise self.refusal()
            if self.state == _CLOSED or (
                self.closing and self._close_task is not None and self._close_task.done()
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
        """Is an fsync due for records already written (the batch timer, batch mode's early
        fsync, or a waiter)?"""
        return self._timer_fired or self._early_sync_due() or self.levels.needs_sync(self._mark[_OS])

    def _early_sync_due(self) -> bool:
        """batch mode: are ``batch_size / 2`` written records unsynced, while an fsync started
        that early pays (LoopWrites.early_sync_pays)?"""
        mark = self._mark
        return (
            self._batch_mode
            and mark[_OS] - mark[_DISK] >= self._early_sync
            and self._loop_writes.early_sync_pays(self._batch_size)
        )

    async def _writer_main(self) -> None:
        loop = self.loop
        mark = self._mark
        steps = self._steps
        self._step_started = _perf()
        try:
            while not self.state:
                if self._pending and len(self._in_flight) < self._depth and not self._hold_for_sync():
                    self._submit_group()
                    continue
                if not self._syncing and mark[_OS] > mark[_DISK] and self._sync_wanted():
                    self._start_sync()
                    continue
                if not self._in_flight and not self._syncing:
                    # The I/O thread is idle: control work runs only then.
                    if self._truncations or (self._checkpoints and self._checkpoints[0][0] <= mark[_OS]):
                        await self._run_control()
                        continue
                    if self.closing and not self._pending and not self._space_waiters:
                        break
                # Woken by an append, a completed group or sync, a timer, a control call or close().
                self._wakeup = loop.create_future()
                steps.append(_perf() - self._step_started)
                await self._wakeup
                self._step_started = _perf()
                if self._lone_appender and self._loop_writes.allowed():
                    self._direct_run = _DIRECT_RUN
            if not self.state and mark[_OS] > mark[_DISK]:
                await self._await_io(self._start_sync())
        except asyncio.CancelledError:
            self._wakeup = None  # cancelled with this task: _fail() must not resolve it
            self._fail(LogClosedError("the log's writer task was cancelled (was the log closed?)"))
            raise
        except BaseException as exc:
            self._fail(exc)

    def _hold_for_sync(self) -> bool:
        """batch mode: would the pending group break the batch_size bound, when the fsync
        already running will keep it? Then wait for that fsync rather than start another."""
        if not self._syncing or not self._batch_mode:
            return False
        last = self.next_seq - 1
        return last - self._mark[_DISK] >= self._batch_size and last - self._syncing < self._batch_size

    async def _in_executor(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn`` on the I/O thread and wait for it."""
        start = self.loop.time()
        try:
            return await self._await_io(self._io.submit(fn, *args))
        finally:
            self._executor_seconds += self.loop.time() - start

    async def _await_io(self, fut: asyncio.Future[_T]) -> _T:
        """Await I/O-thread work: the writer task's step ends here and starts again after."""
        self._steps.append(_perf() - self._step_started)
        try:
            return await fut
        finally:
            self._step_started = _perf()

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
        else:
            self._pending = []
            last = self.next_seq - 1
            self._pending_batches = 0
        self._submitted_seq = last
        if self._pending:  # split: count the first half (single records only)
            nbytes = sum(map(len, items))
        else:  # everything pending: what is queued and not in flight (no pass over the group)
            nbytes = self._queued_bytes - self._in_flight_bytes
        if self._tap is not None:
            self._tap.taken(first, last, items, nbytes)
        need_sync = (
            self._sync_each_group
            or self._timer_fired
            or (self._batch_mode and last - self._mark[_DISK] >= self._batch_size)
            or self.levels.needs_sync(last)
        )
        if self._queue[_MEMORY]:
            self.levels.advance(_MEMORY, last)  # held-back MEMORY acks: the writer took them
        else:
            self._mark[_MEMORY] = last
        group = _Group(first, last, nbytes, self.loop.time())
        if (
            not need_sync
            and not self._in_flight
            and nbytes <= _LOOP_WRITE_MAX_BYTES
            and self._seg.fits_in_place(items, nbytes, batches)
            and self._loop_writes.allowed()
        ):
            self._write_on_loop(group, items, batches)
            return
        self._in_flight.append(group)
        self._in_flight_bytes += nbytes
        fut = self._io.submit(self._seg.write_group, items, first, last, need_sync, batches)
        fut.add_done_callback(functools.partial(self._group_done, group))

    def _write_on_loop(self, group: _Group, items: list[bytes | Batch], batches: bool) -> None:
        """Write ``group`` to the page cache from this (the event-loop) thread; complete it.

        Only in batch/none modes, for a small group that needs no fsync, while the I/O thread
        is idle (nothing in flight, and the writer task, the only one that submits, is here):
        so calls on the SegmentWriter still run one at a time, in order. ``fits_in_place``
        guarantees one plain write: no rotation, no zero fill, no open, no sync. The write is
        timed; two slow ones in a row turn this path off for a while (LoopWrites.took).
        """
        start = _perf()
        self._seg.write_group(items, group.first, group.last, False, batches)
        self._n_loop_writes += 1
        if self._loop_writes.took(_perf() - start):
            self._direct_run = 0
        self._complete(group, [], 0)

    def _group_done(self, group: _Group, fut: asyncio.Future[tuple[list[int], int]]) -> None:
        """Completion of a group on the I/O thread, in submission order."""
        started = _perf()
        assert self._in_flight[0] is group, "groups complete in submission order"
        self._executor_seconds += self.loop.time() - group.started
        exc = fut.exception()  # retrieved even when unused: a failed group queued behind a failed one
        if exc is not None and not self.state:
            self._fail(exc)
        self._in_flight.popleft()
        self._in_flight_bytes -= group.nbytes
        if not self.state:  # not failed (now or before), closed or forked
            created, durable = fut.result()
            self._complete(group, created, durable)
        self._steps.append(_perf() - started)

    def _complete(self, group: _Group, created: list[int], durable: int) -> None:
        """A group is written (and synced up to ``durable``): advance the levels, resolve waiters."""
        count = group.last - group.first + 1
        # One appender at a time (groups of one record): appends may write their own record.
        # With many, they would write one record each instead of forming groups.
        self._lone_appender = count == 1
        self._n_groups += 1
        self._n_group_records += count
        self._group_sizes.append(count)
        self._n_appends += count
        self._n_bytes += group.nbytes
        if created:
            self.segments.extend(created)
        self._queued_bytes -= group.nbytes
        self.levels.advance(_OS, group.last)
        if durable:
            self._synced(durable)
        elif self._batch_mode and self._timer is None and group.last > max(self._mark[_DISK], self._syncing):
            # The first write that no fsync covers or is covering: one is due within the interval.
            self._timer = self.loop.call_later(self._batch_interval, self._on_timer)
        if self._space_waiters:
            self._admit_space_waiters()
        self._wake()

    def _start_sync(self) -> asyncio.Future[None]:
        """Start an fsync of everything written so far, on the I/O thread; do not wait for it.

        It covers the records written before it starts (``OS``), and only those: groups
        written on the loop thread while it runs are not counted (see SegmentWriter.sync).
        """
        target = self._mark[_OS]
        self._syncing = target
        # This fsync covers what the batch timer was for: a later write arms it again.
        self._timer_fired = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        fut: asyncio.Future[None] = self._io.submit(self._seg.sync)
        fut.add_done_callback(functools.partial(self._sync_done, target, self.loop.time()))
        return fut

    def _later(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` on a later loop turn, as one of the log's timed steps."""
        self.loop.call_soon(self._timed, fn, args)

    def _timed(self, fn: Callable[..., object], args: tuple[Any, ...]) -> None:
        started = _perf()
        fn(*args)
        self._steps.append(_perf() - started)

    def _sync_done(self, target: int, started: float, fut: asyncio.Future[None]) -> None:
        begun = _perf()
        self._syncing = 0
        took = self.loop.time() - started
        self._executor_seconds += took
        self._loop_writes.synced(took)
        exc = fut.exception()  # retrieved even when unused
        if exc is not None:
            if not self.state:
                self._fail(exc)
        elif not self.state:
            self._synced(target)
            self._wake()
        self._steps.append(_perf() - begun)

    def _synced(self, seq: int) -> None:
        self.levels.advance(_DISK, seq)
        if self._tap:
            self._tap.durable(seq)
        if self._mark[_DISK] >= self._mark[_OS]:
            self._timer_fired = False
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self._mark[_OS] > self._mark[_DISK]:
            self._timer_fired = True
            self._wake()

    async def _run_control(self) -> None:
        # A request leaves its list only once its I/O is done, so that _fail() reaches it.
        while self._truncations:
            seq, tfut = self._truncations[0]
            if self.retain_from is not None:
                seq = min(seq, self.retain_from())
            segs = self.segments
            victims = [segs[i] for i in range(len(segs) - 1) if segs[i + 1] <= seq]
            if victims:
                low_water = max(self.low_water, seq)
                cp = (self.checkpoint.seq, self.checkpoint.data) if self.checkpoint else None
                await self._in_executor(self._truncate_io, low_water, cp, victims)
                self.low_water = low_water
                del self.segments[: len(victims)]
                self._progressed()
            self._truncations.pop(0)
            if not tfut.done():
                tfut.set_result(self.first_seq)
        ready = [c for c in self._checkpoints if c[0] <= self._mark[_OS]]
        if not ready:
            return
        if self._mark[_DISK] < ready[-1][0]:
            await self._await_io(self._start_sync())
        for cp_seq, data, cfut in ready:
            await self._in_executor(self._seg.write_meta, self.low_water, (cp_seq, data))
            self.checkpoint = Checkpoint(cp_seq, data)
            self._checkpoints.remove((cp_seq, data, cfut))
            if not cfut.done():
                cfut.set_result(self.checkpoint)

    def _truncate_io(self, low_water: int, cp: tuple[int, bytes] | None, victims: list[int]) -> None:
        self._seg.write_meta(low_water, cp)
        self._seg.remove_segments(victims)

    # -- failure ---------------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        """Enter the failed (or, for a cancelled writer, closed) state; fail every waiter."""
        if self.state == _FAILED or self.state == _FORKED:
            return
        if isinstance(exc, LogClosedError):
            self._set_state(_CLOSED)
        else:
            self._failure = exc
            self._set_state(_FAILED)
            logger.error("asyncwal: log %s failed: %r; reopen it to recover", self.path, exc)
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

        futures = self.levels.futures()
        futures += (f for _, _, f in self._space_waiters)
        futures += (f for _, _, f in self._checkpoints)
        futures += (f for _, f in self._truncations)
        self._checkpoints, self._truncations = [], []
        self._space_waiters.clear()
        self._pending = []
        self._pending_batches = 0
        for fut in futures:
            if not fut.done():
                fut.set_exception(error())
                # Mark retrieved: a caller that stopped waiting must not get a warning later.
                fut.exception()
        self._progressed()
        self._wake()

    # -- closing ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Drain, fsync, release the directory; see Log.close."""
        if self.state == _FORKED:
            return  # the parent's log: nothing of it belongs to this process
        if self._close_task is None:
            failed_before = self.state == _FAILED
            self.closing = True
            self._refusing = True
            self._close_task = self.loop.create_task(self._close_impl(failed_before))
        await asyncio.shield(self._close_task)

    @property
    def close_started(self) -> bool:
        return self._close_task is not None

    async def _close_impl(self, failed_before: bool) -> None:
        self._wake()
        try:
            await self._writer_task
        except asyncio.CancelledError:
            pass
        if self.replication is not None and self.state != _FORKED:
            try:
                await self.replication.close()
            except Exception:  # a replica's trouble never keeps the log from closing
                logger.exception("asyncwal: log %s: stopping its replication failed", self.path)
        failed_now = self.state == _FAILED and not failed_before
        healthy = self.state != _FAILED
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        _LIVE.discard(self)
        try:
            await self._io.submit(self._release, healthy)
        except OSError as exc:
            if healthy:
                self._fail(exc)
                failed_now = True
        finally:
            self._io.shutdown()
            if self.state == _OPEN:
                self._set_state(_CLOSED)
            self._progressed()
        if failed_now:
            raise self.refusal()

    def _release(self, sync: bool) -> None:
        try:
            self._seg.close(sync)
        finally:
            self.ops.unlock(self._lock_handle)

    # -- observability ---------------------------------------------------------------------

    def stats(self) -> Stats:
        sizes = sorted(self._group_sizes)
        fsyncs = sorted(self._seg.fsync_seconds)
        steps = sorted(self._steps)
        replicated = self.replicated_seq
        return Stats(
            appends=self._n_appends,
            batches=self._n_batches,
            bytes=self._n_bytes,
            groups=self._n_groups,
            fsyncs=self._seg.fsync_count,
            mean_group_size=self._n_group_records / self._n_groups if self._n_groups else 0.0,
            group_size_p50=quantile(sizes, 0.5),
            group_size_p99=quantile(sizes, 0.99),
            group_size_max=sizes[-1] if sizes else 0,
            fsync_p50=quantile(fsyncs, 0.5),
            fsync_p99=quantile(fsyncs, 0.99),
            fsync_max=fsyncs[-1] if fsyncs else 0.0,
            queue_depth=self.last_seq - self._mark[_OS],
            queued_bytes=self._queued_bytes,
            executor_seconds=self._executor_seconds,
            segments=len(self.segments),
            replicated_seq=replicated,
            replication_lag=max(0, self._mark[_DISK] - replicated) if replicated is not None else 0,
            loop_writes=self._n_loop_writes,
            loop_step_p999=quantile(steps, 0.999),
            loop_step_max=steps[-1] if steps else 0.0,
        )


#: Every open engine of this process, so that a child after fork() can disown them.
_LIVE: weakref.WeakSet[Engine] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for engine in list(_LIVE):
        engine.forget_after_fork()
    _LIVE.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def to_bytes(data: object) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"a record must be bytes-like (bytes, bytearray, memoryview), not {type(data).__name__}")


def _as_level(durability: object) -> Durability:
    if isinstance(durability, Durability):
        return durability
    if isinstance(durability, int) and not isinstance(durability, bool):
        try:
            return Durability(durability)
        except ValueError:
            pass
    raise ValueError(f"durability must be an asyncwal.Durability, not {durability!r}")
