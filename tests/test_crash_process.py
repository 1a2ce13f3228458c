"""Process crashes, for real (short version): a writer child on real files with real fsyncs
is killed with SIGKILL after a random number of acknowledgements, three times per directory;
after each kill the log must reopen with dense seqs, atomic batches, every record reported
at OS or above intact, and the newest acknowledged checkpoint. (``python -m
bench.crash_campaign kill`` runs the long version.)
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import asyncwal
from tests.campaign import MODES, campaign_trials
from tests.campaign.checker import Violation
from tests.campaign.kill import KillHistory, check_after_kill, kill_payload, kill_trial

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")


@pytest.mark.parametrize("mode", MODES)
def test_sigkill_keeps_what_reached_the_os(mode: str, tmp_path: Path) -> None:
    stats = kill_trial(7, mode, str(tmp_path), rounds=3)
    assert stats.kills == 3
    assert stats.acked_checked > 0


def test_the_kill_checker_catches_a_lost_acknowledgement(tmp_path: Path) -> None:
    """Check the checker: claim one more acknowledged record than the log holds, or another
    record's id under an acknowledged seq, and it must fail."""
    path = str(tmp_path / "wal")
    seed = 3

    async def write() -> int:
        async with asyncwal.open(path) as log:
            for ident in range(1, 6):
                await log.append(kill_payload(seed, ident))
            return log.last_seq

    last = asyncio.run(write())
    honest = KillHistory(acked={s: s for s in range(1, last + 1)}, os_mark=last)
    assert asyncio.run(check_after_kill(path, seed, honest)) == last
    lying = KillHistory(acked={**honest.acked, last + 1: last + 1})
    with pytest.raises(Violation, match="acknowledged records lost"):
        asyncio.run(check_after_kill(path, seed, lying))
    swapped = KillHistory(acked={1: 2})
    with pytest.raises(Violation, match="id 2 was acknowledged"):
        asyncio.run(check_after_kill(path, seed, swapped))


def test_a_killed_child_really_dies_by_sigkill(tmp_path: Path) -> None:
    """The campaign's child keeps appending until killed; it never exits on its own."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.campaign", "child", str(tmp_path / "wal"), "sync", "1", "1"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],  # where ``tests.campaign`` is importable from
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("o 1 0"), first
    acks = 0
    for line in proc.stdout:
        acks += line.startswith("a ")
        if acks >= 20:
            break
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.campaign
def test_long_kill_campaign(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """``pytest -m campaign`` or ASYNCWAL_CAMPAIGN_TRIALS=N: N directories per mode."""
    trials = campaign_trials(request.config.getoption("markexpr") or "", 20)
    if trials is None:
        pytest.skip("long campaign: run with -m campaign or ASYNCWAL_CAMPAIGN_TRIALS=N")
    for seed in range(100, 100 + trials):
        for mode in MODES:
            directory = tmp_path / f"{seed}-{mode}"
            directory.mkdir()
            kill_trial(seed, mode, str(directory), rounds=5)
