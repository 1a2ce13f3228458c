"""Durable writes: the optional ``FileOps.pwritev_sync`` (one ``pwritev2(RWF_DSYNC)`` on Linux)
and the engine's rule for using it: only for a group that must be synced, on a segment with
no unsynced change before it."""

from __future__ import annotations

import errno
import os
import random
from typing import TYPE_CHECKING

import pytest

import asyncwal
from asyncwal._fileops import OsFileOps, write_all, write_all_durable
from asyncwal._segment import PREALLOCATE_STEP
from asyncwal.testing import FaultyFileOps, MemoryFileOps, PowerLossFileOps

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path


# -- the seam ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["os", "os-fallback", "memory"])
def test_pwritev_sync_writes_the_buffers_one_after_another(kind: str, tmp_path: Path) -> None:
    ops: OsFileOps | MemoryFileOps
    if kind == "memory":
        ops, root = MemoryFileOps(), "/d"
        ops.makedirs(root)
    else:
        ops, root = OsFileOps(), str(tmp_path)
        if kind == "os-fallback":
            ops._rwf_dsync = False  # as on a kernel that refuses the flag: pwrite, then sync
    fd = ops.open(os.path.join(root, "f"), create=True)
    try:
        assert ops.pwritev_sync(fd, [b"abc", memoryview(b"defg")], 2) == 7
        assert ops.pread(fd, 100, 0) == b"\0\0abcdefg"
        write_all_durable(ops.pwritev_sync, fd, [b"", b"hij", b""], 9)
        assert ops.pread(fd, 100, 0) == b"\0\0abcdefghij"
    finally:
        ops.close(fd)


def test_memory_pwritev_sync_refuses_a_file_with_unsynced_changes() -> None:
    """A real RWF_DSYNC write leaves earlier unsynced writes unsynced; the model refuses to
    pretend otherwise, so an engine that relied on it would fail its tests."""
    ops = MemoryFileOps()
    ops.makedirs("/d")
    fd = ops.open("/d/f", create=True)
    ops.pwrite(fd, b"x", 0)
    with pytest.raises(ValueError, match="unsynced changes"):
        ops.pwritev_sync(fd, [b"y"], 1)
    ops.sync(fd)
    assert ops.pwritev_sync(fd, [b"y"], 1) == 1
    ops.truncate(fd, 5)
    with pytest.raises(ValueError, match="unsynced changes"):
        ops.pwritev_sync(fd, [b"z"], 2)


def test_powerloss_pwritev_sync_is_durable_when_it_returns() -> None:
    ops = PowerLossFileOps()
    ops.makedirs("/d")
    fd = ops.open("/d/f", create=True)
    ops.sync(fd)
    ops.sync_dir("/d")
    before = ops.crash_points()
    ops.pwritev_sync(fd, [b"A" * 700, b"\0" * 300], 0)
    assert ops.crash_points() == before + 2  # the write, then its flush
    for seed in range(100):
        assert ops.image(rng=random.Random(seed))["/d/f"] == b"A" * 700 + b"\0" * 300
    # A power cut during the call may leave any part of the write, as with pwrite.
    sizes = {len(ops.image(before + 1, random.Random(seed))["/d/f"]) for seed in range(100)}
    assert 0 in sizes and 1000 in sizes


def test_faulty_pwritev_sync_is_a_pwrite_then_a_sync(tmp_path: Path) -> None:
    faulty = FaultyFileOps(MemoryFileOps())
    faulty.makedirs("/d")
    fd = faulty.open("/d/f", create=True)
    assert faulty.pwritev_sync(fd, [b"ab", b"cd"], 0) == 4
    assert (faulty.calls["pwrite"], faulty.calls["sync"]) == (2, 1)
    # A fault on sync fails the durable write after its bytes were written, as an EIO from
    # RWF_DSYNC does: the bytes reached the file, their flush did not complete.
    faulty.inject("sync", errno.EIO)
    with pytest.raises(OSError, match="Input/output error"):
        faulty.pwritev_sync(fd, [b"ef"], 4)
    assert faulty.pread(fd, 10, 0) == b"abcdef"
    # A short write returns what was written (synced); write_all_durable writes the rest.
    faulty.inject("pwrite", short=1)
    write_all_durable(faulty.pwritev_sync, fd, [b"gh", b"ij"], 6)
    assert faulty.pread(fd, 20, 0) == b"abcdefghij"
    faulty.inject("pwrite", None, short=0)
    with pytest.raises(OSError, match="write returned 0 bytes"):
        write_all_durable(faulty.pwritev_sync, fd, [b"k"], 10)


# -- the engine's use of it ----------------------------------------------------------------


class _Counting(MemoryFileOps):
    """A MemoryFileOps that counts the engine's durable writes and syncs."""

    def __init__(self) -> None:
        super().__init__()
        self.durable_writes = 0
        self.syncs = 0

    def pwritev_sync(self, fd: int, buffers: Sequence[bytes | memoryview], offset: int) -> int:
        self.durable_writes += 1
        return super().pwritev_sync(fd, buffers, offset)

    def sync(self, fd: int) -> None:
        self.syncs += 1
        super().sync(fd)

    def counts(self) -> tuple[int, int]:
        return self.durable_writes, self.syncs


class _CountingOs(OsFileOps):
    def __init__(self) -> None:
        super().__init__()
        self.durable_writes = 0
        self.syncs = 0
        self.pwrites = 0

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        self.pwrites += 1
        return super().pwrite(fd, data, offset)

    def pwritev_sync(self, fd: int, buffers: Sequence[bytes | memoryview], offset: int) -> int:
        self.durable_writes += 1
        return super().pwritev_sync(fd, buffers, offset)

    def sync(self, fd: int) -> None:
        self.syncs += 1
        super().sync(fd)


async def test_sync_mode_writes_each_group_durably_in_one_call(tmp_path: Path) -> None:
    ops = _CountingOs()
    path = str(tmp_path / "wal")
    records = [b"%d" % i * 20_000 for i in range(20)]  # 580 KB: two zero-fill steps crossed
    async with asyncwal.open(path, file_ops=ops) as log:
        syncs, pwrites, fsyncs = ops.syncs, ops.pwrites, log.stats().fsyncs
        for record in records:
            await log.append(record)
        assert ops.durable_writes == 20
        assert ops.syncs == syncs  # no separate fdatasync
        assert ops.pwrites == pwrites  # the zero-fill went in the durable writes too
        assert log.stats().fsyncs - fsyncs == 20  # a durable write counts as an fsync
        assert log.durable_seq == 20
    segments = sorted(p for p in (tmp_path / "wal").iterdir() if p.suffix == ".wal")
    size = segments[0].stat().st_size
    assert size > 2 * PREALLOCATE_STEP and size % PREALLOCATE_STEP == 0  # zero-filled ahead
    async with asyncwal.open(path) as log:
        assert [r.data async for r in log.replay()] == records


async def test_a_reopened_segment_is_synced_before_durable_writes_are_used() -> None:
    ops = _Counting()
    async with asyncwal.open("/wal", file_ops=ops) as log:
        await log.append(b"a")
    async with asyncwal.open("/wal", file_ops=ops) as log:
        writes, syncs = ops.counts()
        await log.append(b"b")  # recovery may have changed the tail: pwrite + sync
        assert ops.counts() == (writes, syncs + 1)
        await log.append(b"c")  # now the file is clean
        assert ops.counts() == (writes + 1, syncs + 1)


async def test_batch_mode_syncs_unsynced_groups_with_sync_not_a_durable_write() -> None:
    ops = _Counting()
    async with asyncwal.open("/wal", file_ops=ops, sync_mode="batch", batch_size=1000) as log:
        writes, syncs = ops.counts()
        for i in range(3):
            await log.append(b"os %d" % i)  # acknowledged at OS, not synced
        await log.append_batch([b"b1", b"b2"])  # DISK, after unsynced groups: pwrite + sync
        assert ops.counts() == (writes, syncs + 1)
        await log.append_batch([b"b3"])  # DISK, on a clean file: one durable write
        assert ops.counts() == (writes + 1, syncs + 1)
        await log.append(b"os 3")
        await log.checkpoint(b"cp")  # after an unsynced group again
        assert ops.durable_writes == writes + 1
        assert log.durable_seq == log.last_seq == 7


@pytest.mark.parametrize("mode", ["sync", "batch"])
async def test_every_acknowledged_record_survives_power_loss_with_durable_writes(mode: str) -> None:
    """Sync and unsynced groups mixed, rotation included: at every crash point, every record
    acknowledged at DISK is there after reopening."""
    disk = PowerLossFileOps()
    acked: list[tuple[int, int]] = []  # (crash points so far, seq) once acknowledged at DISK
    opts = {"sync_mode": mode, "batch_size": 3, "segment_size": 4096}
    async with asyncwal.open("/wal", file_ops=disk, **opts) as log:
        for i in range(40):
            if i % 7 == 3:
                seqs = await log.append_batch([b"batch %d" % i * 10, b"more"])
            else:
                seqs = [await log.append(b"record %d" % i * 10)]
            acked.extend((disk.crash_points(), s) for s in seqs if s <= log.durable_seq)
    assert len([n for n in disk.files("/wal") if n.endswith(".wal")]) >= 2  # rotated
    for at in range(disk.crash_points() + 1):
        crashed = disk.crash(at, random.Random(at))
        async with asyncwal.open("/wal", file_ops=crashed) as log:
            survived = log.last_seq
        promised = max((seq for point, seq in acked if point <= at), default=0)
        assert survived >= promised, f"power cut after operation {at}: {disk.describe(at)}"


def test_write_all_over_os_is_not_affected(tmp_path: Path) -> None:
    """The plain path still works on the real file system next to durable writes."""
    ops = OsFileOps()
    fd = ops.open(str(tmp_path / "f"), create=True)
    try:
        write_all(ops, fd, b"plain", 0)
        ops.sync(fd)
        write_all_durable(ops.pwritev_sync, fd, [b" durable"], 5)
        assert ops.pread(fd, 100, 0) == b"plain durable"
    finally:
        ops.close(fd)
