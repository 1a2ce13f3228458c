"""batch and none modes: small groups are written to the page cache by the event-loop thread
(while the I/O thread is idle), everything durable stays on the I/O thread, a slow loop-thread
write turns the path off for a while, and batch mode's promises hold on either path."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import TYPE_CHECKING

import pytest
from blockbuster import BlockingError

import asyncwal
from asyncwal import Durability, OsFileOps
from asyncwal.testing import MemoryFileOps

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from tests.conftest import Backend


class ThreadsSeen(MemoryFileOps):
    """MemoryFileOps that notes which thread made each write and sync; it can make the first
    ``slow`` plain writes on an event-loop thread take ``delay`` seconds (a throttled disk)."""

    def __init__(self, slow: int = 0, delay: float = 0.0) -> None:
        super().__init__()
        self.calls: list[tuple[str, bool]] = []  # (method, made on an event-loop thread)
        self._slow = slow
        self._delay = delay

    def _note(self, method: str) -> bool:
        on_loop = asyncio._get_running_loop() is not None
        self.calls.append((method, on_loop))
        return on_loop

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        if self._note("pwrite") and self._slow:
            self._slow -= 1
            end = time.perf_counter() + self._delay  # a throttled write: the thread is held
            while time.perf_counter() < end:
                pass
        return super().pwrite(fd, data, offset)

    def pwritev_sync(self, fd: int, buffers: Sequence[bytes | memoryview], offset: int) -> int:
        self._note("pwritev_sync")
        return super().pwritev_sync(fd, buffers, offset)

    def sync(self, fd: int) -> None:
        self._note("sync")
        super().sync(fd)

    def sync_dir(self, path: str) -> None:
        self._note("sync_dir")
        super().sync_dir(path)

    def rename(self, src: str, dst: str) -> None:
        self._note("rename")
        super().rename(src, dst)

    def on_loop(self, method: str) -> int:
        return sum(1 for m, on in self.calls if m == method and on)


@pytest.mark.parametrize("mode", ["batch", "none"])
async def test_small_groups_are_written_on_the_loop_and_nothing_durable_is(mode: str) -> None:
    ops = ThreadsSeen()
    async with asyncwal.open("/mem/wal", sync_mode=mode, file_ops=ops, segment_size=64 * 1024) as log:
        for i in range(300):  # crosses segments: rotation and zero fill go to the I/O thread
            await log.append(b"record %d" % i)
            await log.wait_for(i + 1, Durability.OS)
        await log.append_batch([b"a", b"b"])
        await log.sync()
        stats = log.stats()
    assert stats.loop_writes > 0
    assert ops.on_loop("pwrite") == stats.loop_writes
    for method in ("pwritev_sync", "sync", "sync_dir", "rename"):
        assert ops.on_loop(method) == 0, method
    assert any(m == "sync" for m, _ in ops.calls)


async def test_sync_mode_and_loop_writes_off_write_on_the_io_thread_only() -> None:
    for opts in ({"sync_mode": "sync"}, {"sync_mode": "batch", "loop_writes": False}):
        ops = ThreadsSeen()
        async with asyncwal.open("/mem/wal", file_ops=ops, **opts) as log:
            for i in range(20):
                await log.append(b"%d" % i)
            assert log.stats().loop_writes == 0
        assert ops.on_loop("pwrite") == 0, opts


async def test_an_acknowledged_batch_record_is_in_the_kernel_when_append_returns(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options(sync_mode="batch", batch_size=1000)) as log:
        for i in range(50):
            payload = b"in the kernel %04d" % i
            seq = await log.append(payload)
            level = log.level_of(seq)
            assert level is not None and level >= Durability.OS
            # Read the file as another process would: the bytes are there, unsynced or not.
            (segment,) = backend.segments()
            assert payload in backend.read(segment)
        assert log.stats().loop_writes > 0


async def test_batch_mode_never_has_batch_size_acknowledged_records_unsynced(backend: Backend) -> None:
    batch_size = 10
    opts = backend.options(sync_mode="batch", batch_size=batch_size, batch_interval=3600)
    async with asyncwal.open(backend.path, **opts) as log:
        for _ in range(95):
            await log.append(b"x" * 40)
            assert log.last_seq - log.durable_seq < batch_size
        assert log.stats().loop_writes > 0


async def test_a_slow_loop_write_turns_the_path_off_then_on_again(caplog: pytest.LogCaptureFixture) -> None:
    ops = ThreadsSeen(slow=3, delay=0.02)
    opts = {"slow_loop_write_seconds": 0.005, "loop_write_backoff_seconds": 0.3}
    caplog.set_level(logging.INFO, logger="asyncwal")
    async with asyncwal.open("/mem/wal", sync_mode="batch", batch_size=1000, file_ops=ops, **opts) as log:
        await log.append(b"one slow write alone: preemption as likely as throttling")
        assert not [r for r in caplog.records if r.levelno == logging.WARNING]
        await log.append(b"two in a row")
        assert log.stats().loop_writes == 2
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "page-cache writes on the event loop" in warnings[0].getMessage()
        for i in range(5):  # now on the I/O thread
            await log.append(b"%d" % i)
        assert log.stats().loop_writes == 2
        assert ops.on_loop("pwrite") == 2
        await asyncio.sleep(0.35)  # the backoff is a span of time: let it pass
        await log.append(b"back on the loop (slow once more: not enough)")
        await log.append(b"and fast")
        assert log.stats().loop_writes == 4
        assert any("resume" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


async def test_a_loop_write_that_fails_fails_the_log_and_loses_nothing_acknowledged(backend: Backend) -> None:
    ops = backend.faulty()
    opts = backend.options(file_ops=ops, sync_mode="batch", batch_size=1000, batch_interval=3600)
    async with asyncwal.open(backend.path, **opts) as log:
        await log.append(b"one", durability=Durability.DISK)
        ops.inject("pwrite")  # EIO on the next write: a loop-thread one
        with pytest.raises(asyncwal.LogFailedError):
            await log.append(b"two")
        assert log.failed
        assert log.stats().loop_writes == 0
    async with asyncwal.open(backend.path, **backend.options()) as log:
        assert [r.data async for r in log.replay()][:1] == [b"one"]


# -- the blocking-call rule itself (tests/conftest.py) --------------------------------------


async def test_the_rule_fails_an_fsync_or_a_stray_write_from_asyncwal_on_the_loop(tmp_path: Path) -> None:
    ops = OsFileOps()
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)  # the test's own I/O: allowed
    try:
        with pytest.raises(BlockingError):
            ops.sync(fd)  # asyncwal code, on the loop, not on the write path
        with pytest.raises(BlockingError):
            ops.pwrite(fd, b"x", 0)
        with pytest.raises(BlockingError):
            ops.pwritev_sync(fd, [b"x"], 0)
        # The same calls off the loop are fine.
        done = threading.Event()

        def elsewhere() -> None:
            ops.pwrite(fd, b"x", 0)
            ops.sync(fd)
            done.set()

        await asyncio.to_thread(elsewhere)
        assert done.is_set()
    finally:
        os.close(fd)


async def test_the_rule_lets_the_guarded_write_through(tmp_path: Path) -> None:
    async with asyncwal.open(tmp_path / "wal", sync_mode="none") as log:
        for i in range(10):
            await log.append(b"%d" % i)
            await log.wait_for(i + 1, Durability.OS)
        assert log.stats().loop_writes > 0
