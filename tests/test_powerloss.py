"""Power-loss campaign (short version): crash at every file operation of a seeded run and
reopen the real engine on the images a power cut could leave.

The campaign itself lives in tests/campaign/powerloss.py (``python -m bench.crash_campaign
powerloss`` runs the long version); here it runs a few seeds, shows that it catches engines
that acknowledge before their data or names are durable, and that its failures replay.
"""

from __future__ import annotations

import asyncio
import random
import re
import sys

import pytest

import asyncwal
from asyncwal import Durability
from asyncwal.testing import MemoryFileOps, PowerLossFileOps
from tests.campaign import LOG_DIR, campaign_trials
from tests.campaign.checker import CampaignFailure, Expectations, Violation, check_reopened
from tests.campaign.powerloss import powerloss_trial
from tests.campaign.workload import Recorder, run_workload

# These drive their own event loops (asyncio.run): the campaign is loop-agnostic and the
# conftest's per-loop parametrisation would only double the time.


@pytest.mark.parametrize("mode", ["sync", "batch", "none"])
def test_every_crash_point_keeps_the_contract(mode: str) -> None:
    stats = asyncio.run(powerloss_trial(11, steps=30, samples=2, mode=mode))
    assert stats.crash_points > 100
    assert stats.states_checked > stats.crash_points  # random images besides the worst case
    assert stats.acked_checked > 0  # acknowledged records were actually required somewhere


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop")
def test_the_campaign_under_uvloop() -> None:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        stats = runner.run(powerloss_trial(12, steps=20, samples=1))
    assert stats.states_checked >= stats.crash_points


@pytest.mark.parametrize("broken", ["sync-does-nothing", "sync-dir-does-nothing"])
def test_the_checker_catches_a_disk_that_does_not_sync(broken: str) -> None:
    """An engine whose fsync (or directory fsync) silently does nothing acknowledges records
    that a power cut loses: the campaign must say so, with a replayable seed and point."""
    # Records lost, or (when the crash falls on the first open's META write) a META the
    # disk never wrote: either way the checker must not pass.
    match = "acknowledged records lost|does not reopen"
    with pytest.raises(CampaignFailure, match=match) as exc_info:
        asyncio.run(powerloss_trial(1, steps=30, samples=2, broken=broken))
    message = str(exc_info.value)
    assert "seed=1 crash point" in message
    assert f"--broken {broken}" in message


def test_a_failure_replays_from_its_seed_and_crash_point() -> None:
    with pytest.raises(CampaignFailure) as first:
        asyncio.run(powerloss_trial(1, steps=30, samples=2, broken="sync-does-nothing"))
    found = re.search(r"crash point (\d+) of \d+ .*, sample (\w+)", str(first.value))
    assert found is not None
    at, sample = int(found.group(1)), found.group(2)
    with pytest.raises(CampaignFailure) as again:
        asyncio.run(
            powerloss_trial(
                1, steps=30, samples=2, broken="sync-does-nothing", points=[at], only_sample=sample
            )
        )
    assert str(again.value).split(": ", 1)[1] == str(first.value).split(": ", 1)[1]


def test_the_recorded_run_is_deterministic() -> None:
    """Same seed, same file operations: what makes a crash point replayable."""

    def run(seed: int) -> list[str]:
        ops = PowerLossFileOps()
        asyncio.run(run_workload(ops, Recorder(ops.crash_points), seed, 40))
        return [ops.describe(i) for i in range(1, ops.crash_points() + 1)]

    # 51 and 56 once depended on thread timing (MEMORY-level appends not waited for).
    for seed in (5, 51, 56):
        first = run(seed)
        assert len(first) > 30
        assert run(seed) == first, f"seed {seed}"


def test_every_crash_point_of_a_run_is_checked() -> None:
    ops = PowerLossFileOps()
    asyncio.run(run_workload(ops, Recorder(ops.crash_points), 3, 10, mode="sync"))
    stats = asyncio.run(powerloss_trial(3, steps=10, samples=0, mode="sync"))
    # Crash points 0..n; each has at least its worst-case image (identical images are
    # checked once per point, and a point cannot have fewer than one).
    assert stats.crash_points == ops.crash_points() + 1
    assert stats.states_checked >= stats.crash_points


async def test_the_checker_rejects_what_was_never_appended() -> None:
    """The invariants themselves, on a hand-made log: a record with other bytes, a lost
    acknowledged record, a torn batch and a missing acknowledged checkpoint all fail."""
    fs = MemoryFileOps()
    async with asyncwal.open(LOG_DIR, file_ops=fs) as log:
        await log.append(b"one")
        await log.append_batch([b"two", b"three"])
        await log.checkpoint(b"cp0")
    data = {1: b"one", 2: b"two", 3: b"three"}

    def payload(seq: int, got: bytes) -> str | None:
        return None if data.get(seq) == got else "differs"

    good = Expectations(
        required=3,
        truncated=0,
        payload=payload,
        batches=[(2, 3)],
        checkpoints=[(b"cp0", 3)],
        checkpoint_acked=0,
    )
    assert await check_reopened(fs, LOG_DIR, good, append_after=True) == 3
    data[2] = b"TWO"
    with pytest.raises(Violation, match="record 2: differs"):
        await check_reopened(fs, LOG_DIR, good)
    data[2] = b"two"
    lost = Expectations(required=6, truncated=0, payload=lambda s, d: None)
    with pytest.raises(Violation, match="acknowledged records lost"):
        await check_reopened(fs, LOG_DIR, lost)
    torn = Expectations(required=0, truncated=0, payload=lambda s, d: None, batches=[(4, 5)])
    with pytest.raises(Violation, match=r"batch 4\.\.5 is torn"):
        await check_reopened(fs, LOG_DIR, torn)
    newer_cp = Expectations(
        required=0,
        truncated=0,
        payload=lambda s, d: None,
        checkpoints=[(b"cp0", 3), (b"cp1", 3)],
        checkpoint_acked=1,
    )
    with pytest.raises(Violation, match="#1 was acknowledged"):
        await check_reopened(fs, LOG_DIR, newer_cp)


async def test_crash_image_reopens_with_the_real_engine() -> None:
    """End to end without the campaign machinery: a record acknowledged at DISK is in every
    image of every later crash point; an unsynced one is sometimes lost."""
    ops = PowerLossFileOps()
    async with asyncwal.open(LOG_DIR, file_ops=ops, sync_mode="none", segment_size=4096) as log:
        await log.append(b"durable", Durability.DISK)
        acked_at = ops.crash_points()
        await log.append(b"memory only")
        await log.wait_for(2, Durability.OS)
        written_at = ops.crash_points()
        seen_second = set()
        for seed in range(30):
            fs = ops.crash(written_at, random.Random(seed))
            async with asyncwal.open(LOG_DIR, file_ops=fs) as again:
                got = [r.data async for r in again.replay()]
            assert got[:1] == [b"durable"]
            seen_second.add(len(got) == 2)
    assert seen_second == {True, False}
    assert acked_at <= written_at


@pytest.mark.campaign
def test_long_powerloss_campaign(request: pytest.FixtureRequest) -> None:
    """``pytest -m campaign`` or ASYNCWAL_CAMPAIGN_TRIALS=N: many seeds, every mode."""
    trials = campaign_trials(request.config.getoption("markexpr") or "", 60)
    if trials is None:
        pytest.skip("long campaign: run with -m campaign or ASYNCWAL_CAMPAIGN_TRIALS=N")
    for seed in range(1000, 1000 + trials):
        asyncio.run(powerloss_trial(seed, steps=40, samples=3))
