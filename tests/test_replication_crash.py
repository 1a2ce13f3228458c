"""SIGKILL the writing process mid-load, again and again: the stream must stay equal to the
local log, seq for seq and byte for byte, with no gap and no duplicate, and hold every record
that was acknowledged at ``REPLICATED``.

The writer is a real child process (tests/replication_support.py) appending from 8 tasks and
waiting at ``REPLICATED``; it is killed with SIGKILL after a random number of acknowledgements,
then started again on the same directory (its shipper resumes from the stream). The default
run kills it twice per layout; ``-m campaign`` kills it twelve times.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import asyncwal
from asyncwal.replication import NatsReplication, Replicator

from .replication_support import log_records, require_campaign, stream_records

if TYPE_CHECKING:
    from .nats_cluster import NatsCluster

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")

REPO = Path(__file__).resolve().parents[1]


async def _run_and_kill(path: Path, urls: list[str], layout: str, acks: int) -> tuple[str, list[int]]:
    """Start the writer child, SIGKILL it after ``acks`` acknowledgements; its log id and acks."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.replication_support",
        str(path),
        ",".join(urls),
        layout,
        "8",
        cwd=REPO,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    acked: list[int] = []
    try:
        first = await asyncio.wait_for(proc.stdout.readline(), 60)
        log_id = str(json.loads(first)["log_id"])
        while len(acked) < acks:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if not line:
                raise AssertionError(f"the writer exited early with status {await proc.wait()}")
            acked.append(int(line))
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return log_id, acked


async def _campaign(cluster: NatsCluster, tmp_path: Path, layout: str, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "wal"
    acked: list[int] = []
    log_id = ""
    for _ in range(kills):
        log_id, got = await _run_and_kill(path, cluster.urls, layout, rng.randrange(20, 400))
        acked += got
    # Reopen in-process and let the shipper catch up with what the last child left durable.
    opts = NatsReplication(servers=tuple(cluster.urls), layout=layout)  # type: ignore[arg-type]
    async with asyncwal.open(path) as log, Replicator(log, opts) as rep:
        assert rep.log_id == log_id
        await rep.wait_replicated(log.last_seq)
    in_stream = await stream_records(cluster.urls, log_id)
    local = await log_records(path)
    assert [s for s, _ in in_stream] == list(range(1, len(in_stream) + 1)), "gap or duplicate"
    assert in_stream == local
    assert max(acked) <= len(in_stream)


@pytest.mark.parametrize("layout", ["packed", "record"])
def test_sigkill_of_the_writer_keeps_stream_and_log_equal(
    nats_cluster: NatsCluster, tmp_path: Path, layout: str
) -> None:
    asyncio.run(_campaign(nats_cluster, tmp_path, layout, kills=2, seed=11))


@pytest.mark.campaign
@pytest.mark.parametrize("layout", ["packed", "record"])
@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_campaign(
    request: pytest.FixtureRequest, nats_cluster: NatsCluster, tmp_path: Path, layout: str, seed: int
) -> None:
    require_campaign(request)
    asyncio.run(_campaign(nats_cluster, tmp_path, layout, kills=12, seed=seed))
