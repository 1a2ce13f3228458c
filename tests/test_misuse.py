"""Misuse gets a clear error at the call and changes nothing: a second event loop on the log's
thread, a file_ops that is not one, seqs that were never appended, and an open() cancelled
while recovery runs (it must not leave the directory locked)."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import TYPE_CHECKING

import pytest
import uvloop

import asyncwal
from asyncwal.testing import FaultyFileOps, MemoryFileOps

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.conftest import Backend


@pytest.mark.parametrize(
    "new_loop", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)
def test_append_from_a_second_loop_on_the_same_thread_is_refused(
    tmp_path: Path, new_loop: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    first, second = new_loop(), new_loop()
    try:

        async def open_and_append() -> asyncwal.Log:
            log = await asyncwal.open(tmp_path / "wal")
            await log.append(b"from the right loop")
            return log

        log = first.run_until_complete(open_and_append())

        async def from_the_other_loop() -> None:
            with pytest.raises(asyncwal.WrongEventLoopError):
                log.append(b"from the wrong loop")
            with pytest.raises(asyncwal.WrongEventLoopError):
                log.append_batch([b"x"])
            with pytest.raises(asyncwal.WrongEventLoopError):
                await log.sync()

        second.run_until_complete(from_the_other_loop())
        assert log.last_seq == 1  # nothing was accepted
        first.run_until_complete(log.close())

        async def reopen() -> list[bytes]:
            async with asyncwal.open(tmp_path / "wal") as again:
                return [r.data async for r in again.replay()]

        assert second.run_until_complete(reopen()) == [b"from the right loop"]
    finally:
        first.close()
        second.close()


def test_file_ops_that_is_not_one_is_a_type_error_at_the_call(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="file_ops must be a FileOps"):
        asyncwal.open(tmp_path / "wal", file_ops="x")
    with pytest.raises(TypeError, match="lacks"):
        asyncwal.Options(file_ops=object())  # type: ignore[arg-type]


async def test_seqs_never_appended(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        await log.append(b"one")
        for seq in (0, -5, 2):
            with pytest.raises(ValueError, match="has not been appended"):
                await log.wait_for(seq)
            assert log.level_of(seq) is None
        assert log.level_of(1) is asyncwal.Durability.DISK


def _io_thread(path: str, before: set[threading.Thread]) -> threading.Thread:
    """The I/O thread of the log at ``path`` started since ``before`` was taken."""
    (thread,) = [t for t in threading.enumerate() if t.name == f"asyncwal {path}" and t not in before]
    return thread


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_cancelled_open_releases_the_directory_once_recovery_is_done(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        await log.append(b"kept")
    fds = _open_fds()
    faulty = FaultyFileOps(backend.memory)
    gate = faulty.block("listdir")  # recovery's first step, after the lock is taken
    before = set(threading.enumerate())
    opening = asyncio.ensure_future(asyncwal.open(backend.path, file_ops=faulty))
    await gate.wait_entered()
    io = _io_thread(backend.path, before)
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    gate.release()  # recovery finishes on the I/O thread; then the lock is released and the thread ends
    await asyncio.to_thread(io.join, 30)
    assert not io.is_alive()
    assert _open_fds() == fds
    async with asyncwal.open(backend.path, **backend.options()) as log:  # not LogLockedError
        assert [r.data async for r in log.replay()] == [b"kept"]


async def test_log_append_is_the_engines_own_method(backend: Backend) -> None:
    import inspect

    from asyncwal._engine import Engine

    assert inspect.signature(asyncwal.Log.append) == inspect.signature(Engine.append)
    async with asyncwal.open(backend.path, **backend.options()) as log:
        assert log.append.__func__ is Engine.append  # type: ignore[attr-defined]


class DirSyncs(MemoryFileOps):
    """MemoryFileOps that notes every directory sync."""

    def __init__(self) -> None:
        super().__init__()
        self.dir_syncs: list[str] = []

    def sync_dir(self, path: str) -> None:
        self.dir_syncs.append(path)
        super().sync_dir(path)


async def test_a_new_log_directory_is_made_durable_in_its_parent() -> None:
    ops = DirSyncs()
    ops.makedirs("/data")
    async with asyncwal.open("/data/a/b/wal", file_ops=ops) as log:
        await log.append(b"x")
    # Each directory created gets its entry synced in its parent, top down, before use.
    assert ops.dir_syncs[:3] == ["/data", "/data/a", "/data/a/b"]
    ops.dir_syncs.clear()
    async with asyncwal.open("/data/a/b/wal", file_ops=ops):
        pass  # an existing directory needs nothing
    assert "/data/a/b" not in ops.dir_syncs


async def test_open_refuses_a_sharded_logs_directory(backend: Backend) -> None:
    sharded = await asyncwal.open_sharded(backend.path, **backend.options())
    await sharded.append(b"in shard 0")
    await sharded.close()
    before = backend.names()
    with pytest.raises(ValueError, match="holds a sharded log"):
        await asyncwal.open(backend.path, **backend.options())
    assert backend.names() == before  # nothing created beside the shards
