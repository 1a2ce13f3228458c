"""I/O errors through the seam (short version of the fault campaign).

Every kind of fault of ``tests.campaign.faults.FAULTS`` (EIO on write, fsync and directory
fsync; ENOSPC on write and on segment creation; short writes; EIO on rename and unlink) is
injected at a random call of a seeded workload, and the failed-state rules are checked:
no caller is left hanging, every caller gets LogFailedError, later calls raise it, a failed
fsync is never retried, close() releases the lock, and reopening finds everything that was
acknowledged before the fault (at OS on the live files, at DISK after a power cut).
"""

from __future__ import annotations

import asyncio
import errno

import pytest

import asyncwal
from asyncwal import Durability, LogFailedError
from asyncwal.testing import FaultyFileOps, MemoryFileOps, PowerLossFileOps
from tests.campaign import LOG_DIR, campaign_trials
from tests.campaign.broken import SyncSwallowsErrors
from tests.campaign.checker import CampaignFailure, Stats
from tests.campaign.faults import FAULTS, fault_trial
from tests.campaign.workload import failure_watch

SEEDS = range(12)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_matrix(fault: str) -> None:
    total = Stats()
    for seed in SEEDS:
        total.add(asyncio.run(fault_trial(seed, fault)))
    # The fault really fired (some runs draw an ``after`` past their calls of that kind).
    assert total.faults_fired > 0
    assert total.acked_checked > 0


async def _open(ops: FaultyFileOps, **options: object) -> asyncwal.Log:
    log: asyncwal.Log = await asyncwal.open(LOG_DIR, file_ops=ops, segment_size=4096, **options)
    return log


async def test_every_waiting_caller_fails_when_the_fsync_fails() -> None:
    """A group is parked in its fsync while more work queues up behind it; the fsync fails.
    Every caller (in the group, queued, or waiting in sync/checkpoint/wait_for/batch) gets its
    own LogFailedError caused by the EIO, and nothing is acknowledged at DISK afterwards."""
    disk = PowerLossFileOps()
    ops = FaultyFileOps(disk)
    log = await _open(ops)
    durable_before = await log.append(b"before")
    syncs_before = ops.calls["sync"]
    gate = ops.block("sync")
    ops.inject("sync", errno.EIO)
    in_flight = [log.append(b"group %d" % i) for i in range(3)]
    await gate.wait_entered()
    queued = [log.append(b"queued %d" % i) for i in range(3)]
    others = [
        asyncio.ensure_future(log.sync()),
        asyncio.ensure_future(log.checkpoint(b"cp")),
        asyncio.ensure_future(log.wait_for(log.last_seq, Durability.DISK)),
        log.append_batch([b"b1", b"b2"]),
        log.append(b"os level", Durability.OS),
    ]
    gate.release()
    results = await asyncio.gather(*in_flight, *queued, *others, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == len(results), results
    assert all(isinstance(e, LogFailedError) for e in errors), errors
    assert all(isinstance(e.__cause__, OSError) and e.__cause__.errno == errno.EIO for e in errors)
    assert len({id(e) for e in errors}) == len(errors)  # each caller its own exception
    assert log.failed
    assert log.durable_seq == durable_before
    assert ops.calls["sync"] == syncs_before + 1  # the failed fsync is never retried
    with pytest.raises(LogFailedError):
        log.append(b"later")
    await log.close()
    # A power cut now: the failed group was never synced, and nothing claimed it was.
    crashed = MemoryFileOps.from_image(disk.durable_image())
    async with asyncwal.open(LOG_DIR, file_ops=crashed) as again:
        assert [r.data async for r in again.replay()] == [b"before"]


async def test_a_failed_truncate_before_fails_its_caller() -> None:
    """A truncate_before whose unlink fails must not leave its caller waiting."""
    ops = FaultyFileOps(PowerLossFileOps())
    log = await _open(ops)
    for i in range(30):
        await log.append(b"%d" % i * 300)
    ops.inject("unlink", errno.EIO)
    watcher = asyncio.ensure_future(failure_watch(log))
    truncation = asyncio.ensure_future(log.truncate_before(log.last_seq))
    done, _ = await asyncio.wait([truncation, watcher], return_when=asyncio.FIRST_COMPLETED)
    if truncation not in done:
        # The log failed first: its failure must reach the caller within a few iterations.
        for _ in range(20):
            await asyncio.sleep(0)
    assert truncation.done(), "truncate_before() is still waiting after the log failed"
    with pytest.raises(LogFailedError):
        truncation.result()
    with pytest.raises(LogFailedError):
        await watcher
    await log.close()
    async with asyncwal.open(LOG_DIR, file_ops=ops) as again:
        assert again.last_seq == 30


async def test_an_io_error_while_opening_releases_the_lock() -> None:
    mem = MemoryFileOps()
    async with asyncwal.open(LOG_DIR, file_ops=mem, segment_size=4096) as log:
        for _ in range(20):
            await log.append(b"x" * 300)
    for op in ("listdir", "open_readonly", "pread", "unlink", "sync_dir"):
        # A leftover for recovery to unlink (followed by a directory fsync).
        mem.write_bytes(f"{LOG_DIR}/00000000000000000099.wal.tmp", b"leftover")
        ops = FaultyFileOps(mem)
        ops.inject(op, errno.EIO)
        with pytest.raises((OSError, asyncwal.WALError)):
            await asyncwal.open(LOG_DIR, file_ops=ops)
        assert ops.calls[op] >= 1
    async with asyncwal.open(LOG_DIR, file_ops=mem) as log:
        assert log.last_seq == 20


async def test_a_short_write_is_completed_not_failed() -> None:
    ops = FaultyFileOps(MemoryFileOps())
    log = await _open(ops)
    fault = ops.inject("pwrite", None, short=3, times=5)
    seqs = [await log.append(b"record %d" % i) for i in range(5)]
    assert fault.fired == 5
    assert not log.failed
    await log.close()
    async with asyncwal.open(LOG_DIR, file_ops=ops) as again:
        assert [(r.seq, r.data) async for r in again.replay()] == [
            (s, b"record %d" % i) for i, s in enumerate(seqs)
        ]


@pytest.mark.campaign
def test_long_fault_campaign(request: pytest.FixtureRequest) -> None:
    """``pytest -m campaign`` or ASYNCWAL_CAMPAIGN_TRIALS=N: N seeds of every fault."""
    trials = campaign_trials(request.config.getoption("markexpr") or "", 200)
    if trials is None:
        pytest.skip("long campaign: run with -m campaign or ASYNCWAL_CAMPAIGN_TRIALS=N")
    for seed in range(1000, 1000 + trials):
        for fault in sorted(FAULTS):
            asyncio.run(fault_trial(seed, fault))


def test_the_checker_catches_acknowledgements_past_a_failed_fsync() -> None:
    """A disk whose failed fsync reports success makes the engine acknowledge records at DISK
    that a power cut then loses: the fault campaign must say so."""
    messages = []
    for seed in SEEDS:
        try:
            asyncio.run(fault_trial(seed, "EIO on fsync", ops_class=SyncSwallowsErrors))
        except CampaignFailure as exc:
            messages.append(str(exc))
    # Every run whose swallowed fsync mattered is caught; some are caught as lost records
    # after a power cut (the rest as a log that did not fail although its fsync did).
    assert len(messages) == len(SEEDS)
    assert any("acknowledged records lost" in m for m in messages), messages
