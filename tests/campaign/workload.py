"""The in-process workload of the power-loss and fault campaigns, and its record of what was
acknowledged when.

A seeded run of appends at every level, batches, checkpoints, syncs, ``wait_for``,
``truncate_before``, rotation, close and reopen in every sync mode, on any FileOps. Every
acknowledgement is stamped with the crash point (number of recorded file operations) at
which it was seen, so that a crash after any point has a known set of promises to keep.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any

import asyncwal
from asyncwal import Durability, LogFailedError

from . import LOG_DIR, MODES
from .checker import Expectations, Violation

if TYPE_CHECKING:
    from collections.abc import Callable

    from asyncwal._fileops import FileOps

__all__ = (
    "Recorder",
    "failure_watch",
    "run_workload",
)


class Recorder:
    """A run's history, each acknowledgement stamped with the crash point it was seen at.

    ``point()`` is the number of file operations recorded so far. An acknowledgement seen at
    point ``p`` binds every crash after ``p`` operations or more: the fsync behind it came
    before ``p`` (observing it late only makes the check weaker, never wrong).
    """

    def __init__(self, point: Callable[[], int]) -> None:
        self.point = point
        self.data: dict[int, bytes] = {}
        self.disk: list[tuple[int, int]] = []  # (point, seq acknowledged at DISK)
        self.os: list[tuple[int, int]] = []  # (point, seq acknowledged at OS)
        self.batches: list[tuple[int, int]] = []
        self.truncations: list[tuple[int, int]] = []  # (point of the request, seq)
        self.checkpoints: list[tuple[int, bytes, int]] = []  # (point of the request, data, seq)
        self.cp_acks: list[tuple[int, int]] = []  # (point, index)
        self.failures = 0  # futures that raised LogFailedError
        self.open_error: BaseException | None = None

    def ack(self, level: Durability, seq: int) -> None:
        if seq <= 0:
            return
        p = self.point()
        if level >= Durability.OS:
            self.os.append((p, seq))
        if level >= Durability.DISK:
            self.disk.append((p, seq))

    def expectations(self, at: int, level: Durability) -> Expectations:
        """What a crash after ``at`` operations must keep, for acknowledgements at ``level``."""
        acks = self.disk if level is Durability.DISK else self.os
        required = max((s for p, s in acks if p <= at), default=0)
        truncated = max((s for p, s in self.truncations if p <= at), default=0)
        cp_acked = max((i for p, i in self.cp_acks if p <= at), default=-1)
        data = self.data

        def payload(seq: int, got: bytes) -> str | None:
            want = data.get(seq)
            if want is None:
                return "was never appended"
            if got != want:
                return f"holds {len(got)} bytes that differ from the {len(want)} appended"
            return None

        return Expectations(
            required=required,
            truncated=truncated,
            payload=payload,
            batches=self.batches,
            checkpoints=[(d, s) for _, d, s in self.checkpoints],
            checkpoint_acked=cp_acked,
        )


def _payload(rng: random.Random) -> bytes:
    r = rng.random()
    n = rng.randint(0, 64) if r < 0.6 else rng.randint(65, 700) if r < 0.93 else rng.randint(1500, 5000)
    return rng.randbytes(n)


async def run_workload(
    ops: FileOps,
    rec: Recorder,
    seed: int,
    steps: int,
    *,
    mode: str | None = None,
    tolerate_failure: bool = False,
) -> asyncwal.Log | None:
    """Drive a seeded workload on a log at LOG_DIR; return the last log, closed unless it failed.

    Deterministic for a given seed and FileOps: every step issues its calls without an
    ``await`` in between and then waits for all of them, and batch mode's timer is set far
    beyond the run, so the engine's groups do not depend on thread timing.

    :param mode: the sync mode of the first open (later reopens pick one at random); random if None
    :param tolerate_failure: a LogFailedError ends the run (fault campaigns) instead of
        propagating; so does an error from reopening the log, and then None is returned
        (the error is kept in ``rec.open_error``)
    """
    rng = random.Random(seed)
    segment_size = rng.choice((4096, 6000, 16384))
    preallocate = rng.random() < 0.7
    batch_size = rng.randint(1, 6)

    async def open_log(mode: str) -> asyncwal.Log:
        try:
            return await open_new(mode)
        except (OSError, asyncwal.WALError) as exc:
            if not tolerate_failure:
                raise
            rec.open_error = exc
            raise _OpenFailed from exc

    async def open_new(mode: str) -> asyncwal.Log:
        log: asyncwal.Log = await asyncwal.open(
            LOG_DIR,
            file_ops=ops,
            sync_mode=mode,
            segment_size=segment_size,
            preallocate=preallocate,
            batch_size=batch_size,
            batch_interval=3600.0,
            max_record_size=8192,
        )
        return log

    try:
        first_mode = rng.choice(MODES)
        log = await open_log(mode or first_mode)
    except _OpenFailed:
        return None
    watcher = _watch_failure(log) if tolerate_failure else None
    try:
        for _ in range(steps):
            await _step(log, rec, rng, watcher)
            rec.ack(Durability.DISK, log.durable_seq)
            rec.ack(Durability.OS, log.written_seq)
            if rng.random() < 0.04:
                await log.close()
                log = await open_log(rng.choice(MODES))
                if watcher is not None:
                    watcher = _watch_failure(log)
        await log.close()
        rec.ack(Durability.DISK, log.durable_seq)
    except LogFailedError:
        if not tolerate_failure:
            raise
    except _OpenFailed:
        return None
    finally:
        if watcher is not None and not watcher.done():
            watcher.cancel()
    return log


class _OpenFailed(Exception):
    """Reopening the log failed in a fault campaign (``Recorder.open_error`` says why)."""


async def failure_watch(log: asyncwal.Log) -> None:
    """Raise LogFailedError as soon as ``log`` fails; return when it is closed.

    A follower from a seq that will never exist only waits for the writer's progress
    events, and the failed state wakes it: a failure notice through the public API.
    """
    async for _ in log.follow(start=1 << 62):
        pass


def _watch_failure(log: asyncwal.Log) -> asyncio.Task[None]:
    task = asyncio.ensure_future(failure_watch(log))
    # Its LogFailedError is a notice, not an error to report when the task is collected.
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task


async def _step(
    log: asyncwal.Log, rec: Recorder, rng: random.Random, watcher: asyncio.Task[None] | None = None
) -> None:
    """Issue a few calls at once (no await in between), then wait for all of them.

    :param watcher: a :func:`failure_watch` task: when the log fails, every call of the step
        must complete (with LogFailedError) within a few loop iterations, or the step raises
        Violation: a caller left hanging. Without it, the step waits for its calls forever.
    :raises LogFailedError: the log failed
    """
    calls: list[asyncio.Future[Any]] = []
    default = log.options.default_durability

    def watch(fut: asyncio.Future[Any], level: Durability, seq: int | None) -> None:
        """Acknowledge ``seq`` (the result, if None) at ``level`` when ``fut`` succeeds."""

        def done(f: asyncio.Future[Any]) -> None:
            if f.cancelled():
                return
            exc = f.exception()
            if exc is None:
                rec.ack(level, int(f.result()) if seq is None else seq)
            elif isinstance(exc, LogFailedError):
                rec.failures += 1

        fut.add_done_callback(done)
        calls.append(fut)

    r = rng.random()
    if r < 0.6:
        for _ in range(rng.randint(1, 6)):
            data = _payload(rng)
            level = rng.choice((None, None, None, Durability.MEMORY, Durability.OS, Durability.DISK))
            fut = log.append(data, level)
            rec.data[log.last_seq] = data
            effective = default if level is None else level
            watch(fut, effective, log.last_seq)
            if rng.random() < 0.15:
                batch = [_payload(rng) for _ in range(rng.randint(1, 5))]
                bfut = log.append_batch(batch)
                last = log.last_seq
                first = last - len(batch) + 1
                rec.batches.append((first, last))
                rec.data.update(zip(range(first, last + 1), batch, strict=True))
                watch(bfut, Durability.DISK, last)
    elif r < 0.7:
        data = b"cp%d" % len(rec.checkpoints)
        rec.checkpoints.append((rec.point(), data, log.last_seq))
        index = len(rec.checkpoints) - 1
        task = asyncio.ensure_future(log.checkpoint(data))

        def cp_done(f: asyncio.Future[asyncwal.Checkpoint]) -> None:
            if not f.cancelled() and f.exception() is None:
                rec.cp_acks.append((rec.point(), index))

        task.add_done_callback(cp_done)
        watch(task, Durability.DISK, log.last_seq)
    elif r < 0.78:
        watch(asyncio.ensure_future(log.sync()), Durability.DISK, None)
    elif r < 0.86 and log.last_seq > 0:
        seq = rng.randint(max(1, log.first_seq), log.last_seq)
        level = rng.choice((Durability.OS, Durability.DISK))
        watch(asyncio.ensure_future(log.wait_for(seq, level)), level, seq)
    elif r < 0.95:
        seq = rng.randint(log.first_seq, log.last_seq + 1)
        rec.truncations.append((rec.point(), seq))
        calls.append(asyncio.ensure_future(log.truncate_before(seq)))
    else:
        # A burst: many records in one group, more than a segment holds.
        for _ in range(rng.randint(8, 30)):
            data = _payload(rng)
            fut = log.append(data)
            rec.data[log.last_seq] = data
            watch(fut, default, log.last_seq)
    if log.last_seq > log.written_seq:
        # Records acknowledged at MEMORY do not wait for the writer: wait for them to reach
        # the OS, so that the writer is idle when the next step starts and its groups (hence
        # the file operations, hence the crash points) do not depend on thread timing.
        seq = log.last_seq
        watch(asyncio.ensure_future(log.wait_for(seq, Durability.OS)), Durability.OS, seq)
    if not calls:
        return
    if watcher is not None:
        pending: set[asyncio.Future[Any]] = set(calls)
        while pending and not watcher.done():
            _, pending = await asyncio.wait(pending | {watcher}, return_when=asyncio.FIRST_COMPLETED)
            pending.discard(watcher)
        if pending:
            # The log failed (or closed): _fail() resolves every waiter at once, so a few loop
            # iterations let that reach each caller's task. Counting iterations, not time.
            for _ in range(20):
                await asyncio.sleep(0)
            hung = [f for f in pending if not f.done()]
            if hung:
                what = repr(hung[0])
                for f in hung:
                    f.cancel()
                raise Violation(f"{len(hung)} calls never completed after the log failed: {what}")
    results = await asyncio.gather(*calls, return_exceptions=True)
    for res in results:
        if isinstance(res, BaseException):
            raise res
