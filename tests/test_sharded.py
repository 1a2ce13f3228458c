"""Sharded logs (asyncwal.open_sharded): each opener claims the first free shard by its lock,
records are per-shard, a dead process's shard goes to the next opener after recovery, and
when every shard is held the error says so. Storage tests run on real files and in memory,
under asyncio and uvloop (conftest)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import asyncwal
from asyncwal._sharded import _claim_order, list_shards, parse_shard_name, shard_name
from asyncwal.testing import MemoryFileOps

if TYPE_CHECKING:
    from .conftest import Backend

ROOT = Path(__file__).resolve().parents[1]


def shard_dir(backend: Backend, index: int) -> str:
    return os.path.join(backend.path, shard_name(index))


def listing(backend: Backend) -> list[str]:
    """Names in the sharded directory, subdirectories included."""
    if backend.memory is not None:
        return backend.memory.listdir(backend.path)
    return sorted(os.listdir(backend.path))


async def test_openers_claim_the_first_free_shard_and_keep_their_own_seqs(backend: Backend) -> None:
    a = await asyncwal.open_sharded(backend.path, **backend.options())
    b = await asyncwal.open_sharded(backend.path, **backend.options())
    try:
        assert (a.shard, b.shard) == (0, 1)
        assert a.path == b.path == backend.path
        assert a.log.path == shard_dir(backend, 0) and b.log.path == shard_dir(backend, 1)
        # Each shard numbers its records from 1: a record is (shard, seq).
        assert [await a.append(b"a1"), await b.append(b"b1"), await a.append(b"a2")] == [1, 1, 2]
        assert await b.append_batch([b"b2", b"b3"]) == [2, 3]
    finally:
        await b.close()
    assert b.closed and not a.closed
    # b's shard is free again: the next opener takes it, with its records.
    async with asyncwal.open_sharded(backend.path, **backend.options()) as c:
        assert c.shard == 1 and c.log.last_seq == 3
        assert [r.data async for r in c.log.replay()] == [b"b1", b"b2", b"b3"]
    await a.close()
    assert listing(backend) == [shard_name(0), shard_name(1)]


async def test_when_every_shard_is_held_the_error_says_so(backend: Backend) -> None:
    held = [await asyncwal.open_sharded(backend.path, max_shards=2, **backend.options()) for _ in range(2)]
    try:
        with pytest.raises(asyncwal.NoFreeShardError, match=r"every shard .* \(max_shards=2\)") as info:
            await asyncwal.open_sharded(backend.path, max_shards=2, **backend.options())
        assert isinstance(info.value, asyncwal.LogLockedError)
        assert "is locked by another opener" in str(info.value)  # each refusal is named
        # A third shard was not created: max_shards bounds the directory too.
        assert listing(backend) == [shard_name(0), shard_name(1)]
        # An opener allowed more shards grows the directory by one.
        async with asyncwal.open_sharded(backend.path, max_shards=3, **backend.options()) as third:
            assert third.shard == 2
    finally:
        for s in held:
            await s.close()


async def test_a_closed_shard_is_reused_before_a_new_one_is_made(backend: Backend) -> None:
    logs = [await asyncwal.open_sharded(backend.path, **backend.options()) for _ in range(3)]
    await logs[0].append(b"in shard 0")
    await logs[0].close()
    again = await asyncwal.open_sharded(backend.path, **backend.options())
    assert again.shard == 0 and again.log.last_seq == 1
    for s in (again, *logs[1:]):
        await s.close()
    assert len(listing(backend)) == 3


def test_claim_order_takes_existing_shards_first() -> None:
    assert _claim_order([], 3) == [0, 1, 2]
    assert _claim_order([2, 0], 4) == [0, 2, 1, 3]  # existing (a dead worker's) before new
    assert _claim_order([5, 1], 3) == [1, 0, 2]  # never at or above max_shards


async def test_an_existing_shard_beats_a_missing_lower_index(tmp_path: Path) -> None:
    path = tmp_path / "wal"
    logs = [await asyncwal.open_sharded(path) for _ in range(3)]
    await logs[2].append(b"two")
    for s in logs:
        await s.close()
    shutil.rmtree(path / shard_name(1))  # shard 1 never existed, say
    async with asyncwal.open_sharded(path) as first, asyncwal.open_sharded(path) as second:
        assert (first.shard, second.shard) == (0, 2)
        assert [r.data async for r in second.log.replay()] == [b"two"]


async def test_shards_use_the_options(backend: Backend) -> None:
    async with asyncwal.open_sharded(backend.path, **backend.options(sync_mode="none")) as s:
        assert s.log.sync_mode == "none"
        assert await s.append(b"x") == 1
    assert s.closed


def test_bad_arguments_fail_at_the_call(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="max_shards"):
        asyncwal.open_sharded(tmp_path, max_shards=2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="max_shards"):
        asyncwal.open_sharded(tmp_path, max_shards=True)
    for bad in (0, -1, 10_001):
        with pytest.raises(ValueError, match="max_shards"):
            asyncwal.open_sharded(tmp_path, max_shards=bad)
    with pytest.raises(ValueError, match="sync_mode"):
        asyncwal.open_sharded(tmp_path, sync_mode="fast")
    with pytest.raises(TypeError):
        asyncwal.open_sharded(tmp_path, no_such_option=1)
    assert not any(tmp_path.iterdir())  # nothing was created


async def test_a_plain_log_is_not_opened_as_shards(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        await log.append(b"plain")
    with pytest.raises(ValueError, match=r"plain log .* asyncwal.open\(\)"):
        await asyncwal.open_sharded(backend.path, **backend.options())
    async with asyncwal.open(backend.path, **backend.options()) as log:
        assert log.last_seq == 1  # untouched


def test_shard_names() -> None:
    assert shard_name(0) == "shard-0000" and shard_name(42) == "shard-0042"
    assert [parse_shard_name(n) for n in ("shard-0000", "shard-0042", "shard-9999")] == [0, 42, 9999]
    for name in ("shard-42", "shard-00042", "shard-00a1", "Shard-0001", "shard-", "x"):
        assert parse_shard_name(name) is None
    ops = MemoryFileOps()
    for name in ("shard-0002", "shard-0000", "notes.txt", "shard-1"):
        ops.makedirs(f"/w/{name}")
    assert list_shards(ops, "/w") == [0, 2]


class SyncDirRecorder(MemoryFileOps):
    """A memory file system that remembers the order of directory creations and fsyncs."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, str]] = []

    def makedirs(self, path: str) -> None:
        if not self.exists(path):
            self.events.append(("mkdir", os.path.normpath(path)))
        super().makedirs(path)

    def sync_dir(self, path: str) -> None:
        self.events.append(("sync_dir", os.path.normpath(path)))
        super().sync_dir(path)

    def open(self, path: str, *, create: bool = False, exclusive: bool = False) -> int:
        if create and not self.exists(path):
            self.events.append(("create", os.path.normpath(path)))
        return super().open(path, create=create, exclusive=exclusive)


async def test_new_directories_are_fsynced_into_their_parents_before_use() -> None:
    """A shard that acknowledged records at DISK must not vanish with its directory entry."""
    ops = SyncDirRecorder()
    async with asyncwal.open_sharded("/data/events/wal", file_ops=ops) as s:
        await s.append(b"x")
    ev = ops.events
    shard = f"/data/events/wal/{shard_name(0)}"
    # Each directory made here is followed by an fsync of its parent, before anything is
    # created inside the shard.
    first_create = next(i for i, (kind, _) in enumerate(ev) if kind == "create")
    for made in ("/data", "/data/events", "/data/events/wal", shard):
        assert ("sync_dir", os.path.dirname(made)) in ev[:first_create], (made, ev)


# -- other processes ---------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    import asyncwal

    async def main(path):
        sharded = await asyncwal.open_sharded(path)
        print("shard", sharded.shard, sharded.log.last_seq, flush=True)
        async def writer(w):
            for i in range(100_000):
                data = b"w%d-%d" % (w, i)
                seq = await sharded.append(data)
                print("acked", seq, data.decode(), flush=True)
        await asyncio.gather(*(writer(w) for w in range(8)))

    asyncio.run(main(sys.argv[1]))
    """
)


def start_child(path: Path) -> tuple[subprocess.Popen[str], int, int]:
    """A child process that opens the sharded log and appends in sync mode until killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    word, shard, last = proc.stdout.readline().split()
    assert word == "shard", word
    return proc, int(shard), int(last)


def kill_after(proc: subprocess.Popen[str], acks: int) -> dict[int, bytes]:
    """Read ``acks`` acknowledgements, then SIGKILL the child mid-append; what it acked."""
    assert proc.stdout is not None
    acked: dict[int, bytes] = {}
    for line in proc.stdout:
        _, seq, data = line.split()
        acked[int(seq)] = data.encode()
        if len(acked) == acks:
            break
    proc.send_signal(signal.SIGKILL)
    rest, _ = proc.communicate()
    for line in rest.split("\n")[:-1]:  # acknowledged before the kill landed (whole lines)
        _, seq, data = line.split()
        acked[int(seq)] = data.encode()
    assert proc.returncode == -signal.SIGKILL
    return acked


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
async def test_a_killed_processes_shard_goes_to_the_next_opener_after_recovery(tmp_path: Path) -> None:
    path = tmp_path / "wal"
    proc, shard, last = await asyncio.to_thread(start_child, path)
    assert (shard, last) == (0, 0)
    try:
        # While the child lives, its shard is held: this process gets the next one.
        async with asyncwal.open_sharded(path) as other:
            assert other.shard == 1
    finally:
        acked = await asyncio.to_thread(kill_after, proc, 300)
    # The child died holding shard 0; the next opener takes it (shard 0 comes first) and
    # finds every record the child acknowledged at DISK, byte for byte, seqs dense.
    async with asyncwal.open_sharded(path) as heir:
        assert heir.shard == 0
        records = {r.seq: r.data async for r in heir.log.replay()}
        assert list(records) == list(range(1, len(records) + 1))
        lost = {s: d for s, d in acked.items() if records.get(s) != d}
        assert not lost, f"acknowledged records lost: {sorted(lost)[:5]}"
        assert len(acked) >= 300
        assert await heir.append(b"after") == len(records) + 1
