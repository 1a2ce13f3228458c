"""Crash and fault campaigns: the evidence behind docs/durability.md (issue 3).

``python -m bench.crash_campaign`` runs the long versions of four campaigns and prints the
figures for the "Evidence" section; ``tests/test_powerloss.py``, ``test_crash_process.py``,
``test_faults_matrix.py`` and ``test_corrupt_input.py`` run short versions of the same code in
the default suite.

power loss
    A seeded workload (appends at every level, batches, checkpoints, syncs, ``wait_for``,
    ``truncate_before``, rotation, close and reopen in every sync mode) runs on a
    :class:`~asyncwal.testing.PowerLossFileOps`. For every crash point (after each recorded
    file operation) the worst-case image (only synced data under only synced names) and
    ``samples`` random images are reopened with the real engine and checked
    (:func:`check_reopened`); for one image in 16, the recovery of that image (and an append
    after it) is itself crashed at every point and checked again. Deterministic: a failure
    names the seed, the crash point and the sample, and prints the command that replays it
    (``python -m bench.crash_campaign powerloss --seed S --at A --sample K``). A deliberately
    broken disk (``--broken sync-does-nothing`` or ``sync-dir-does-nothing``) is caught.
process kill
    A child process runs a workload on real files with real fsyncs and reports every
    acknowledgement on its stdout; the parent SIGKILLs it after a random number of reports,
    reopens the log and checks it, and starts the next child on the same directory. One kill
    in three waits for a ``truncate_before`` request; segments are small, so kills also land
    during rotation.
faults
    ``EIO``/``ENOSPC``/short writes injected through :class:`~asyncwal.testing.FaultyFileOps`
    (over a PowerLossFileOps) at a random call; checks the failed-state rules, reopens the
    worst-case power-cut image after every acknowledgement at ``DISK`` (all of them must be
    there) and the live files (everything acknowledged at ``OS`` must be there).
corrupt input
    A valid log is damaged (bit flips, cuts, duplicated or moved ranges, garbage, huge length
    fields, swapped or copied segment files) and opened in each recovery mode: it must recover
    or raise ``CorruptLogError`` naming the file and an offset in it; a recovered log replays
    a prefix of the original records holding everything before the first damaged byte; and
    opening allocates no more than a few times the files' size (tracemalloc, some trials).

Every command takes ``--seed`` and ``--trials``; ``-v`` shows asyncwal's own log messages.

The invariants checked after every reopen (the contract of docs/durability.md):

* the log reopens under the default recovery;
* seqs are dense from ``first_seq`` to ``last_seq`` and every record has exactly the bytes
  appended under its seq (nothing that was never appended appears);
* every record acknowledged at the campaign's level (``DISK`` for a power cut, ``OS`` for a
  process crash) and not below an issued ``truncate_before`` is present;
* every batch is all or nothing;
* the newest acknowledged checkpoint (or a newer one) is ``last_checkpoint``, with its seq;
* for some images, the recovered log also takes a new record that survives another reopen.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import functools
import hashlib
import itertools
import json
import logging
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
from typing import TYPE_CHECKING, Any

import asyncwal
from asyncwal import Durability, LogFailedError
from asyncwal._format import META_NAME, SEGMENT_HEADER_SIZE, parse_segment_name, scan_frame, segment_name
from asyncwal._reader import READ_CHUNK
from asyncwal.testing import FaultyFileOps, MemoryFileOps, PowerLossFileOps

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from asyncwal._fileops import FileOps

__all__ = (
    "LOG_DIR",
    "CampaignFailure",
    "CorruptOutcome",
    "OriginalLog",
    "Expectations",
    "Stats",
    "Violation",
    "apply_mutation",
    "build_log",
    "check_damage",
    "campaign_trials",
    "check_after_kill",
    "check_reopened",
    "failure_watch",
    "SyncSwallowsErrors",
    "corrupt_trial",
    "fault_trial",
    "kill_trial",
    "powerloss_trial",
)

#: Where the in-memory campaigns put their log.
LOG_DIR = "/crash/wal"
MODES = ("sync", "batch", "none")
_LEVELS = (Durability.MEMORY, Durability.OS, Durability.DISK)


class Violation(AssertionError):
    """A reopened log broke an invariant of the durability contract."""


class CampaignFailure(AssertionError):
    """A campaign found a violation; the message says how to replay it."""


@dataclasses.dataclass
class Stats:
    """Figures of a campaign, added up over trials."""

    trials: int = 0
    crash_points: int = 0
    second_crash_points: int = 0  # crash points during the recovery of a crashed image
    states_checked: int = 0  # distinct (crash point, image) pairs reopened and checked
    kills: int = 0
    faults_fired: int = 0
    acked_checked: int = 0  # acknowledged records that a check required (and found)
    acked_lost: int = 0  # always 0 unless a check failed (the campaign then raises)
    corrupt_cases: int = 0
    corrupt_recovered: int = 0
    corrupt_rejected: int = 0

    def add(self, other: Stats) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


# -- what a reopened log must show -------------------------------------------------------------


@dataclasses.dataclass
class Expectations:
    """The acknowledgements that bind a reopened log.

    :ivar required: every seq in ``[max(truncated, 1), required]`` must be present
    :ivar truncated: the highest seq given to ``truncate_before`` (records below may be gone)
    :ivar payload: checks one record; returns what is wrong with it, or None
    :ivar batches: ``(first, last)`` seqs of every batch appended (acknowledged or not)
    :ivar checkpoints: every checkpoint requested, in order: ``(data, seq it covers)``
    :ivar checkpoint_acked: index in ``checkpoints`` of the newest acknowledged one, or -1
    """

    required: int
    truncated: int
    payload: Callable[[int, bytes], str | None]
    batches: Sequence[tuple[int, int]] = ()
    checkpoints: Sequence[tuple[bytes, int]] = ()
    checkpoint_acked: int = -1


async def check_reopened(
    ops: FileOps | None, path: str, expect: Expectations, *, append_after: bool = False
) -> int:
    """Reopen the log at ``path`` with the default options and check it against ``expect``.

    :param append_after: also append a record, reopen again and check it is there, after
        every record recovered the first time
    :raises Violation: an invariant does not hold (opening failing is one)
    :return: how many acknowledged records the check required
    """
    try:
        log = await asyncwal.open(path, file_ops=ops)
    except Exception as exc:
        raise Violation(f"the log does not reopen under the default recovery: {exc!r}") from exc
    try:
        records = [(r.seq, r.data) async for r in log.replay()]
        first, last = log.first_seq, log.last_seq
        cp = log.last_checkpoint
        _check_records(records, first, last, expect)
        _check_checkpoint(cp, last, expect)
        post = None
        if append_after:
            post = (await log.append(b"after the crash"), b"after the crash")
    finally:
        await log.close()
    if post is not None:
        async with asyncwal.open(path, file_ops=ops) as again:
            replayed = [(r.seq, r.data) async for r in again.replay()]
        if replayed != [*records, post]:
            raise Violation(
                f"a record appended after recovery did not survive a reopen cleanly: "
                f"{len(records)} records + {post[0]} expected, replay gave {len(replayed)} "
                f"ending at {replayed[-1][0] if replayed else None}"
            )
    low = max(expect.truncated, 1)
    return max(0, expect.required - low + 1)


def _check_records(records: list[tuple[int, bytes]], first: int, last: int, expect: Expectations) -> None:
    seqs = [s for s, _ in records]
    if seqs != list(range(first, last + 1)):
        gaps = [(a, b) for a, b in itertools.pairwise(seqs) if b != a + 1]
        raise Violation(
            f"seqs are not dense: first_seq={first} last_seq={last}, replay gave {len(seqs)} records"
            f"{f' with gaps {gaps[:3]}' if gaps else ''}"
        )
    for seq, data in records:
        problem = expect.payload(seq, data)
        if problem is not None:
            raise Violation(f"record {seq}: {problem}")
    low = max(expect.truncated, 1)
    if expect.required >= low and not (first <= low and last >= expect.required):
        lost = [s for s in range(low, expect.required + 1) if not first <= s <= last]
        raise Violation(
            f"{len(lost)} acknowledged records lost: seqs {lost[:5]}{'...' if len(lost) > 5 else ''} "
            f"(acknowledged up to {expect.required}, log holds {first}..{last})"
        )
    for b0, b1 in expect.batches:
        if first <= b0 <= last < b1:
            raise Violation(f"batch {b0}..{b1} is torn: the log ends at {last}")
        if b0 < first <= b1:
            raise Violation(f"batch {b0}..{b1} is torn: the log starts at {first}")


def _check_checkpoint(cp: asyncwal.Checkpoint | None, last: int, expect: Expectations) -> None:
    if cp is None:
        if expect.checkpoint_acked >= 0:
            raise Violation(f"acknowledged checkpoint #{expect.checkpoint_acked} is missing")
        return
    matches = [i for i, (data, _) in enumerate(expect.checkpoints) if data == cp.data]
    if not matches:
        raise Violation(f"checkpoint {cp!r} was never requested")
    index = matches[0]
    if index < expect.checkpoint_acked:
        raise Violation(f"checkpoint #{index} found, but #{expect.checkpoint_acked} was acknowledged")
    if cp.seq != expect.checkpoints[index][1]:
        raise Violation(
            f"checkpoint #{index} covers seq {cp.seq}, requested at {expect.checkpoints[index][1]}"
        )
    if cp.seq > last:
        raise Violation(f"checkpoint covers seq {cp.seq} but the log ends at {last}")


def campaign_trials(markexpr: str, default: int) -> int | None:
    """Trials for a long campaign test, or None if the long campaigns are not enabled.

    Enabled by ``pytest -m campaign`` (a marker expression naming ``campaign`` without
    ``not``) or by the environment variable ``ASYNCWAL_CAMPAIGN_TRIALS`` (the number of
    trials; it also enables them).
    """
    env = os.environ.get("ASYNCWAL_CAMPAIGN_TRIALS")
    if env:
        return int(env)
    if "campaign" in markexpr and "not campaign" not in markexpr:
        return default
    return None


# -- the in-process workload (power loss and faults) -----------------------------------------


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


# -- power loss ----------------------------------------------------------------------------------


class SyncDoesNothing(FaultyFileOps):
    """A broken disk for the checker's own test: ``sync()`` returns without syncing."""

    def sync(self, fd: int) -> None:
        self.calls["sync"] += 1


class SyncSwallowsErrors(FaultyFileOps):
    """A broken disk for the checker's own test: a failed ``sync()`` reports success (the
    data was not synced), so the engine acknowledges at DISK past a failed fsync."""

    def sync(self, fd: int) -> None:
        try:
            super().sync(fd)
        except OSError:
            pass


class SyncDirDoesNothing(FaultyFileOps):
    """A broken disk for the checker's own test: ``sync_dir()`` returns without syncing."""

    def sync_dir(self, path: str) -> None:
        self.calls["sync_dir"] += 1


BROKEN: dict[str, Callable[[FileOps], FileOps]] = {
    "sync-does-nothing": SyncDoesNothing,
    "sync-dir-does-nothing": SyncDirDoesNothing,
}


def _image_key(image: Mapping[str, bytes]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for path in sorted(image):
        h.update(path.encode() + b"\0" + struct.pack("<Q", len(image[path])) + image[path])
    return h.digest()


async def powerloss_trial(
    seed: int,
    *,
    steps: int = 40,
    samples: int = 3,
    mode: str | None = None,
    broken: str | None = None,
    points: Sequence[int] | None = None,
    only_sample: str | None = None,
) -> Stats:
    """Record one seeded run on a PowerLossFileOps and check every crash point.

    :param samples: random images per crash point, besides the worst-case one
    :param mode: the sync mode the run starts in (it changes at random reopens)
    :param broken: a key of :data:`BROKEN`: run on a deliberately broken FileOps
    :param points: check only these crash points (replaying a failure)
    :param only_sample: check only this sample (``"durable"`` or a number)
    :raises CampaignFailure: an image broke an invariant; the message says how to replay it
    """
    plops = PowerLossFileOps()
    ops: FileOps = plops if broken is None else BROKEN[broken](plops)
    rec = Recorder(plops.crash_points)
    await run_workload(ops, rec, seed, steps, mode=mode)
    stats = Stats(trials=1, crash_points=plops.crash_points() + 1)
    for at, state in plops.states(points):
        images: list[tuple[str, dict[str, bytes]]] = [("durable", state.durable())]
        if state.unsynced():
            images += [(str(k), state.sample(random.Random(f"{seed}/{at}/{k}"))) for k in range(samples)]
        seen: set[bytes] = set()
        expect = rec.expectations(at, Durability.DISK)
        for label, image in images:
            if only_sample is not None and label != only_sample:
                continue
            key = _image_key(image)
            if key in seen:
                continue
            seen.add(key)
            fs = MemoryFileOps.from_image(image)
            fs.makedirs(LOG_DIR)
            try:
                # Also append after recovery for one image in 8 (chosen per image, so a
                # replay of one crash point does the same).
                post = random.Random(f"{seed}/{at}/{label}/post").random() < 0.125
                stats.acked_checked += await check_reopened(fs, LOG_DIR, expect, append_after=post)
                # And for one image in 16, crash again during its recovery (and the first
                # append after it), at every point.
                if random.Random(f"{seed}/{at}/{label}/double").random() < 1 / 16:
                    stats.add(await _crash_during_recovery(image, expect, f"{seed}/{at}/{label}"))
            except Violation as exc:
                raise CampaignFailure(
                    f"power loss: seed={seed} crash point {at} of {plops.crash_points()} "
                    f"({plops.describe(at)}), sample {label}"
                    f"{f', broken={broken}' if broken else ''}: {exc}\n"
                    f"replay: python -m bench.crash_campaign powerloss --seed {seed} --steps {steps} "
                    f"--at {at} --sample {label}{f' --mode {mode}' if mode else ''}"
                    f"{f' --broken {broken}' if broken else ''}"
                ) from exc
            stats.states_checked += 1
    return stats


_AFTER_RECOVERY = b"appended after recovery"


async def _crash_during_recovery(image: Mapping[str, bytes], expect: Expectations, tag: str) -> Stats:
    """Reopen ``image`` on a PowerLossFileOps, append one record at DISK, close; then check
    the worst case and one random image of every crash point of that (recovery included)."""
    plops = PowerLossFileOps(image)
    plops.makedirs(LOG_DIR)
    async with asyncwal.open(LOG_DIR, file_ops=plops) as log:
        post_seq = await log.append(_AFTER_RECOVERY, Durability.DISK)
        acked_at = plops.crash_points()
    stats = Stats(second_crash_points=plops.crash_points() + 1)

    def payload(seq: int, data: bytes) -> str | None:
        if seq == post_seq and data == _AFTER_RECOVERY:
            return None
        return expect.payload(seq, data)

    for at, state in plops.states():
        required = max(expect.required, post_seq if at >= acked_at else 0)
        # Seqs from post_seq on were given again after recovery: earlier, unrecovered batches
        # that used them say nothing any more.
        batches = [b for b in expect.batches if b[1] < post_seq]
        again = dataclasses.replace(expect, required=required, payload=payload, batches=batches)
        seen: set[bytes] = set()
        for label, image2 in (
            ("durable", state.durable()),
            ("0", state.sample(random.Random(f"{tag}/{at}"))),
        ):
            key = _image_key(image2)
            if key in seen:
                continue
            seen.add(key)
            fs = MemoryFileOps.from_image(image2)
            fs.makedirs(LOG_DIR)
            try:
                stats.acked_checked += await check_reopened(fs, LOG_DIR, again)
            except Violation as exc:
                raise Violation(
                    f"after a second crash, during recovery, at point {at} ({plops.describe(at)}), "
                    f"sample {label}: {exc}"
                ) from exc
            stats.states_checked += 1
    return stats


# -- faults --------------------------------------------------------------------------------------

#: name -> (operation, errno, extra inject() arguments, upper bound of ``after``)
FAULTS: dict[str, tuple[str, int | None, dict[str, Any], int]] = {
    "EIO on write": ("pwrite", errno.EIO, {}, 60),
    "ENOSPC on write": ("pwrite", errno.ENOSPC, {}, 60),
    "short write then ENOSPC": ("pwrite", errno.ENOSPC, {"short": 7, "times": 2}, 60),
    "short write then success": ("pwrite", None, {"short": 5}, 60),
    "EIO on fsync": ("sync", errno.EIO, {}, 30),
    "EIO on directory fsync": ("sync_dir", errno.EIO, {}, 6),
    "ENOSPC on segment creation": ("open", errno.ENOSPC, {"path_contains": ".wal.tmp"}, 4),
    "EIO on rename": ("rename", errno.EIO, {}, 5),
    "EIO on unlink": ("unlink", errno.EIO, {}, 4),
}


async def fault_trial(
    seed: int, fault: str, *, steps: int = 30, ops_class: type[FaultyFileOps] = FaultyFileOps
) -> Stats:
    """Run the workload with one fault injected at a random call and check the failed state.

    Checks: every call either succeeds or raises LogFailedError (no other error, nothing
    hangs: the run is bounded by a hang detector); once failed, every later call raises
    LogFailedError; a failed fsync is never retried; close() releases the lock; reopening the
    live files keeps everything acknowledged at OS; reopening the worst-case power-cut image
    keeps everything acknowledged at DISK (so nothing was acknowledged at DISK past a failed
    fsync).

    :param ops_class: the fault injector (a broken one, for the checker's own tests)
    :raises CampaignFailure: a rule was broken
    """
    op, error, extra, bound = FAULTS[fault]
    rng = random.Random(f"{seed}/{fault}")
    plops = PowerLossFileOps()
    faulty = ops_class(plops)
    injected = faulty.inject(op, error, after=rng.randint(0, bound), **extra)
    rec = Recorder(plops.crash_points)
    where = f"faults: seed={seed} fault={fault!r} (after={injected.after})"
    try:
        async with asyncio.timeout(60):  # a hang detector, not a timing assertion
            log = await run_workload(faulty, rec, seed, steps, tolerate_failure=True)
            stats = Stats(trials=1, faults_fired=injected.fired)
            # A power cut right after any acknowledgement at DISK, and at the end, keeps
            # everything acknowledged at DISK so far: nothing was acknowledged past a failed
            # fsync. (Right after an acknowledgement is where a false one shows: a later
            # successful fsync would cover it.)
            points = sorted({p for p, _ in rec.disk} | {plops.crash_points()})
            seen: set[bytes] = set()
            for at, state in plops.states(points):
                image = state.durable()
                key = _image_key(image)
                if key in seen:
                    continue
                seen.add(key)
                fs = MemoryFileOps.from_image(image)
                fs.makedirs(LOG_DIR)
                try:
                    stats.acked_checked += await check_reopened(
                        fs, LOG_DIR, rec.expectations(at, Durability.DISK)
                    )
                except Violation as exc:
                    raise Violation(f"power cut at point {at} ({plops.describe(at)}): {exc}") from exc
                stats.states_checked += 1
            expected_failure = injected.fired > 0 and error is not None
            if log is None:
                # The fault hit asyncwal.open(): it raised, and must not have kept the lock.
                if not expected_failure:
                    raise Violation(f"asyncwal.open() failed without a fault: {rec.open_error!r}")
            elif log.failed != expected_failure:
                raise Violation(f"log.failed is {log.failed} after the fault fired {injected.fired} times")
            elif log.failed:
                await _check_failed_state(log)
                syncs_after = injected.seen - injected.after - injected.fired
                if op == "sync" and syncs_after:
                    raise Violation(f"fsync was called {syncs_after} times after it failed")
                if not log.closed:
                    await log.close()  # must not raise on a failed log, and must release the lock
            if log is not None and not log.closed:
                raise Violation("the workload ended with the log open")
            faulty.clear()
            # The process lives on: what reached the OS is in the live files.
            stats.acked_checked += await check_reopened(
                faulty, LOG_DIR, rec.expectations(plops.crash_points(), Durability.OS)
            )
    except (Violation, TimeoutError) as exc:
        raise CampaignFailure(
            f"{where}: {exc!r}\nreplay: python -m bench.crash_campaign faults --seed {seed} --fault {fault!r}"
        ) from exc
    except Exception as exc:
        raise CampaignFailure(f"{where}: unexpected {exc!r}") from exc
    return stats


async def _check_failed_state(log: asyncwal.Log) -> None:
    probes: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("append", functools.partial(log.append, b"x")),
        ("append_batch", functools.partial(log.append_batch, [b"x"])),
        ("sync", log.sync),
        ("checkpoint", log.checkpoint),
        ("truncate_before", functools.partial(log.truncate_before, 1)),
        ("wait_for", functools.partial(log.wait_for, 0)),
    ]
    for name, probe in probes:
        try:
            await probe()
        except LogFailedError:
            continue
        except Exception as exc:
            raise Violation(f"{name}() on a failed log raised {exc!r}, not LogFailedError") from exc
        raise Violation(f"{name}() on a failed log succeeded")


# -- process kills -------------------------------------------------------------------------------

_HEADER = struct.Struct("<QQHH")  # id, batch id (0: none), batch size, index in batch


def kill_payload(seed: int, ident: int, batch: int = 0, size: int = 1, index: int = 0) -> bytes:
    """A self-describing record: a reader can tell it was written by this campaign, unchanged."""
    digest = hashlib.blake2b(b"%d/%d" % (seed, ident), digest_size=32).digest()
    n = digest[0] * 3 + (digest[1] % 4) * 700
    body = (digest * (n // 32 + 1))[:n]
    return _HEADER.pack(ident, batch, size, index) + body


def _parse_payload(seed: int, data: bytes) -> tuple[int, int, int, int] | None:
    if len(data) < _HEADER.size:
        return None
    ident, batch, size, index = _HEADER.unpack_from(data)
    if data != kill_payload(seed, ident, batch, size, index):
        return None
    return ident, batch, size, index


async def _child(path: str, mode: str, seed: int, start_id: int) -> None:
    """The writer process: append forever, report every acknowledgement on stdout.

    Lines: ``a <seq> <id> <level>`` an append reached ``level``; ``b <first> <last>`` a batch
    is on disk; ``w <written_seq> <durable_seq>`` the log's levels after a step; ``t <seq>`` a
    truncate_before is being requested; ``c <index> <seq>`` a checkpoint is being requested,
    ``C <index>`` it was acknowledged.
    """
    rng = random.Random(f"child/{seed}/{start_id}")
    out = sys.stdout
    ident = start_id
    n_cp = 0

    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    def say_when_done(fut: asyncio.Future[Any], line: str) -> None:
        def done(f: asyncio.Future[Any]) -> None:
            if not f.cancelled() and f.exception() is None:
                say(line)

        fut.add_done_callback(done)

    async with asyncwal.open(
        path, sync_mode=mode, segment_size=8192, batch_size=8, batch_interval=0.002
    ) as log:
        say(f"o {log.first_seq} {log.last_seq}")
        default = log.options.default_durability
        while True:
            futs: list[asyncio.Future[Any]] = []
            for _ in range(rng.randint(1, 12)):
                level = rng.choice((None, None, None, Durability.OS, Durability.DISK))
                fut = log.append(kill_payload(seed, ident), level)
                seq = log.last_seq
                lv = int(default if level is None else level)
                say_when_done(fut, f"a {seq} {ident} {lv}")
                futs.append(fut)
                ident += 1
            if rng.random() < 0.2:
                size = rng.randint(1, 4)
                batch = [kill_payload(seed, ident + k, ident, size, k) for k in range(size)]
                ident += size
                bfut = log.append_batch(batch)
                last = log.last_seq
                say_when_done(bfut, f"b {last - size + 1} {last}")
                futs.append(bfut)
            r = rng.random()
            if r < 0.08:
                seq = rng.randint(log.first_seq, log.last_seq + 1)
                say(f"t {seq}")
                futs.append(asyncio.ensure_future(log.truncate_before(seq)))
            elif r < 0.12:
                say(f"c {n_cp} {log.last_seq}")
                cp = asyncio.ensure_future(log.checkpoint(b"cp%d/%d" % (start_id, n_cp)))
                say_when_done(cp, f"C {n_cp}")
                futs.append(cp)
                n_cp += 1
            await asyncio.gather(*futs)
            say(f"w {log.written_seq} {log.durable_seq}")


def child_main(argv: Sequence[str]) -> None:
    path, mode, seed, start_id = argv
    asyncio.run(_child(path, mode, int(seed), int(start_id)))


@dataclasses.dataclass
class KillHistory:
    """What the killed writers reported, accumulated over the rounds on one directory."""

    acked: dict[int, int] = dataclasses.field(default_factory=dict)  # seq -> id, acked at >= OS
    os_mark: int = 0  # highest written_seq reported
    truncated: int = 0
    checkpoints: list[tuple[bytes, int]] = dataclasses.field(default_factory=list)
    checkpoint_acked: int = -1
    max_id: int = 0


def _read_reports(lines: Sequence[str], hist: KillHistory, start_id: int) -> None:
    for line in lines:
        kind, *args = line.split()
        nums = [int(a) for a in args]
        if kind == "a" and nums[2] >= Durability.OS:
            hist.acked[nums[0]] = nums[1]
        elif kind == "b":
            hist.os_mark = max(hist.os_mark, nums[1])
        elif kind == "w":
            hist.os_mark = max(hist.os_mark, nums[0])
        elif kind == "t":
            hist.truncated = max(hist.truncated, nums[0])
        elif kind == "c":
            hist.checkpoints.append((b"cp%d/%d" % (start_id, nums[0]), nums[1]))
        elif kind == "C":
            data = b"cp%d/%d" % (start_id, nums[0])
            hist.checkpoint_acked = max(
                hist.checkpoint_acked, next(i for i, (d, _) in enumerate(hist.checkpoints) if d == data)
            )


def kill_trial(seed: int, mode: str, directory: str, *, rounds: int = 3, max_reports: int = 120) -> Stats:
    """Kill a writer child ``rounds`` times on one directory, checking the log after each kill.

    :raises CampaignFailure: a reopened log broke an invariant
    """
    rng = random.Random(f"kill/{seed}/{mode}")
    hist = KillHistory()
    stats = Stats(trials=1)
    path = os.path.join(directory, "wal")
    for rnd in range(rounds):
        start_id = hist.max_id + 1_000_000 * (rnd + 1)
        kill_after = rng.randint(1, max_reports)
        # One kill in three waits, after that, for a truncate_before request: the kill then
        # lands while its META write and unlinks are in flight.
        at_truncation = rng.random() < 1 / 3
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.crash_campaign", "child", path, mode, str(seed), str(start_id)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            if len(lines) >= kill_after and (not at_truncation or line.startswith("t ")):
                break
        proc.send_signal(signal.SIGKILL)
        rest, err = proc.communicate()
        lines += rest.splitlines(keepends=True)
        complete = [ln for ln in lines if ln.endswith("\n")]  # a line cut by the kill says nothing
        if proc.returncode != -signal.SIGKILL:
            raise CampaignFailure(f"kill: seed={seed} mode={mode}: the child exited {proc.returncode}: {err}")
        stats.kills += 1
        _read_reports(complete, hist, start_id)
        try:
            stats.acked_checked += asyncio.run(check_after_kill(path, seed, hist))
        except Violation as exc:
            raise CampaignFailure(
                f"process kill: seed={seed} mode={mode} round {rnd}, killed after {kill_after} "
                f"reports: {exc}\n"
                f"replay: python -m bench.crash_campaign kill --seed {seed} --mode {mode}"
            ) from exc
    return stats


async def check_after_kill(path: str, seed: int, hist: KillHistory) -> int:
    """Reopen a killed writer's log and check it against the reports it made.

    :raises Violation: an invariant does not hold
    :return: how many acknowledged records the check required
    """
    acked = dict(hist.acked)

    def payload(seq: int, data: bytes) -> str | None:
        parsed = _parse_payload(seed, data)
        if parsed is None:
            return "was never appended (not a payload of this campaign)"
        if seq in acked and acked[seq] != parsed[0]:
            return f"holds record id {parsed[0]}, id {acked[seq]} was acknowledged"
        return None

    expect = Expectations(
        required=max([hist.os_mark, *hist.acked]),
        truncated=hist.truncated,
        payload=payload,
        checkpoints=hist.checkpoints,
        checkpoint_acked=hist.checkpoint_acked,
    )
    checked = await check_reopened(None, path, expect)
    # Batches are atomic and ids grow with seqs: read the payloads back.
    async with asyncwal.open(path) as log:
        records = [(r.seq, r.data) async for r in log.replay()]
    last_id = -1
    batches: dict[int, list[int]] = {}
    for seq, data in records:
        parsed = _parse_payload(seed, data)
        assert parsed is not None  # checked above
        ident, batch, size, _ = parsed
        if ident <= last_id:
            raise Violation(f"record {seq} holds id {ident} after id {last_id}: out of order")
        last_id = ident
        hist.max_id = max(hist.max_id, ident)
        if batch:
            batches.setdefault(batch, []).append(size)
    for batch, sizes in batches.items():
        if len(sizes) != sizes[0]:
            raise Violation(f"batch {batch} is torn: {len(sizes)} of {sizes[0]} records survived")
    return checked


# -- corrupt input -------------------------------------------------------------------------------

#: Kinds of damage :func:`apply_mutation` does. Byte-level ones keep the file set.
MUTATIONS = (
    "flip",  # flip bits
    "cut",  # truncate the file
    "zero",  # zero a range
    "garbage",  # overwrite a range with ``data``
    "duplicate",  # insert a copy of a range elsewhere
    "move",  # move a range elsewhere
    "length",  # a frame-like length field claiming up to gigabytes
    "append",  # append ``data`` (or a frame header claiming 2 GiB)
    "swap",  # swap two files' contents
    "copy",  # copy a segment under the name of a later seq
)


@dataclasses.dataclass(frozen=True)
class OriginalLog:
    """A valid log built by :func:`build_log`.

    :ivar image: its files, ``{path: contents}`` (no LOCK file)
    :ivar records: every record, ``{seq: payload}``
    :ivar frames: per segment path, ``(end offset, last seq)`` of each frame in file order
    """

    image: dict[str, bytes]
    records: dict[int, bytes]
    frames: dict[str, list[tuple[int, int]]]


@dataclasses.dataclass
class CorruptOutcome:
    """What opening a damaged log did, in one recovery mode."""

    mode: str
    opened: bool
    error: str = ""  # CorruptLogError message when not opened
    records: int = 0


async def build_log(seed: int, *, records: int = 40) -> OriginalLog:
    """A valid log of a few segments, with batches and a checkpoint."""
    rng = random.Random(f"corrupt/{seed}")
    fs = MemoryFileOps()
    data: dict[int, bytes] = {}
    async with asyncwal.open(
        LOG_DIR, file_ops=fs, segment_size=4096, preallocate=rng.random() < 0.5, max_record_size=8192
    ) as log:
        while log.last_seq < records:
            if rng.random() < 0.2:
                batch = [rng.randbytes(rng.randint(0, 300)) for _ in range(rng.randint(1, 4))]
                seqs = await log.append_batch(batch)
                data.update(zip(seqs, batch, strict=True))
            else:
                payload = rng.randbytes(rng.randint(0, 600))
                data[await log.append(payload)] = payload
            if rng.random() < 0.05:
                await log.checkpoint(b"cp")
    image = {p: d for p, d in fs.snapshot().items() if os.path.basename(p) != "LOCK"}
    frames: dict[str, list[tuple[int, int]]] = {}
    for path, buf in image.items():
        first = parse_segment_name(os.path.basename(path))
        if first is None:
            continue
        pos, seq, out = SEGMENT_HEADER_SIZE, first, []
        while True:
            end, _t, count, _r = scan_frame(buf, pos, seq, 1 << 20)
            if end < 0:
                break
            seq += count
            out.append((end, seq - 1))
            pos = end
        frames[path] = out
    return OriginalLog(image, data, frames)


def apply_mutation(
    image: Mapping[str, bytes], kind: str, which: int, pos: int, size: int, data: bytes
) -> tuple[dict[str, bytes], str, tuple[str, int] | None]:
    """Damage ``image``: ``kind`` (one of MUTATIONS) on file number ``which`` (modulo the
    number of files, in name order) at byte ``pos`` (modulo its size) over ``size`` bytes.

    :return: the new image, a description, and for byte-level damage ``(path, first byte
        that differs)`` (None when the files themselves were swapped or copied, or nothing
        changed)
    """
    out = dict(image)
    paths = sorted(out)
    path = paths[which % len(paths)]
    name = os.path.basename(path)
    old = out[path]
    buf = bytearray(old)
    n = len(buf)
    at = pos % (n + 1)
    size = max(1, size)
    if kind == "flip" and n:
        for k in range(min(size, 4)):
            i = (pos + k * 7919) % n
            buf[i] ^= 1 << (k + pos) % 8 or 1
    elif kind == "cut":
        del buf[at:]
    elif kind == "zero":
        buf[at : at + size] = bytes(len(buf[at : at + size]))
    elif kind == "garbage":
        chunk = (data or b"\xa5") * (size // max(1, len(data)) + 1)
        buf[at : at + size] = chunk[: len(buf[at : at + size])]
    elif kind == "duplicate" and n:
        src = pos * 31 % n
        buf[at:at] = buf[src : src + size]
    elif kind == "move" and n:
        src = pos * 31 % n
        moved = bytes(buf[src : src + size])
        del buf[src : src + len(moved)]
        dst = at % (len(buf) + 1)
        buf[dst:dst] = moved
    elif kind == "length" and n >= 8:
        claim = (0xFFFFFFFF, 0x7FFFFFFF, 1 << 30, 8193, n, size)[pos % 6]
        i = min(at, n - 8)
        buf[i + 4 : i + 8] = struct.pack("<I", claim)
    elif kind == "append":
        buf += data if data else struct.pack("<IIQB3x", 0, 1 << 31, 0, 1)
    elif kind == "swap" and len(paths) > 1:
        other = paths[(which + 1 + pos) % len(paths)]
        if other != path:
            out[path], out[other] = out[other], out[path]
            return out, f"swap {name} and {os.path.basename(other)}", None
    elif kind == "copy":
        first = parse_segment_name(name)
        if first is not None:
            seq = first + 1 + pos % 80
            out[os.path.join(os.path.dirname(path), segment_name(seq))] = old
            return out, f"copy {name} as seq {seq}", None
    new = bytes(buf)
    out[path] = new
    if new == old:
        return out, f"{kind} in {name}: no change", None
    first_diff = next(
        (i for i in range(min(len(old), len(new))) if old[i] != new[i]), min(len(old), len(new))
    )
    return out, f"{kind} in {name} at {first_diff}", (path, first_diff)


def random_mutation(image: Mapping[str, bytes], rng: random.Random) -> tuple[str, int, int, int, bytes]:
    """Arguments for :func:`apply_mutation`, drawn with ``rng``."""
    kind = rng.choice(MUTATIONS)
    return (
        kind,
        rng.randrange(1 << 16),
        rng.randrange(1 << 20),
        rng.randint(1, 800),
        rng.randbytes(rng.randint(0, 64)),
    )


def must_survive(original: OriginalLog, damage: Sequence[tuple[str, int] | None]) -> int:
    """The last seq that every opened log must still hold: records wholly before the first
    damaged byte of the earliest damaged segment. -1 if some damage is not byte-level
    (then nothing can be promised)."""
    if any(d is None for d in damage):
        return -1
    keep = max(original.records, default=0)
    for where in damage:
        assert where is not None
        path, offset = where
        if path not in original.frames:
            if os.path.basename(path) == META_NAME:
                continue  # META damage must be reported, never cut records
            return -1
        before = [last for end, last in original.frames[path] if end <= offset]
        first = parse_segment_name(os.path.basename(path))
        assert first is not None
        keep = min(keep, before[-1] if before else first - 1)
    return keep


async def open_damaged(
    image: Mapping[str, bytes], original: OriginalLog, mode: str, *, keep: int = -1, measure: bool = False
) -> CorruptOutcome:
    """Open a damaged log in recovery ``mode`` and check what it does.

    Rules: opening either succeeds or raises CorruptLogError whose ``segment`` is a file of
    the log and whose ``offset`` lies in it; never another exception. An opened log replays
    the original records ``1..last_seq`` (a prefix of the log: nothing invented, nothing
    reordered, nothing skipped), holding at least ``1..keep``, and takes a new record. With
    ``measure``, the memory allocated while opening and replaying is bounded by a few times
    the size of the files, whatever their length fields claim.

    :raises Violation: a rule was broken
    """
    fs = MemoryFileOps.from_image(image)
    fs.makedirs(LOG_DIR)
    if measure:
        tracemalloc.start()
    try:
        outcome = await _open_damaged(fs, image, original, mode, keep)
    finally:
        if measure:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    if measure:
        bound = 4 * sum(map(len, image.values())) + 2 * READ_CHUNK + (1 << 20)
        if peak > bound:
            raise Violation(f"{mode}: opening and replaying allocated {peak} bytes (bound {bound})")
    return outcome


async def _open_damaged(
    fs: MemoryFileOps, image: Mapping[str, bytes], original: OriginalLog, mode: str, keep: int
) -> CorruptOutcome:
    try:
        log = await asyncwal.open(
            LOG_DIR, file_ops=fs, recovery=mode, max_record_size=8192, segment_size=4096
        )
    except asyncwal.CorruptLogError as exc:
        if exc.segment not in image:
            raise Violation(f"{mode}: CorruptLogError names {exc.segment!r}, not a file of the log") from exc
        if not 0 <= exc.offset <= len(image[exc.segment]):
            raise Violation(f"{mode}: CorruptLogError offset {exc.offset} is outside {exc.segment}") from exc
        return CorruptOutcome(mode, False, str(exc))
    except Exception as exc:
        raise Violation(f"{mode}: opening a damaged log raised {exc!r}") from exc
    try:
        try:
            records = [(r.seq, r.data) async for r in log.replay()]
        except Exception as exc:
            raise Violation(f"{mode}: replay of a recovered log raised {exc!r}") from exc
        last = log.last_seq
        if [s for s, _ in records] != list(range(1, last + 1)):
            raise Violation(
                f"{mode}: recovered records are not the prefix 1..{last} "
                f"(first_seq={log.first_seq}, {len(records)} records)"
            )
        for seq, data in records:
            if original.records.get(seq) != data:
                raise Violation(f"{mode}: record {seq} was not written with these bytes")
        if last < keep:
            raise Violation(f"{mode}: records {last + 1}..{keep}, before the damage, were lost")
        seq = await log.append(b"new")
        if seq != last + 1:
            raise Violation(f"{mode}: the next append got seq {seq}, {last + 1} expected")
    finally:
        await log.close()
    return CorruptOutcome(mode, True, records=len(records))


async def check_damage(
    original: OriginalLog, mutations: Sequence[tuple[str, int, int, int, bytes]], *, measure: bool = False
) -> Stats:
    """Apply ``mutations`` to ``original`` and open the result in each recovery mode.

    :raises Violation: a rule of :func:`open_damaged` was broken (the message says what was done)
    """
    image = original.image
    done: list[str] = []
    damage: list[tuple[str, int] | None] = []
    for m in mutations:
        image, what, where = apply_mutation(image, *m)
        done.append(what)
        damage.append(where)
    keep = must_survive(original, damage)
    stats = Stats(trials=1)
    for mode in ("tolerate_tail", "strict", "point_in_time"):
        try:
            outcome = await open_damaged(image, original, mode, keep=keep, measure=measure)
        except Violation as exc:
            raise Violation(f"{'; '.join(done)}: {exc}") from exc
        stats.corrupt_cases += 1
        if outcome.opened:
            stats.corrupt_recovered += 1
        else:
            stats.corrupt_rejected += 1
    return stats


async def corrupt_trial(seed: int, *, mutations: int = 1) -> Stats:
    """Damage a valid log ``mutations`` times at random and open it in each recovery mode.

    :raises CampaignFailure: a rule of :func:`open_damaged` was broken
    """
    original = await build_log(seed)
    rng = random.Random(f"mutate/{seed}")
    chosen = [random_mutation(original.image, rng) for _ in range(mutations)]
    try:
        return await check_damage(original, chosen, measure=seed % 10 == 0)
    except Violation as exc:
        raise CampaignFailure(
            f"corrupt input: seed={seed}: {exc}\n"
            f"replay: python -m bench.crash_campaign corrupt --seed {seed} --mutations {mutations}"
        ) from exc


# -- command line --------------------------------------------------------------------------------


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.crash_campaign", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="cmd")
    p_all = sub.add_parser("all", help="every campaign, long version; prints the figures")
    p_all.add_argument("--trials", type=int, default=40, help="power-loss runs (others scale from it)")
    p_all.add_argument("--seed", type=int, default=1)
    p_all.add_argument("--json", help="also write the figures to this file")
    p_pl = sub.add_parser("powerloss", help="power-loss runs (or replay one crash point)")
    p_pl.add_argument("--seed", type=int, default=1)
    p_pl.add_argument("--trials", type=int, default=1)
    p_pl.add_argument("--steps", type=int, default=40)
    p_pl.add_argument("--samples", type=int, default=3)
    p_pl.add_argument("--at", type=int, help="check only this crash point")
    p_pl.add_argument("--sample", help="check only this sample (durable or a number)")
    p_pl.add_argument("--broken", choices=sorted(BROKEN))
    p_pl.add_argument("--mode", choices=MODES, help="the sync mode the run starts in")
    p_f = sub.add_parser("faults", help="fault matrix")
    p_f.add_argument("--seed", type=int, default=1)
    p_f.add_argument("--trials", type=int, default=1)
    p_f.add_argument("--fault", choices=sorted(FAULTS))
    p_k = sub.add_parser("kill", help="process kills")
    p_k.add_argument("--seed", type=int, default=1)
    p_k.add_argument("--trials", type=int, default=1)
    p_k.add_argument("--mode", choices=MODES)
    p_c = sub.add_parser("corrupt", help="damaged logs")
    p_c.add_argument("--seed", type=int, default=1)
    p_c.add_argument("--trials", type=int, default=1)
    p_c.add_argument("--mutations", type=int, default=1)
    p_child = sub.add_parser("child", help="(internal) the writer process of the kill campaign")
    p_child.add_argument("args", nargs=4)
    parser.add_argument("-v", "--verbose", action="store_true", help="show asyncwal's log messages")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a in sub.choices for a in argv):
        argv.append("all")  # the default command
    args = parser.parse_args(argv)
    if not args.verbose:
        # Recovery cutting torn tails and logs failing on injected faults is the point here.
        logging.getLogger("asyncwal").setLevel(logging.CRITICAL)
    if args.cmd == "child":
        child_main(args.args)
        return 0
    per: dict[str, Stats] = {}
    seconds: dict[str, float] = {}

    def campaign(name: str) -> Stats:
        seconds[name] = time.perf_counter()
        return per.setdefault(name, Stats())

    if args.cmd in ("powerloss", "all"):
        st = campaign("power loss")
        for s in range(args.seed, args.seed + args.trials):
            st.add(
                asyncio.run(
                    powerloss_trial(
                        s,
                        steps=getattr(args, "steps", 40),
                        samples=getattr(args, "samples", 3),
                        mode=getattr(args, "mode", None),
                        broken=getattr(args, "broken", None),
                        points=[args.at] if getattr(args, "at", None) is not None else None,
                        only_sample=getattr(args, "sample", None),
                    )
                )
            )
        seconds["power loss"] = time.perf_counter() - seconds["power loss"]
    if args.cmd in ("faults", "all"):
        st = campaign("faults")
        n = args.trials if args.cmd == "faults" else max(1, args.trials // 2)
        names = [args.fault] if getattr(args, "fault", None) else sorted(FAULTS)
        for s in range(args.seed, args.seed + n):
            for name in names:
                st.add(asyncio.run(fault_trial(s, name)))
        seconds["faults"] = time.perf_counter() - seconds["faults"]
    if args.cmd in ("kill", "all"):
        st = campaign("process kill")
        n = args.trials if args.cmd == "kill" else max(1, args.trials // 4)
        modes = [args.mode] if getattr(args, "mode", None) else list(MODES)
        for s in range(args.seed, args.seed + n):
            for mode in modes:
                d = tempfile.mkdtemp(prefix="asyncwal-kill-")
                try:
                    st.add(kill_trial(s, mode, d))
                finally:
                    shutil.rmtree(d, ignore_errors=True)
        seconds["process kill"] = time.perf_counter() - seconds["process kill"]
    if args.cmd in ("corrupt", "all"):
        st = campaign("corrupt input")
        n = args.trials if args.cmd == "corrupt" else args.trials * 10
        for s in range(args.seed, args.seed + n):
            st.add(asyncio.run(corrupt_trial(s, mutations=getattr(args, "mutations", 1 + s % 3))))
        seconds["corrupt input"] = time.perf_counter() - seconds["corrupt input"]
    _report(per, seconds, getattr(args, "json", None))
    return 0


def _report(per: Mapping[str, Stats], seconds: Mapping[str, float], json_path: str | None) -> None:
    """Print the figures as a Markdown table (one column per campaign), and as JSON."""
    labels = {
        "trials": "trials (seeded runs, damaged logs)",
        "crash_points": "crash points (file operations crashed after)",
        "second_crash_points": "crash points during recovery of a crashed image",
        "states_checked": "crash states reopened and checked",
        "kills": "SIGKILLs of a writer process",
        "faults_fired": "faults injected (fired)",
        "acked_checked": "acknowledged records required (summed over checks)",
        "acked_lost": "acknowledged records lost",
        "corrupt_cases": "damaged logs opened (x3 recovery modes)",
        "corrupt_recovered": "... recovered",
        "corrupt_rejected": "... rejected with CorruptLogError",
    }
    names = list(per)
    print("| | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for field, label in labels.items():
        values = [getattr(per[n], field) for n in names]
        if any(values) or field == "acked_lost":
            print(f"| {label} | " + " | ".join(f"{v:,}" for v in values) + " |")
    print("| seconds | " + " | ".join(f"{seconds[n]:.0f}" for n in names) + " |")
    if json_path:
        payload = {n: dataclasses.asdict(st) | {"seconds": round(seconds[n], 1)} for n, st in per.items()}
        with open(json_path, "w") as out:
            json.dump(payload, out, indent=2)


if __name__ == "__main__":
    raise SystemExit(_main())
