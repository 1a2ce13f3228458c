"""Reading a sharded log as a whole (asyncwal.ShardedReader): from the files, without locks,
while other openers (and other processes) write the shards. Each shard in seq order, a
merged stream that takes turns, followers that see new records, truncation, damage."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

import asyncwal
from asyncwal import Record, ShardRecord
from asyncwal._sharded import shard_name

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``directory``: its bytes and modification time."""
    return {
        str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


async def take(records: AsyncGenerator[T, None], n: int) -> list[T]:
    """The next ``n`` items of a (never-ending) follower."""
    out: list[T] = []
    async with asyncio.timeout(30):
        async for item in records:
            out.append(item)
            if len(out) == n:
                break
    return out


async def test_replay_reads_every_shard_in_order_without_locks(tmp_path: Path) -> None:
    path = tmp_path / "wal"
    a = await asyncwal.open_sharded(path, segment_size=4096)
    b = await asyncwal.open_sharded(path, segment_size=4096)
    try:
        for i in range(300):  # several segments each
            await a.append(b"a%d" % i)
            if i % 3 == 0:
                await b.append(b"b%d" % i)
        await b.append_batch([b"batch1", b"batch2"])
        reader = asyncwal.ShardedReader(path)
        before = snapshot(path)
        # Read while both shards are open (held by their writers).
        assert await reader.shards() == [0, 1]
        got_a = [r async for r in reader.replay(0)]
        assert got_a == [Record(i + 1, b"a%d" % i) for i in range(300)]
        got_b = [r.data async for r in reader.replay(1, start=99)]
        assert got_b == [b"b294", b"b297", b"batch1", b"batch2"]
        merged = [r async for r in reader.replay_all()]
        assert sorted(merged) == sorted(
            [ShardRecord(0, r.seq, r.data) for r in got_a]
            + [ShardRecord(1, r.seq, r.data) async for r in reader.replay(1)]
        )
        assert [r async for r in reader.replay(7)] == []  # no such shard: no records
        assert snapshot(path) == before  # no lock taken, not a byte changed
        # Readers never block a writer: another opener still gets a shard.
        async with asyncwal.open_sharded(path) as c:
            assert c.shard == 2
    finally:
        await a.close()
        await b.close()


async def test_the_merged_stream_never_starves_a_shard(tmp_path: Path) -> None:
    """A big shard is read in turns: a small shard's records come before the big one ends."""
    path = tmp_path / "wal"
    async with asyncwal.open_sharded(path, sync_mode="none") as big, asyncwal.open_sharded(path) as small:
        for _ in range(4):
            await big.append_batch([b"x" * 1000] * 1000)  # ~4 MB: several turns
        await small.append(b"small")
        merged = [(r.shard, r.seq) async for r in asyncwal.ShardedReader(path).replay_all()]
    assert len(merged) == 4001
    assert merged.index((1, 1)) < len(merged) - 1000, "the small shard waited for the big one"
    assert [seq for shard, seq in merged if shard == 0] == list(range(1, 4001))


async def test_replay_all_starts_from_saved_positions(tmp_path: Path) -> None:
    path = tmp_path / "wal"
    async with asyncwal.open_sharded(path) as a, asyncwal.open_sharded(path) as b:
        for i in range(5):
            await a.append(b"a%d" % i)
            await b.append(b"b%d" % i)
    reader = asyncwal.ShardedReader(path)
    got = [(r.shard, r.seq) async for r in reader.replay_all(start={0: 4, 1: 6})]
    assert got == [(0, 4), (0, 5)]


async def test_follow_sees_new_records_across_segments(tmp_path: Path) -> None:
    path = tmp_path / "wal"
    reader = asyncwal.ShardedReader(path)
    async with asyncwal.open_sharded(path, segment_size=4096) as writer:
        follower = reader.follow(0, poll_interval=0.01)
        await writer.append(b"first")
        assert await take(follower, 1) == [Record(1, b"first")]
        seqs = [await writer.append(b"%03d" % i * 20) for i in range(200)]  # rotates segments
        got = await take(follower, 200)
        assert [r.seq for r in got] == seqs
        await follower.aclose()


async def test_follow_all_picks_up_shards_created_later(tmp_path: Path) -> None:
    path = tmp_path / "wal"
    reader = asyncwal.ShardedReader(path)
    follower = reader.follow_all(poll_interval=0.01)
    async with asyncwal.open_sharded(path) as a:
        await a.append(b"a")
        assert await take(follower, 1) == [ShardRecord(0, 1, b"a")]
        async with asyncwal.open_sharded(path) as b:
            await b.append(b"b")
            await a.append(b"a2")
            assert sorted(await take(follower, 2)) == [ShardRecord(0, 2, b"a2"), ShardRecord(1, 1, b"b")]
    await follower.aclose()


async def test_truncation_is_skipped_by_replay_and_raised_to_a_follower(tmp_path: Path) -> None:
    path = tmp_path / "wal"
    async with asyncwal.open_sharded(path, segment_size=4096) as writer:
        for i in range(200):
            await writer.append(b"%05d" % i * 10)
        first = await writer.log.truncate_before(150)
        assert 1 < first <= 150
        reader = asyncwal.ShardedReader(path)
        assert [r.seq async for r in reader.replay(0)] == list(range(first, 201))
        assert (await take(reader.replay(0, start=1), 1)) == [Record(first, b"%05d" % (first - 1) * 10)]
        with pytest.raises(asyncwal.TruncatedError, match="shard 0: seq 1 was removed"):
            await take(reader.follow(0, start=1), 1)
        # A follower without a start begins at the oldest record still there.
        assert await take(reader.follow(0), 1) == [Record(first, b"%05d" % (first - 1) * 10)]


async def test_damage_before_the_last_segment_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "wal"
    async with asyncwal.open_sharded(path, segment_size=4096) as writer:
        for i in range(100):
            await writer.append(b"%05d" % i * 10)
    shard = path / shard_name(0)
    oldest = sorted(p for p in shard.iterdir() if p.suffix == ".wal")[0]
    data = bytearray(oldest.read_bytes())
    data[200] ^= 0xFF  # inside a frame of a full segment
    oldest.write_bytes(bytes(data))
    with pytest.raises(asyncwal.CorruptLogError, match="shard 0"):
        [r async for r in asyncwal.ShardedReader(path).replay(0)]


def test_bad_arguments_fail_at_the_call(tmp_path: Path) -> None:
    reader = asyncwal.ShardedReader(tmp_path)
    with pytest.raises(ValueError, match="shard"):
        reader.replay(-1)
    with pytest.raises(ValueError, match="start"):
        reader.follow(0, start=0)
    with pytest.raises(ValueError, match="poll_interval"):
        reader.follow_all(poll_interval=0)
    with pytest.raises(ValueError, match="start"):
        reader.replay_all(start={0: 0})


async def test_a_plain_log_is_not_read_as_shards(tmp_path: Path) -> None:
    async with asyncwal.open(tmp_path / "plain") as log:
        await log.append(b"x")
    with pytest.raises(ValueError, match="plain log"):
        await asyncwal.ShardedReader(tmp_path / "plain").shards()
    assert await asyncwal.ShardedReader(tmp_path / "nothing here").shards() == []


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    import asyncwal

    async def main(path):
        sharded = await asyncwal.open_sharded(path, sync_mode=sys.argv[2], segment_size=8192)
        async def writer(w):
            for i in range(100_000):
                seq = await sharded.append(b"w%d-%d" % (w, i) * (i % 7))
                print("acked", sharded.shard, seq, flush=True)
        await asyncio.gather(*(writer(w) for w in range(4)))

    asyncio.run(main(sys.argv[1]))
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
@pytest.mark.parametrize("mode", ["sync", "batch"])
async def test_a_follower_reads_another_process_while_it_writes_and_after_it_dies(
    mode: str, tmp_path: Path
) -> None:
    """Every record another process acknowledged reaches the follower, in order, while it
    writes; after a SIGKILL (torn tail or not) and a new opener's recovery, the follower
    goes on with the new writer's records, with no gap and no record seen twice."""
    path = tmp_path / "wal"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, str(path), mode, stdout=subprocess.PIPE, cwd=ROOT
    )
    assert proc.stdout is not None
    acked = 0
    while acked < 2000:
        line = await proc.stdout.readline()
        assert line.startswith(b"acked 0 "), line
        acked = max(acked, int(line.split()[2]))
    follower = asyncwal.ShardedReader(path).follow(0, poll_interval=0.01)
    seen = await take(follower, acked)  # the acknowledged ones at least, while it writes
    proc.send_signal(signal.SIGKILL)
    await proc.communicate()
    assert [r.seq for r in seen] == list(range(1, acked + 1))
    async with asyncwal.open_sharded(path) as heir:  # recovers the dead writer's shard
        assert heir.shard == 0
        last = heir.log.last_seq
        assert last >= acked
        await heir.append(b"after recovery")
        rest = await take(follower, last + 1 - acked)
    assert [r.seq for r in rest] == list(range(acked + 1, last + 2))
    assert rest[-1].data == b"after recovery"
    await follower.aclose()
    assert os.listdir(path) == [shard_name(0)]
