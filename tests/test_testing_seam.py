"""Tests of the test seam itself (asyncwal.testing), independent of the engine.

The POSIX-behaviour tests run against both MemoryFileOps and the real OsFileOps, so the
in-memory file system is checked against the real one, not against our own idea of it.
"""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from typing import TYPE_CHECKING

import pytest

from asyncwal._errors import LogLockedError
from asyncwal._fileops import FileOps, OsFileOps, read_all, write_all
from asyncwal.testing import FaultyFileOps, MemoryFileOps

if TYPE_CHECKING:
    from pathlib import Path

Backend = tuple[FileOps, str]


@pytest.fixture(params=["memory", "os"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A FileOps and an existing, empty directory in it."""
    root = str(tmp_path / "d")
    ops: FileOps = MemoryFileOps() if request.param == "memory" else OsFileOps()
    ops.makedirs(root)
    return ops, root


def _structural_typing_check() -> None:
    """mypy checks that the doubles satisfy the FileOps protocol."""
    ops: FileOps = MemoryFileOps()
    ops = FaultyFileOps(ops)
    del ops


# -- POSIX semantics, both backends ------------------------------------------------------


def test_makedirs_listdir_exists(backend: Backend) -> None:
    ops, root = backend
    sub = os.path.join(root, "a", "b")
    ops.makedirs(sub)
    ops.makedirs(sub)  # existing is fine
    assert ops.exists(sub)
    assert ops.listdir(root) == ["a"]
    fd = ops.open(os.path.join(sub, "f"), create=True)
    ops.close(fd)
    assert ops.listdir(sub) == ["f"]
    assert not ops.exists(os.path.join(root, "nope"))
    with pytest.raises(FileNotFoundError):
        ops.listdir(os.path.join(root, "nope"))
    with pytest.raises(FileExistsError):
        ops.makedirs(os.path.join(sub, "f"))


def test_open_create_and_exclusive(backend: Backend) -> None:
    ops, root = backend
    path = os.path.join(root, "f")
    with pytest.raises(FileNotFoundError):
        ops.open(path)
    with pytest.raises(FileNotFoundError):
        ops.open(os.path.join(root, "missing-dir", "f"), create=True)
    with pytest.raises(FileNotFoundError):
        ops.open_readonly(path)
    fd = ops.open(path, create=True, exclusive=True)
    ops.close(fd)
    with pytest.raises(FileExistsError):
        ops.open(path, create=True, exclusive=True)
    fd = ops.open(path, create=True)  # existing, not exclusive: fine
    ops.close(fd)
    with pytest.raises(IsADirectoryError):
        ops.open(root)


def test_pwrite_gap_is_zero_filled_and_pread_is_short_at_eof(backend: Backend) -> None:
    ops, root = backend
    fd = ops.open(os.path.join(root, "f"), create=True)
    assert ops.pwrite(fd, b"abc", 0) == 3
    assert ops.pwrite(fd, memoryview(b"xyz"), 6) == 3
    assert ops.size(fd) == 9
    assert ops.pread(fd, 100, 0) == b"abc\0\0\0xyz"
    assert ops.pread(fd, 5, 7) == b"yz"
    assert ops.pread(fd, 5, 50) == b""
    assert ops.pwrite(fd, b"B", 1) == 1  # overwrite in place
    assert read_all(ops, fd) == b"aBc\0\0\0xyz"
    ops.close(fd)


def test_truncate_shrinks_and_grows_with_zeros(backend: Backend) -> None:
    ops, root = backend
    fd = ops.open(os.path.join(root, "f"), create=True)
    write_all(ops, fd, b"0123456789", 0)
    ops.truncate(fd, 4)
    assert read_all(ops, fd) == b"0123"
    ops.truncate(fd, 8)
    assert read_all(ops, fd) == b"0123\0\0\0\0"
    ops.sync(fd)
    ops.close(fd)


def test_readonly_descriptor_refuses_writes(backend: Backend) -> None:
    ops, root = backend
    path = os.path.join(root, "f")
    ops.close(ops.open(path, create=True))
    fd = ops.open_readonly(path)
    with pytest.raises(OSError, match=r"\[Errno") as exc_info:
        ops.pwrite(fd, b"x", 0)
    assert exc_info.value.errno == errno.EBADF
    ops.close(fd)


def test_closed_descriptor_is_ebadf(backend: Backend) -> None:
    ops, root = backend
    fd = ops.open(os.path.join(root, "f"), create=True)
    ops.close(fd)
    with pytest.raises(OSError, match="Bad file descriptor") as exc_info:
        ops.pread(fd, 1, 0)
    assert exc_info.value.errno == errno.EBADF


def test_rename_replaces_atomically_and_descriptors_follow_the_inode(backend: Backend) -> None:
    ops, root = backend
    a, b = os.path.join(root, "a"), os.path.join(root, "b")
    fa = ops.open(a, create=True)
    write_all(ops, fa, b"new", 0)
    fb = ops.open(b, create=True)
    write_all(ops, fb, b"old!", 0)
    ops.rename(a, b)
    assert ops.listdir(root) == ["b"]
    # fb still refers to the replaced file; fa follows its file to the new name.
    assert read_all(ops, fb) == b"old!"
    write_all(ops, fa, b"NEW", 0)
    ro = ops.open_readonly(b)
    assert read_all(ops, ro) == b"NEW"
    for fd in (fa, fb, ro):
        ops.close(fd)
    with pytest.raises(FileNotFoundError):
        ops.rename(a, b)
    ops.sync_dir(root)


def test_unlink_keeps_open_descriptors_working(backend: Backend) -> None:
    ops, root = backend
    path = os.path.join(root, "f")
    fd = ops.open(path, create=True)
    write_all(ops, fd, b"data", 0)
    ops.unlink(path)
    assert not ops.exists(path)
    assert ops.listdir(root) == []
    assert read_all(ops, fd) == b"data"
    ops.close(fd)
    with pytest.raises(FileNotFoundError):
        ops.unlink(path)


def test_lock_is_exclusive_until_unlocked(backend: Backend) -> None:
    ops, root = backend
    path = os.path.join(root, "LOCK")
    handle = ops.lock(path)
    assert ops.exists(path)
    with pytest.raises(LogLockedError):
        ops.lock(path)
    other = ops.lock(os.path.join(root, "OTHER"))  # a different path is independent
    ops.unlock(handle)
    again = ops.lock(path)
    ops.unlock(again)
    ops.unlock(other)


async def test_open_reader_reads_and_seeks(backend: Backend) -> None:
    ops, root = backend
    path = os.path.join(root, "f")
    fd = ops.open(path, create=True)
    write_all(ops, fd, b"0123456789", 0)
    ops.close(fd)
    reader = ops.open_reader(path)
    assert await reader.read(4) == b"0123"
    assert await reader.read(4) == b"4567"
    assert await reader.read(4) == b"89"
    assert await reader.read(4) == b""
    assert await reader.seek(2) == 2
    assert await reader.read(3) == b"234"
    await reader.close()
    missing = ops.open_reader(os.path.join(root, "missing"))
    with pytest.raises(FileNotFoundError):
        await missing.read(1)


# -- MemoryFileOps specifics --------------------------------------------------------------


def test_memory_inspection_helpers_and_image_round_trip() -> None:
    ops = MemoryFileOps()
    ops.write_bytes("/w/x/a", b"AAA")  # creates the directories
    ops.write_bytes("/w/x/b", b"B")
    ops.write_bytes("/w/x/sub/c", b"C")
    assert ops.files("/w/x") == {"a": b"AAA", "b": b"B"}
    assert ops.read_bytes("/w/x/sub/c") == b"C"
    fd = ops.open("/w/x/a")
    ops.write_bytes("/w/x/a", b"Z")  # same inode: an open descriptor sees the damage
    assert read_all(ops, fd) == b"Z"
    ops.close(fd)
    copy = MemoryFileOps.from_image(ops.snapshot())
    assert copy.snapshot() == {"/w/x/a": b"Z", "/w/x/b": b"B", "/w/x/sub/c": b"C"}
    assert copy.listdir("/w/x") == ["a", "b", "sub"]
    with pytest.raises(FileNotFoundError):
        ops.read_bytes("/w/x/nope")


def test_memory_paths_are_normalized() -> None:
    ops = MemoryFileOps()
    ops.makedirs("/w//x/")
    fd = ops.open("/w/x/../x/f", create=True)
    ops.close(fd)
    assert ops.exists("/w/x/f")
    assert ops.listdir("/w") == ["x"]


def test_memory_is_thread_safe() -> None:
    """Concurrent writers in threads: every write lands, none is lost to a race."""
    ops = MemoryFileOps()
    ops.makedirs("/w")
    fd = ops.open("/w/f", create=True)
    n_threads, per_thread = 8, 300
    barrier = threading.Barrier(n_threads)

    def writer(t: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            ops.pwrite(fd, bytes([t + 1]), t * per_thread + i)
            ops.pread(fd, 1, 0)
            ops.size(fd)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert read_all(ops, fd) == b"".join(bytes([t + 1]) * per_thread for t in range(n_threads))


# -- FaultyFileOps ----------------------------------------------------------------------------


@pytest.fixture
def faulty() -> FaultyFileOps:
    ops = FaultyFileOps(MemoryFileOps())
    ops.makedirs("/w")
    return ops


def test_faulty_defaults_to_the_real_file_system(tmp_path: Path) -> None:
    ops = FaultyFileOps()
    assert isinstance(ops.base, OsFileOps)
    fd = ops.open(str(tmp_path / "f"), create=True)
    write_all(ops, fd, b"real", 0)
    ops.close(fd)
    assert (tmp_path / "f").read_bytes() == b"real"


def test_inject_fires_after_n_calls_then_stops(faulty: FaultyFileOps) -> None:
    fd = faulty.open("/w/f", create=True)
    fault = faulty.inject("pwrite", after=1)
    faulty.pwrite(fd, b"a", 0)
    with pytest.raises(OSError, match="Input/output error") as exc_info:
        faulty.pwrite(fd, b"b", 1)
    assert exc_info.value.errno == errno.EIO
    faulty.pwrite(fd, b"c", 1)
    assert faulty.pread(fd, 10, 0) == b"ac"  # the failed write did not reach the file
    assert (fault.seen, fault.fired) == (3, 1)
    assert faulty.calls["pwrite"] == 3


def test_inject_forever_and_remove(faulty: FaultyFileOps) -> None:
    fd = faulty.open("/w/f", create=True)
    fault = faulty.inject("sync", errno.EIO, times=None)
    for _ in range(3):
        with pytest.raises(OSError, match="Input/output error"):
            faulty.sync(fd)
    fault.remove()
    faulty.sync(fd)
    assert fault.fired == 3


def test_inject_filters_on_descriptor_path(faulty: FaultyFileOps) -> None:
    seg = faulty.open("/w/0001.wal", create=True)
    meta = faulty.open("/w/META", create=True)
    faulty.inject("sync", times=None, path_contains=".wal")
    faulty.sync(meta)
    with pytest.raises(OSError, match="Input/output error"):
        faulty.sync(seg)
    faulty.close(seg)
    # A new descriptor with a reused number must not inherit the old path.
    faulty.sync(meta)


def test_inject_enospc_on_create_and_errors_on_dir_ops(faulty: FaultyFileOps) -> None:
    faulty.inject("open", errno.ENOSPC, path_contains=".tmp")
    with pytest.raises(OSError, match="No space left on device") as exc_info:
        faulty.open("/w/seg.tmp", create=True)
    assert exc_info.value.errno == errno.ENOSPC
    assert not faulty.exists("/w/seg.tmp")
    faulty.close(faulty.open("/w/seg.tmp", create=True))
    faulty.inject("rename")
    with pytest.raises(OSError, match="Input/output error"):
        faulty.rename("/w/seg.tmp", "/w/seg")
    assert faulty.listdir("/w") == ["seg.tmp"]
    faulty.inject("sync_dir")
    with pytest.raises(OSError, match="Input/output error"):
        faulty.sync_dir("/w")
    faulty.sync_dir("/w")
    faulty.inject("unlink", path_contains="seg")
    with pytest.raises(OSError, match="Input/output error"):
        faulty.unlink("/w/seg.tmp")
    assert faulty.exists("/w/seg.tmp")


def test_short_write_then_retry_completes(faulty: FaultyFileOps) -> None:
    fd = faulty.open("/w/f", create=True)
    fault = faulty.inject("pwrite", short=3)
    write_all(faulty, fd, b"0123456789", 0)
    assert faulty.pread(fd, 100, 0) == b"0123456789"
    assert faulty.calls["pwrite"] == 2
    assert fault.fired == 1


def test_short_write_then_error(faulty: FaultyFileOps) -> None:
    fd = faulty.open("/w/f", create=True)
    faulty.inject("pwrite", errno.ENOSPC, short=4, times=2)
    with pytest.raises(OSError, match="No space left on device"):
        write_all(faulty, fd, b"0123456789", 0)
    assert faulty.pread(fd, 100, 0) == b"0123"
    assert faulty.calls["pwrite"] == 2


def test_short_write_of_zero_bytes_is_an_error_for_write_all(faulty: FaultyFileOps) -> None:
    fd = faulty.open("/w/f", create=True)
    faulty.inject("pwrite", None, short=0)
    with pytest.raises(OSError, match="write returned 0 bytes"):
        write_all(faulty, fd, b"abc", 0)


def test_inject_rejects_nonsense(faulty: FaultyFileOps) -> None:
    with pytest.raises(ValueError, match="only applies to pwrite"):
        faulty.inject("sync", short=1)
    with pytest.raises(ValueError, match="give an error"):
        faulty.inject("pwrite", None)


def test_close_fault_still_releases_the_descriptor(faulty: FaultyFileOps) -> None:
    fd = faulty.open("/w/f", create=True)
    faulty.inject("close")
    with pytest.raises(OSError, match="Input/output error"):
        faulty.close(fd)
    with pytest.raises(OSError, match="Bad file descriptor"):
        faulty.size(fd)


def test_unlock_fault_keeps_the_path_filter(faulty: FaultyFileOps) -> None:
    handle = faulty.lock("/w/LOCK")
    faulty.inject("unlock", path_contains="LOCK")
    with pytest.raises(OSError, match="Input/output error"):
        faulty.unlock(handle)
    faulty.unlock(handle)  # the retry still knows the path, and the lock is released
    faulty.unlock(faulty.lock("/w/LOCK"))


def test_clear_removes_faults(faulty: FaultyFileOps) -> None:
    fd = faulty.open("/w/f", create=True)
    faulty.inject("sync", times=None)
    faulty.clear()
    faulty.sync(fd)
    assert faulty.calls["sync"] == 1
    assert faulty.calls["open"] == 1


async def test_block_parks_calls_until_release(faulty: FaultyFileOps) -> None:
    loop = asyncio.get_running_loop()
    fd = faulty.open("/w/f", create=True)
    gate = faulty.block("sync")
    task = loop.run_in_executor(None, faulty.sync, fd)
    await gate.wait_entered()
    assert gate.entered == 1
    assert not task.done()
    # Other operations are not held up by the parked call.
    assert faulty.pwrite(fd, b"x", 0) == 1
    gate.release()
    await task
    assert gate.released
    faulty.sync(fd)  # released gates let later calls through
    assert gate.entered == 2


async def test_block_honours_after_and_path_filter(faulty: FaultyFileOps) -> None:
    loop = asyncio.get_running_loop()
    a = faulty.open("/w/a.wal", create=True)
    meta = faulty.open("/w/META", create=True)
    gate = faulty.block("sync", path_contains=".wal", after=1)
    faulty.sync(meta)  # does not match
    faulty.sync(a)  # matching, but the first one passes
    assert gate.entered == 0
    first = loop.run_in_executor(None, faulty.sync, a)
    second = loop.run_in_executor(None, faulty.sync, a)
    await gate.wait_entered(2)
    assert not first.done()
    assert not second.done()
    gate.release()
    await asyncio.gather(first, second)


async def test_block_then_fail(faulty: FaultyFileOps) -> None:
    """A gate parks the call first; a fault on the same call fires once it is released."""
    loop = asyncio.get_running_loop()
    fd = faulty.open("/w/f", create=True)
    gate = faulty.block("sync")
    faulty.inject("sync")
    task = loop.run_in_executor(None, faulty.sync, fd)
    await gate.wait_entered()
    gate.release()
    with pytest.raises(OSError, match="Input/output error"):
        await task


async def test_wait_entered_returns_at_once_if_already_entered(faulty: FaultyFileOps) -> None:
    loop = asyncio.get_running_loop()
    fd = faulty.open("/w/f", create=True)
    gate = faulty.block("sync")
    task = loop.run_in_executor(None, faulty.sync, fd)
    await gate.wait_entered()
    await gate.wait_entered()  # does not wait for a second call
    gate.release()
    await task


async def test_clear_releases_parked_calls(faulty: FaultyFileOps) -> None:
    loop = asyncio.get_running_loop()
    fd = faulty.open("/w/f", create=True)
    gate = faulty.block("pwrite")
    task = loop.run_in_executor(None, faulty.pwrite, fd, b"abc", 0)
    await gate.wait_entered()
    faulty.clear()
    assert await task == 3
    assert gate.released
