"""Every error of the contract, and the failed state after an I/O error."""

from __future__ import annotations

import asyncio
import errno
import subprocess
import sys
import threading
from typing import TYPE_CHECKING

import pytest

import asyncwal
from asyncwal import Durability

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import Backend


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"sync_mode": "always"}, ValueError),
        ({"recovery": "yolo"}, ValueError),
        ({"batch_size": 0}, ValueError),
        ({"batch_size": 1.5}, TypeError),
        ({"batch_interval": 0}, ValueError),
        ({"batch_interval": float("nan")}, ValueError),
        ({"batch_interval": float("inf")}, ValueError),
        ({"segment_size": 4095}, ValueError),
        ({"max_record_size": 0}, ValueError),
        ({"max_pending_bytes": -1}, ValueError),
        ({"preallocate": "yes"}, TypeError),
        ({"no_such_option": 1}, TypeError),
    ],
)
def test_bad_options_fail_at_the_call(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        asyncwal.open("unused", **kwargs)


async def test_bad_records_fail_at_the_call_before_queueing(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options(max_record_size=10, max_batch_bytes=40)) as log:
        with pytest.raises(TypeError, match="bytes-like"):
            log.append("text")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            log.append(None)  # type: ignore[arg-type]
        with pytest.raises(asyncwal.RecordTooLargeError) as exc_info:
            log.append(b"x" * 11)
        assert isinstance(exc_info.value, ValueError)
        with pytest.raises(TypeError):
            log.append_batch(b"not-a-list")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            log.append_batch([b"ok", 3])  # type: ignore[list-item]
        with pytest.raises(asyncwal.RecordTooLargeError):
            log.append_batch([b"x" * 11])
        with pytest.raises(asyncwal.RecordTooLargeError):
            log.append_batch([b"x" * 10] * 4)  # 40 bytes of data + 20 of length table
        with pytest.raises(ValueError, match="durability"):
            log.append(b"x", durability=7)  # type: ignore[arg-type]
        assert log.last_seq == 0  # nothing was queued
        assert await log.append(b"fine") == 1


async def test_call_errors(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        await log.append(b"one")
        with pytest.raises(ValueError, match="not been appended"):
            await log.wait_for(2)
        with pytest.raises(ValueError, match="either"):
            log.replay(start=1, from_checkpoint=True)
        with pytest.raises(ValueError, match="cannot truncate"):
            await log.truncate_before(3)
        await log.wait_for(1, Durability.DISK)


async def test_closed_log_raises(backend: Backend) -> None:
    log = await asyncwal.open(backend.path, **backend.options())
    await log.close()
    assert log.closed
    with pytest.raises(asyncwal.LogClosedError):
        log.append(b"x")
    with pytest.raises(asyncwal.LogClosedError):
        await log.sync()
    with pytest.raises(asyncwal.LogClosedError):
        await log.checkpoint()
    with pytest.raises(asyncwal.LogClosedError):
        log.replay()
    await log.close()


async def test_lock_is_exclusive_in_this_process(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()):
        with pytest.raises(asyncwal.LogLockedError):
            await asyncwal.open(backend.path, **backend.options())
    async with asyncwal.open(backend.path, **backend.options()) as log:  # released by close
        assert not log.closed


async def test_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "wal")
    async with asyncwal.open(path):
        code = (
            "import asyncio, asyncwal, sys\n"
            "async def main():\n"
            "    try:\n"
            f"        await asyncwal.open({path!r})\n"
            "    except asyncwal.LogLockedError as e:\n"
            "        print('locked:', e); sys.exit(3)\n"
            "asyncio.run(main())\n"
        )
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdout=subprocess.PIPE)
        out, _ = await proc.communicate()
        assert proc.returncode == 3, out
        assert b"locked" in out


async def test_log_is_bound_to_its_loop(tmp_path: Path) -> None:
    log = await asyncwal.open(str(tmp_path / "wal"))
    errors: list[BaseException] = []

    def other_thread() -> None:
        async def use() -> None:
            log.append(b"x")

        try:
            asyncio.run(use())
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=other_thread)
    t.start()
    await asyncio.get_running_loop().run_in_executor(None, t.join)
    assert len(errors) == 1 and isinstance(errors[0], asyncwal.WrongEventLoopError)
    assert log.last_seq == 0
    await log.close()


@pytest.mark.parametrize("mode", ["sync", "batch", "none"])
async def test_failed_fsync_fails_everyone_and_sticks(backend: Backend, mode: str) -> None:
    ops = backend.faulty()
    opts = backend.options(file_ops=ops, sync_mode=mode, batch_interval=3600, batch_size=10**6)
    log = await asyncwal.open(backend.path, **opts)
    acked = [await log.append(b"before-%d" % i, durability=Durability.DISK) for i in range(3)]
    gate = ops.block("sync")
    ops.inject("sync", errno.EIO)
    waiting_disk = log.append(b"disk", durability=Durability.DISK)
    waiting_os = log.append(b"os", durability=Durability.OS)
    syncing = asyncio.ensure_future(log.sync())
    await gate.wait_entered()
    gate.release()
    for fut in (waiting_disk, syncing):
        with pytest.raises(asyncwal.LogFailedError) as exc_info:
            await fut
        assert isinstance(exc_info.value.__cause__, OSError)
        assert exc_info.value.__cause__.errno == errno.EIO
    if not waiting_os.done() or waiting_os.exception() is not None:
        with pytest.raises(asyncwal.LogFailedError):
            await waiting_os
    assert log.failed and log.durable_seq == 3
    with pytest.raises(asyncwal.LogFailedError):
        log.append(b"after")
    with pytest.raises(asyncwal.LogFailedError):
        await log.sync()
    await log.close()  # does not raise on a failed log, and releases the lock
    ops.clear()
    async with asyncwal.open(backend.path, **backend.options()) as again:
        got = [r.data async for r in again.replay()]
        assert got[:3] == [b"before-%d" % i for i in range(3)]
        assert acked == [1, 2, 3]


async def test_failed_write_fails_pending_including_os_waiters(backend: Backend) -> None:
    ops = backend.faulty()
    log = await asyncwal.open(backend.path, **backend.options(file_ops=ops, sync_mode="batch"))
    assert await log.append(b"ok") == 1
    ops.inject("pwrite", errno.ENOSPC, times=None)
    futs = [log.append(b"doomed-%d" % i) for i in range(5)]
    results = await asyncio.gather(*futs, return_exceptions=True)
    assert all(isinstance(r, asyncwal.LogFailedError) for r in results)
    causes = {id(r) for r in results}
    assert len(causes) == 5  # each caller its own exception object
    assert all(isinstance(r, BaseException) and isinstance(r.__cause__, OSError) for r in results)
    assert log.failed
    await log.close()
    ops.clear()
    async with asyncwal.open(backend.path, **backend.options()) as again:
        assert [r.data async for r in again.replay()][:1] == [b"ok"]


async def test_failure_during_close_is_raised(backend: Backend) -> None:
    ops = backend.faulty()
    log = await asyncwal.open(backend.path, **backend.options(file_ops=ops, sync_mode="none"))
    fut = log.append(b"x")
    ops.inject("sync", errno.EIO, times=None)
    with pytest.raises(asyncwal.LogFailedError):
        await log.close()
    assert await fut == 1  # MEMORY-level ack happened before the failure
    assert log.failed
    ops.clear()
    async with asyncwal.open(backend.path, **backend.options()):
        pass  # the lock was released


async def test_unclosed_log_warns(tmp_path: Path) -> None:
    log = await asyncwal.open(str(tmp_path / "wal"))
    await log.append(b"x")
    with pytest.warns(ResourceWarning, match="unclosed"):
        log.__del__()
    await log.close()


@pytest.mark.parametrize("op", ["rename", "unlink", "sync_dir"])
async def test_failed_truncation_fails_the_caller_instead_of_hanging(backend: Backend, op: str) -> None:
    ops = backend.faulty()
    log = await asyncwal.open(backend.path, **backend.options(file_ops=ops, segment_size=4096))
    for _ in range(100):
        await log.append(b"t" * 100)
    ops.inject(op, errno.EIO)
    with pytest.raises(asyncwal.LogFailedError) as exc_info:
        await log.truncate_before(log.last_seq)
    assert isinstance(exc_info.value.__cause__, OSError)
    assert log.failed
    await log.close()
    ops.clear()
    async with asyncwal.open(backend.path, **backend.options(segment_size=4096)) as again:
        assert again.last_seq == 100  # every acknowledged record is still there


async def test_failed_checkpoint_fails_the_caller(backend: Backend) -> None:
    ops = backend.faulty()
    log = await asyncwal.open(backend.path, **backend.options(file_ops=ops))
    await log.append(b"x")
    ops.inject("rename", errno.EIO)
    with pytest.raises(asyncwal.LogFailedError):
        await log.checkpoint(b"cp")
    await log.close()
    ops.clear()
    async with asyncwal.open(backend.path, **backend.options()) as again:
        assert again.last_checkpoint is None
        assert again.last_seq == 1


async def test_nothing_is_written_after_a_failed_fsync_even_if_already_queued(backend: Backend) -> None:
    ops = backend.faulty()
    log = await asyncwal.open(backend.path, **backend.options(file_ops=ops))
    await log.append(b"durable")
    gate = ops.block("sync")
    ops.inject("sync", errno.EIO)
    # 200 records at once with the I/O thread idle: sync mode hands them over as two groups
    # in the same step, the second queued behind the first.
    futs = [log.append(b"r%d" % i) for i in range(200)]
    await gate.wait_entered()  # the first group is in its fsync, which will fail
    writes_before_failure = ops.calls["pwrite"]
    gate.release()
    results = await asyncio.gather(*futs, return_exceptions=True)
    assert all(isinstance(r, asyncwal.LogFailedError) for r in results)
    assert ops.calls["pwrite"] == writes_before_failure  # the queued group was never written
    assert log.failed and log.durable_seq == 1
    await log.close()
    ops.clear()
    async with asyncwal.open(backend.path, **backend.options()) as again:
        assert [r.data async for r in again.replay()][0] == b"durable"  # noqa: RUF015
        assert again.last_seq <= 101  # seq 1, and at most the first group (2..101), outcome unknown
