"""The shipper: publishes a log's ``DISK``-durable records to its stream, in order, exactly once.

Why it is exactly once, across restarts of the process, of the shipper, and failovers of the
stream's leader, even outside JetStream's duplicate window:

1. **The position comes from the stream.** On every (re)start the shipper reads the stream's
   last message (from the leader) and resumes after the last log seq it holds. There is no
   local position file that could disagree with the stream.
2. **The server checks the order.** Every message carries ``Nats-Expected-Last-Sequence``:
   the stream sequence it must follow, counted from the position just read, so that the
   messages of one shipping run land back to back, exactly where they were meant to, and
   a message after one that was lost is refused (API error 10071). In the record layout
   the stream sequence *is* the record's seq (the stream was created that way), so the
   check is on content: a message can only land where its record belongs.
3. **Fences end earlier runs (packed layout).** Position alone does not tell a packed
   message from another run: a message left in flight by an earlier run could arrive late
   and land right behind a message of this run that happens to end at the position it
   expected, holding records that do not follow. So each run starts by writing ``K`` fences
   (one atomic batch, see _wire) right behind the position it read, and its ``i``-th
   message also requires fence ``i mod K`` to be the last message on that fence's subject
   (``Nats-Expected-Last-Subject-Sequence``). The batch is stored whole or not at all, so
   once a run has started, every message of every earlier run is refused; before it, an
   earlier run's message can only land at the very position it was built for, right
   behind its own predecessor. A clustered stream refuses a message whose subject check
   names a subject that a message still in flight also names, which is why there are
   ``K`` fences: message ``i`` is sent only after message ``i - K`` is acknowledged, so up
   to ``K`` messages are in flight.
4. **Refusals and silence are settled, never guessed.** On any error or missed deadline the
   shipper stops publishing, waits until every message in flight is answered or past its
   deadline, drops them, reads the position again and resumes from there (a new run). A
   message that was stored although its acknowledgement was lost is found by that read.

(``Nats-Expected-Last-Msg-Id`` would check content with a pipeline, but a refusal of it when
the message is applied wedges the stream on nats-server 2.15: "critical write error".)

The ``REPLICATED`` mark is advanced only by an acknowledgement of a stored message (or by the
position read from the stream), and only up to the last seq that message holds.

Records come from _source: only records at or below the log's ``durable_seq``, so nothing a
local crash could take back is shipped. At start the shipper compares the stream with the
log: a stream holding seqs the log does not have (the log is *behind*) or a different record
under the same seq is a :class:`~asyncwal.DivergedError`, and nothing is shipped; a log
*ahead* of its stream just resumes.

Everything here runs on the event-loop thread; the NATS client is only awaited through
_jetstream, whose calls all have deadlines.

Why it is longer than the other modules (~590 lines): the exactly-once argument above holds
only if the position read, the fences, the in-flight window and the settling after an error
are one state machine; they are kept in one place so the argument can be checked against
the code.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from .._errors import (
    CorruptLogError,
    DivergedError,
    LogClosedError,
    LogFailedError,
    ReplicationError,
    StreamMismatchError,
    TruncatedError,
    WrongProcessError,
)
from . import _wire
from ._jetstream import ERR_WRONG_LAST_SEQUENCE, Ack, LinkError, Position, StreamLink
from ._source import DEFAULT_MAX_BYTES, TapSource, read_records

if TYPE_CHECKING:
    from .._log import Log
    from ._level import LevelHandle
    from ._settings import Settings

__all__ = ("ReplicationStatus", "Shipper")

logger = logging.getLogger("asyncwal.replication")

_RETRY_FIRST: Final = 0.05
_RETRY_MAX: Final = 1.0
#: The record layout's messages are limited by the server's max_payload alone.
_NO_LIMIT: Final = 1 << 62


@dataclass(frozen=True, slots=True)
class ReplicationStatus:
    """A snapshot of a shipper's state, from :meth:`Replicator.status`."""

    log_id: str
    stream: str
    subject: str
    layout: str
    connected: bool  #: the NATS connection is up
    running: bool  #: the shipper runs (False once stopped, or after a fatal error)
    shipped_seq: int  #: every seq up to this one is acknowledged by the stream
    durable_seq: int  #: the log's durable seq (what may be shipped)
    lag: int  #: records durable locally and not yet acknowledged by the stream
    in_flight: int  #: messages published and not yet answered
    messages: int  #: messages acknowledged since start
    records: int  #: records acknowledged since start
    bytes: int  #: message bodies acknowledged since start
    resyncs: int  #: times the position was read from the stream
    ack_p50: float  #: seconds from publishing a message to its acknowledgement (last 4096)
    ack_p99: float
    problem: str | None  #: the last error, while it lasts (None once shipping works again)
    fatal: str | None  #: why the shipper stopped for good, if it did


class _Refused(ReplicationError):
    """The stream refused a message, or stored it somewhere unexpected."""


class _InFlight:
    __slots__ = ("ack", "deadline", "first", "last", "msg_id", "nbytes", "sent", "stream_seq")

    def __init__(
        self, first: int, last: int, msg_id: str, stream_seq: int, sent: float, deadline: float, nbytes: int
    ) -> None:
        self.first = first
        self.last = last
        self.msg_id = msg_id
        self.stream_seq = stream_seq  # the stream sequence it must get
        self.sent = sent
        self.deadline = deadline
        self.nbytes = nbytes
        self.ack: Ack | None = None


class Shipper:
    """Ships one log to its stream until stopped. Create it, :meth:`start`, :meth:`stop`.

    The ``REPLICATED`` level is handed over with :meth:`attach` (the shipper may run before,
    it then only records how far the stream has got).

    :param source_bytes: the most bytes of durable records kept in memory for shipping
    """

    def __init__(
        self, log: Log, options: Settings, log_id: str, source_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self._log = log
        self._options = options
        self.log_id = log_id
        self._level: LevelHandle | None = None
        self._source_bytes = source_bytes
        self._source: TapSource | None = None
        self._loop = asyncio.get_running_loop()
        self._link = StreamLink(options, log_id, on_ack=self._on_ack)
        self._packed = options.layout == "packed"
        self._in_flight_max = options.in_flight

        self._pending: deque[_InFlight] = deque()
        self._by_token: dict[int, _InFlight] = {}
        self._token = 0
        self._chain_seq = 0  # stream sequence of the last message of this run (sent or stored)
        self._next_seq = 0  # the next log seq to publish in this run
        self._fences: list[int] = []  # packed: the stream sequence of each fence of this run
        self._sent = 0  # packed: messages sent in this run
        self._shipped = 0
        self._resynced = False
        self._broken: BaseException | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._wakeup: asyncio.Future[None] | None = None

        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stop_target = 0
        self._problem: str | None = None
        self._fatal: BaseException | None = None
        self._first_resync: asyncio.Future[None] = self._loop.create_future()

        self._n_messages = 0
        self._n_records = 0
        self._n_bytes = 0
        self._n_resyncs = 0
        self._ack_seconds: deque[float] = deque(maxlen=4096)

    # -- control ----------------------------------------------------------------------

    def start(self) -> None:
        """Start shipping (the record source taps the log from now on)."""
        self._source = TapSource(self._log, self._wake, self._source_bytes)
        self._task = self._loop.create_task(self._main(), name=f"asyncwal shipper {self.log_id}")

    def attach(self, level: LevelHandle) -> None:
        """Advance ``level`` from now on (it starts at :attr:`shipped_seq` or below)."""
        self._level = level
        self._advance(self._shipped)

    @property
    def shipped_seq(self) -> int:
        """Every seq up to this one is in the stream (as far as the shipper knows)."""
        return self._shipped

    def retain_from(self) -> int:
        """The lowest seq the log must keep: the first one not known to be in the stream
        (0 until the stream's position is known: keep everything)."""
        return self._shipped + 1 if self._resynced else 0

    async def started(self, within: float) -> None:
        """Wait until the first resync is done, at most ``within`` seconds.

        :raises StreamMismatchError, DivergedError: the stream is not this log's, or disagrees
            with it (the shipper has stopped)
        :raises LinkError: the cluster did not answer in time (the shipper keeps trying)
        """
        try:
            await asyncio.wait_for(asyncio.shield(self._first_resync), within)
        except TimeoutError:
            raise LinkError(f"the stream did not answer within {within} s ({self.explain()})") from None

    async def stop(self) -> None:
        """Ship what is durable now (at most ``drain_timeout`` seconds), then stop."""
        task = self._task
        if task is None:
            return
        if not self._stopping:
            self._stopping = True
            self._stop_target = self._log.durable_seq
            self._wake()
        try:
            await asyncio.wait_for(asyncio.shield(task), self._options.drain_timeout)
        except TimeoutError:
            task.cancel()
        except BaseException:
            pass
        try:
            await task
        except asyncio.CancelledError:
            pass
        finally:
            self._cancel_timer()
            if self._source is not None:
                await self._source.close()
            await self._link.close()

    def explain(self) -> str:
        """Why shipping is not keeping up, in a few words (for error messages)."""
        if self._fatal is not None:
            return f"replication stopped: {self._fatal}"
        if self._problem is not None:
            return f"last problem: {self._problem}"
        if self._stopping:
            return f"replication was stopped, shipped up to seq {self._shipped}"
        return f"shipped up to seq {self._shipped}"

    def status(self) -> ReplicationStatus:
        durable = self._log.durable_seq
        acks = sorted(self._ack_seconds)
        return ReplicationStatus(
            log_id=self.log_id,
            stream=self._link.stream,
            subject=self._link.subject,
            layout=self._options.layout,
            connected=self._link.connected,
            running=self._task is not None and not self._task.done(),
            shipped_seq=self._shipped,
            durable_seq=durable,
            lag=max(0, durable - self._shipped),
            in_flight=len(self._pending),
            messages=self._n_messages,
            records=self._n_records,
            bytes=self._n_bytes,
            resyncs=self._n_resyncs,
            ack_p50=acks[len(acks) // 2] if acks else 0.0,
            ack_p99=acks[min(len(acks) - 1, len(acks) * 99 // 100)] if acks else 0.0,
            problem=self._problem,
            fatal=None if self._fatal is None else str(self._fatal),
        )

    # -- the main loop ----------------------------------------------------------------

    async def _main(self) -> None:
        delay = _RETRY_FIRST
        while True:
            try:
                if not self._link.connected:
                    await self._link.close()
                    await self._link.connect()
                await self._resync()
                delay = _RETRY_FIRST
                if await self._pump():
                    return
            except (StreamMismatchError, DivergedError) as exc:
                self._die(exc)
                return
            except _Stop:
                return
            except (LinkError, _Refused) as exc:
                self._set_problem(exc)
            except (TruncatedError, CorruptLogError) as exc:
                self._die(
                    ReplicationError(
                        f"records the stream does not have yet cannot be read from the log ({exc}); "
                        "give the log a new stream"
                    )
                )
                return
            except (LogClosedError, LogFailedError, WrongProcessError):
                return  # the log is gone: nothing more can be shipped
            except Exception as exc:  # a bug: stop for good, and say why in every wait
                logger.exception("asyncwal replication of log %s: the shipper failed", self.log_id)
                self._die(ReplicationError(f"the shipper failed: {exc!r}"))
                return
            finally:
                if not self._first_resync.done() and self._fatal is not None:
                    self._first_resync.set_exception(self._fatal)
                    self._first_resync.exception()
            await self._settle()
            if self._stopping:
                return
            await self._sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, _RETRY_MAX)

    def _die(self, exc: BaseException) -> None:
        self._fatal = exc
        self._problem = str(exc)
        logger.error("asyncwal replication of log %s stopped: %s", self.log_id, exc)

    def _set_problem(self, exc: BaseException) -> None:
        text = str(exc)
        if text != self._problem:
            logger.warning("asyncwal replication of log %s: %s (retrying)", self.log_id, text)
        self._problem = text

    async def _resync(self) -> None:
        """Read the stream's position, check it against the log, and begin a new run there
        (writing its fences, in the packed layout)."""
        log = self._log
        self._n_resyncs += 1
        pos = await self._link.position(create_at=log.first_seq)
        await self._check_divergence(pos)
        if pos.log_last:
            shipped = pos.log_last
        else:
            shipped = log.first_seq - 1
            if not self._packed and pos.stream_last + 1 != log.first_seq:
                raise StreamMismatchError(
                    f"stream {self._link.stream} starts at sequence {pos.stream_last + 1} and the log at "
                    f"seq {log.first_seq}: in the record layout the two are equal; give the log a new stream"
                )
        if self._packed:
            k = self._in_flight_max
            first_fence = await self._link.write_fences(k, pos.stream_last, pos.log_last, pos.data_seq)
            self._fences = list(range(first_fence, first_fence + k))
            self._chain_seq = first_fence + k - 1
            self._sent = 0
        else:
            self._chain_seq = pos.stream_last
        self._shipped = shipped
        self._next_seq = shipped + 1
        self._resynced = True
        self._advance(shipped)
        if not self._first_resync.done():
            self._first_resync.set_result(None)

    async def _check_divergence(self, pos: Position) -> None:
        log = self._log
        if not pos.log_last:
            return
        local_last = log.last_seq
        if pos.log_last > local_last:
            raise DivergedError(
                f"the log is behind its stream {self._link.stream}: the stream holds seqs up to "
                f"{pos.log_last}, the log ends at {local_last}; restore it (asyncwal restore) before "
                "shipping again",
                local_seq=local_last,
                stream_seq=pos.log_last,
            )
        msg = await self._link.get(pos.data_seq)
        if msg is None:
            raise LinkError(f"stream message {pos.data_seq} vanished while being read")
        where = f"stream {self._link.stream} seq {pos.data_seq}"
        _, first, payloads = _wire.decode(self.log_id, msg.headers, msg.data or b"", where)
        start = max(first, log.first_seq)
        if start > pos.log_last:
            return  # removed locally by truncate_before after it was shipped: nothing to compare
        local = [rec.data async for rec in read_records(log, start, pos.log_last)]
        if local != payloads[start - first :]:
            raise DivergedError(
                f"the log and its stream {self._link.stream} hold different records in seqs "
                f"{start}..{pos.log_last}: the log was rewritten after those records were shipped",
                local_seq=local_last,
                stream_seq=pos.log_last,
            )

    def _advance(self, seq: int) -> None:
        level = self._level
        if level is None:
            return
        target = min(seq, self._log.durable_seq)
        if target > level.seq:
            level.advance(target)

    async def _pump(self) -> bool:
        """Publish records as they become durable, until an error (raised) or a stop.

        :return: True when done for good (stopped and drained)
        """
        source = self._source
        assert source is not None
        source.seek(self._next_seq)
        pending = self._pending
        most = self._in_flight_max
        packed = self._packed
        body_limit = min(self._options.max_message_bytes, self._link.max_payload - _wire.HEADER_OVERHEAD)
        while True:
            while self._broken is None and len(pending) < most:
                if packed:
                    run = source.take(_wire.MAX_RECORDS, body_limit)
                    if run is None and source.needs_read():
                        run = await source.read(_wire.MAX_RECORDS, body_limit)
                else:
                    run = source.take(most - len(pending), _NO_LIMIT)
                    if run is None and source.needs_read():
                        run = await source.read(most - len(pending), _NO_LIMIT)
                if run is None:
                    break
                await self._send_run(run[0], run[1])
            if self._broken is not None:
                exc, self._broken = self._broken, None
                raise exc
            if not pending and self._stopping and self._shipped >= self._stop_target:
                return True
            await self._wait()

    async def _send_run(self, first: int, payloads: list[bytes]) -> None:
        """Publish records ``first..``: one message (packed), or one per record."""
        if first != self._next_seq:
            raise AssertionError(f"the source gave seq {first}, the shipper needs {self._next_seq}")
        self._next_seq = first + len(payloads)
        if self._packed:
            await self._publish(_wire.encode(self.log_id, first, payloads, "packed"))
            return
        for i, payload in enumerate(payloads):
            await self._publish(_wire.encode(self.log_id, first + i, [payload], "record"))

    async def _publish(self, msg: _wire.Outgoing) -> None:
        if len(msg.body) > self._link.max_payload - _wire.HEADER_OVERHEAD:
            self._die(
                ReplicationError(
                    f"record {msg.first} ({len(msg.body)} bytes) is larger than the NATS server's "
                    f"max_payload ({self._link.max_payload}): it cannot be replicated"
                )
            )
            raise _Stop
        after = self._chain_seq
        if self._packed:
            j = self._sent % len(self._fences)
            self._sent += 1
            order = _wire.order_headers(after, (_wire.fence_subject(self._link.subject, j), self._fences[j]))
        else:
            order = _wire.order_headers(after)
        self._token += 1
        token = self._token
        now = self._loop.time()
        flight = _InFlight(
            msg.first,
            msg.last,
            msg.msg_id,
            after + 1,
            time.monotonic(),
            now + self._options.request_timeout,
            len(msg.body),
        )
        self._pending.append(flight)
        self._by_token[token] = flight
        self._chain_seq = after + 1
        if self._timer is None:
            self._timer = self._loop.call_at(self._pending[0].deadline, self._on_deadline)
        await self._link.publish(token, msg, order)

    # -- acknowledgements -------------------------------------------------------------

    def _on_ack(self, token: int, ack: Ack) -> None:
        flight = self._by_token.pop(token, None)
        if flight is None:
            return  # answer to a message dropped by a settle: the next resync reads the truth
        flight.ack = ack
        if ack.error is None:
            # (time.monotonic: uvloop's loop.time() counts whole milliseconds)
            self._ack_seconds.append(time.monotonic() - flight.sent)
        pending = self._pending
        progressed = False
        while pending and pending[0].ack is not None:
            head = pending[0]
            a = head.ack
            assert a is not None
            if a.error is not None:
                if self._broken is None:
                    self._broken = _Refused(self._describe_refusal(head, a))
                break
            if a.seq != head.stream_seq or (a.stream and a.stream != self._link.stream):
                if self._broken is None:
                    self._broken = _Refused(
                        f"message {head.msg_id} was stored at {a.stream} seq {a.seq}, expected "
                        f"{self._link.stream} seq {head.stream_seq}"
                    )
                break
            pending.popleft()
            self._shipped = head.last
            self._n_messages += 1
            self._n_records += head.last - head.first + 1
            self._n_bytes += head.nbytes
            progressed = True
        if progressed:
            self._problem = None
            self._advance(self._shipped)
            self._rearm()
        self._wake()

    def _describe_refusal(self, head: _InFlight, ack: Ack) -> str:
        if ack.err_code == ERR_WRONG_LAST_SEQUENCE:
            return f"message {head.msg_id} does not follow the stream's last message ({ack.error})"
        return f"the stream refused message {head.msg_id}: {ack.error}"

    def _on_deadline(self) -> None:
        self._timer = None
        pending = self._pending
        if not pending:
            return
        head = pending[0]
        if head.ack is None and self._loop.time() >= head.deadline:
            if self._broken is None:
                self._broken = LinkError(
                    f"no acknowledgement for message {head.msg_id} within {self._options.request_timeout} s"
                )
            self._wake()
            return
        self._rearm()

    def _rearm(self) -> None:
        self._cancel_timer()
        if self._pending:
            self._timer = self._loop.call_at(self._pending[0].deadline, self._on_deadline)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _settle(self) -> None:
        """Wait until every message in flight is answered or past its deadline; drop them."""
        if self._pending:
            end = max(p.deadline for p in self._pending)
            while any(p.ack is None for p in self._pending):
                left = end - self._loop.time()
                if left <= 0:
                    break
                await self._wait(left)
        self._pending.clear()
        self._by_token.clear()
        self._broken = None
        self._cancel_timer()

    # -- waking -----------------------------------------------------------------------

    def _wake(self) -> None:
        w = self._wakeup
        if w is not None:
            self._wakeup = None
            if not w.done():
                w.set_result(None)

    async def _wait(self, seconds: float | None = None) -> None:
        self._wakeup = fut = self._loop.create_future()
        if seconds is None:
            await fut
            return
        handle = self._loop.call_later(seconds, self._wake)
        try:
            await fut
        finally:
            handle.cancel()

    async def _sleep(self, seconds: float) -> None:
        """Sleep before a retry; a stop cuts it short."""
        end = self._loop.time() + seconds
        while not self._stopping and self._loop.time() < end:
            await self._wait(end - self._loop.time())


class _Stop(Exception):
    """Internal: leave the pump after _die()."""
