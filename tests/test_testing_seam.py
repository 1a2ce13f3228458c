"""Tests of the test seam itself (asyncwal.testing), independent of the engine.

The POSIX-behaviour tests run against both MemoryFileOps and the real OsFileOps, so the
in-memory file system is checked against the real one, not against our own idea of it.
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import threading
from typing import TYPE_CHECKING

import pytest

from asyncwal._errors import LogLockedError
from asyncwal._fileops import (
    FileKind,
    FileOps,
    LockState,
    NotRegularFileError,
    OsFileOps,
    read_all,
    write_all,
)
from asyncwal.testing import FaultyFileOps, MemoryFileOps, PowerLossFileOps

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from .conftest import FsRoot


def _structural_typing_check() -> None:
    """mypy checks that the doubles satisfy the FileOps protocol."""
    ops: FileOps = MemoryFileOps()
    ops = FaultyFileOps(ops)
    del ops


# -- POSIX semantics, both backends ------------------------------------------------------


def test_makedirs_listdir_exists(fs: FsRoot) -> None:
    ops, root = fs
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


def test_open_create_and_exclusive(fs: FsRoot) -> None:
    ops, root = fs
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
    for opener in (ops.open, ops.open_readonly, ops.lock, ops.lock_probe):
        with pytest.raises(NotRegularFileError) as info:
            opener(root)
        assert info.value.kind is FileKind.DIRECTORY
        assert info.value.filename == root
    with pytest.raises(FileExistsError):
        ops.open(root, create=True, exclusive=True)


def test_pwrite_gap_is_zero_filled_and_pread_is_short_at_eof(fs: FsRoot) -> None:
    ops, root = fs
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


def test_truncate_shrinks_and_grows_with_zeros(fs: FsRoot) -> None:
    ops, root = fs
    fd = ops.open(os.path.join(root, "f"), create=True)
    write_all(ops, fd, b"0123456789", 0)
    ops.truncate(fd, 4)
    assert read_all(ops, fd) == b"0123"
    ops.truncate(fd, 8)
    assert read_all(ops, fd) == b"0123\0\0\0\0"
    ops.sync(fd)
    ops.close(fd)


def test_readonly_descriptor_refuses_writes(fs: FsRoot) -> None:
    ops, root = fs
    path = os.path.join(root, "f")
    ops.close(ops.open(path, create=True))
    fd = ops.open_readonly(path)
    with pytest.raises(OSError, match=r"\[Errno") as exc_info:
        ops.pwrite(fd, b"x", 0)
    assert exc_info.value.errno == errno.EBADF
    ops.close(fd)


def test_closed_descriptor_is_ebadf(fs: FsRoot) -> None:
    ops, root = fs
    fd = ops.open(os.path.join(root, "f"), create=True)
    ops.close(fd)
    with pytest.raises(OSError, match="Bad file descriptor") as exc_info:
        ops.pread(fd, 1, 0)
    assert exc_info.value.errno == errno.EBADF


def test_rename_replaces_atomically_and_descriptors_follow_the_inode(fs: FsRoot) -> None:
    ops, root = fs
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


def test_unlink_keeps_open_descriptors_working(fs: FsRoot) -> None:
    ops, root = fs
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


def test_lock_is_exclusive_until_unlocked(fs: FsRoot) -> None:
    ops, root = fs
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


def test_lock_probe_sees_the_holder_and_changes_nothing(fs: FsRoot) -> None:
    ops, root = fs
    path = os.path.join(root, "LOCK")
    assert ops.lock_probe(path) == LockState(exists=False, held=False, pid=None)
    assert not ops.exists(path)  # the probe never creates the file
    handle = ops.lock(path)
    fd = ops.open_readonly(path)
    held_bytes = read_all(ops, fd)
    assert ops.lock_probe(path) == LockState(exists=True, held=True, pid=os.getpid())
    assert read_all(ops, fd) == held_bytes  # nothing written
    with pytest.raises(LogLockedError, match=f"pid {os.getpid()}"):
        ops.lock(path)  # the probe left the holder's lock alone
    ops.unlock(handle)
    assert ops.lock_probe(path) == LockState(exists=True, held=False, pid=None)
    # A holder that died with the log open leaves its pid in a free lock.
    ops.close(fd)
    fd = ops.open(path)
    write_all(ops, fd, b"4242\n", 0)
    ops.close(fd)
    assert ops.lock_probe(path) == LockState(exists=True, held=False, pid=4242)
    again = ops.lock(path)  # the probe released its instant lock
    ops.unlock(again)


def _special(ops: FileOps, path: str, kind: FileKind, target: str) -> None:
    """Put a symbolic link (to ``target``) or a FIFO at ``path``, on either backend."""
    if isinstance(ops, MemoryFileOps):
        ops.add_special(path, kind)
    elif kind is FileKind.SYMLINK:
        os.symlink(target, path)
    else:
        os.mkfifo(path)


@pytest.mark.parametrize("kind", [FileKind.SYMLINK, FileKind.OTHER])
def test_special_names_are_refused_never_followed_or_waited_on(fs: FsRoot, kind: FileKind) -> None:
    ops, root = fs
    target = os.path.join(root, "target")
    fd = ops.open(target, create=True)
    write_all(ops, fd, b"precious", 0)
    ops.close(fd)
    path = os.path.join(root, "name")
    _special(ops, path, kind, target)
    assert ops.kind(path) is kind
    assert ops.exists(path)
    assert sorted(ops.listdir(root)) == ["name", "target"]
    attempts: dict[str, Callable[[], object]] = {
        "open": lambda: ops.open(path),
        "open create": lambda: ops.open(path, create=True),
        "open_readonly": lambda: ops.open_readonly(path),
        "lock": lambda: ops.lock(path),
        "lock_probe": lambda: ops.lock_probe(path),
    }
    for what, attempt in attempts.items():
        with pytest.raises(NotRegularFileError) as info:
            attempt()
        assert info.value.kind is kind, what
        assert info.value.filename == path
        assert "not a regular file" in str(info.value)
    with pytest.raises(FileExistsError):
        ops.open(path, create=True, exclusive=True)
    fd = ops.open_readonly(target)
    assert read_all(ops, fd) == b"precious"  # nothing reached the target
    ops.close(fd)
    ops.rename(path, os.path.join(root, "moved"))
    assert ops.kind(os.path.join(root, "moved")) is kind
    ops.unlink(os.path.join(root, "moved"))
    assert ops.kind(os.path.join(root, "moved")) is FileKind.MISSING
    assert ops.listdir(root) == ["target"]


def test_kind_of_files_directories_and_missing_names(fs: FsRoot) -> None:
    ops, root = fs
    fd = ops.open(os.path.join(root, "f"), create=True)
    ops.close(fd)
    assert ops.kind(os.path.join(root, "f")) is FileKind.REGULAR
    assert ops.kind(root) is FileKind.DIRECTORY
    assert ops.kind(os.path.join(root, "nope")) is FileKind.MISSING
    assert ops.kind(os.path.join(root, "f", "under-a-file")) is FileKind.MISSING


def test_dangling_symlink_is_not_created_through(tmp_path: Path) -> None:
    ops = OsFileOps()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    assert ops.exists(str(link))  # the name is taken, though it leads nowhere
    attempts: list[Callable[[], object]] = [
        lambda: ops.open(str(link), create=True),
        lambda: ops.lock(str(link)),
    ]
    for attempt in attempts:
        with pytest.raises(NotRegularFileError):
            attempt()
    assert not (tmp_path / "nowhere").exists()


def test_devices_and_sockets_are_named_precisely(tmp_path: Path) -> None:
    ops = OsFileOps()
    with pytest.raises(NotRegularFileError, match="character device") as info:
        ops.open_readonly("/dev/null")
    assert info.value.kind is FileKind.OTHER
    import socket

    path = str(tmp_path / "sock")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(path)
        assert ops.kind(path) is FileKind.OTHER
        with pytest.raises(NotRegularFileError, match="socket"):
            ops.open(path)
        with pytest.raises(NotRegularFileError, match="socket"):
            ops.open_readonly(path)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(NotRegularFileError, match="FIFO"):
        ops.open_readonly(str(tmp_path / "fifo"))


def test_not_regular_file_error_pickles() -> None:
    import pickle

    err = NotRegularFileError("/d/LOCK", FileKind.OTHER, "FIFO")
    again = pickle.loads(pickle.dumps(err))
    assert (type(again), again.kind, again.filename, str(again)) == (
        NotRegularFileError,
        FileKind.OTHER,
        "/d/LOCK",
        str(err),
    )


async def test_open_reader_refuses_special_names(fs: FsRoot) -> None:
    ops, root = fs
    path = os.path.join(root, "fifo")
    await asyncio.to_thread(_special, ops, path, FileKind.OTHER, "")
    reader = ops.open_reader(path)
    with pytest.raises(NotRegularFileError):
        await reader.read(1)  # a FIFO with no writer: refused, not waited on


def test_memory_add_special_rules() -> None:
    ops = MemoryFileOps()
    ops.makedirs("/w")
    with pytest.raises(ValueError, match="symbolic link or OTHER"):
        ops.add_special("/w/x", FileKind.REGULAR)
    ops.add_special("/w/x")
    with pytest.raises(FileExistsError):
        ops.add_special("/w/x", FileKind.SYMLINK)
    with pytest.raises(NotADirectoryError):
        ops.open("/w/x/y", create=True)
    with pytest.raises(FileExistsError):
        ops.makedirs("/w/x")
    fd = ops.open("/w/f", create=True)
    ops.close(fd)
    ops.rename("/w/x", "/w/f")  # a special name replaces a file, as rename(2) does
    assert ops.kind("/w/f") is FileKind.OTHER
    assert ops.files("/w") == {}


async def test_open_reader_reads_and_seeks(fs: FsRoot) -> None:
    ops, root = fs
    path = os.path.join(root, "f")

    def setup() -> None:  # file I/O stays off the loop thread (blockbuster watches asyncwal's)
        fd = ops.open(path, create=True)
        write_all(ops, fd, b"0123456789", 0)
        ops.close(fd)

    await asyncio.to_thread(setup)
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


def test_faulty_forwards_and_fails_kind_and_lock_probe(faulty: FaultyFileOps) -> None:
    assert faulty.kind("/w") is FileKind.DIRECTORY
    assert faulty.lock_probe("/w/LOCK") == LockState(False, False, None)
    faulty.inject("kind", errno.EIO)
    faulty.inject("lock_probe", errno.EACCES, path_contains="LOCK")
    with pytest.raises(OSError, match="Input/output error"):
        faulty.kind("/w")
    with pytest.raises(PermissionError):
        faulty.lock_probe("/w/LOCK")
    assert faulty.calls["kind"] == 2
    assert faulty.calls["lock_probe"] == 2


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


# -- PowerLossFileOps: the crash model alone ----------------------------------------------------

SEEDS = range(200)


def _outcomes(ops: PowerLossFileOps, at: int | None = None) -> list[dict[str, bytes]]:
    state = ops.state(at)
    return [state.sample(random.Random(seed)) for seed in SEEDS]


def test_powerloss_live_file_system_is_unaffected() -> None:
    ops = PowerLossFileOps()
    ops.makedirs("/w")
    fd = ops.open("/w/f", create=True)
    write_all(ops, fd, b"hello", 0)
    assert ops.read_bytes("/w/f") == b"hello"
    assert ops.crash_points() == 2  # create, write
    assert ops.describe(1) == "#1 create /w/f"
    assert ops.describe(2) == "#2 pwrite /w/f @0 +5"


def test_synced_data_always_survives_and_unsynced_sometimes_does_not() -> None:
    ops = PowerLossFileOps()
    ops.makedirs("/w")
    fd = ops.open("/w/f", create=True)
    ops.pwrite(fd, b"A" * 1000, 0)
    ops.sync(fd)
    ops.sync_dir("/w")
    ops.pwrite(fd, b"B" * 1000, 1000)
    seen = set()
    for image in _outcomes(ops):
        data = image["/w/f"]
        assert data[:1000] == b"A" * 1000  # synced bytes, always
        seen.add(len(data))
    assert 1000 in seen  # the unsynced write was sometimes lost entirely
    assert 2000 in seen  # and sometimes survived
    ops.sync(fd)
    assert all(image["/w/f"] == b"A" * 1000 + b"B" * 1000 for image in _outcomes(ops))


def test_unsynced_overwrite_never_damages_bytes_outside_the_write() -> None:
    """Torn writes and garbage stay inside the written range ("powersafe overwrite")."""
    ops = PowerLossFileOps()
    ops.makedirs("/w")
    fd = ops.open("/w/f", create=True)
    base = bytes(range(256)) * 16  # 4096 bytes, 8 sectors
    ops.pwrite(fd, base, 0)
    ops.sync(fd)
    ops.sync_dir("/w")
    ops.pwrite(fd, b"\xff" * 700, 600)  # covers parts of sectors 1..2
    garbage = False
    for image in _outcomes(ops):
        data = image["/w/f"]
        assert len(data) == 4096
        assert data[:600] == base[:600]
        assert data[1300:] == base[1300:]
        middle = data[600:1300]
        garbage |= any(b not in (0xFF, base[600 + i]) for i, b in enumerate(middle))
    assert garbage  # a torn sector sometimes holds garbage


def test_torn_writes_are_not_always_a_prefix() -> None:
    """Sectors of one unsynced write can land out of order: the later one without the earlier."""
    ops = PowerLossFileOps()
    ops.makedirs("/w")
    fd = ops.open("/w/f", create=True)
    ops.sync(fd)
    ops.sync_dir("/w")
    ops.pwrite(fd, b"\x11" * 512 + b"\x22" * 512, 0)
    patterns = set()
    for image in _outcomes(ops):
        data = image["/w/f"]
        if len(data) == 1024:
            patterns.add((data[:512] == b"\x11" * 512, data[512:] == b"\x22" * 512))
    assert (False, True) in patterns  # second sector on disk, first not
    assert (True, True) in patterns
    assert (True, False) in patterns


def test_created_file_name_is_durable_only_after_sync_dir() -> None:
    ops = PowerLossFileOps()
    ops.makedirs("/w")
    fd = ops.open("/w/f", create=True)
    ops.pwrite(fd, b"data", 0)
    ops.sync(fd)  # fdatasync does not make the name durable
    present = [("/w/f" in image) for image in _outcomes(ops)]
    assert any(present)
    assert not all(present)
    assert all(image["/w/f"] == b"data" for image in _outcomes(ops) if "/w/f" in image)
    ops.sync_dir("/w")
    assert all(image == {"/w/f": b"data"} for image in _outcomes(ops))


def test_rename_without_sync_dir_is_sometimes_lost() -> None:
    ops = PowerLossFileOps({"/w/META": b"old"})
    fd = ops.open("/w/META.tmp", create=True)
    ops.pwrite(fd, b"new", 0)
    ops.sync(fd)
    ops.sync_dir("/w")
    ops.rename("/w/META.tmp", "/w/META")
    metas = {image.get("/w/META") for image in _outcomes(ops)}
    assert metas == {b"old", b"new"}  # atomic per name: never a mix, never missing
    ops.sync_dir("/w")
    assert all(image == {"/w/META": b"new"} for image in _outcomes(ops))


def test_unlink_without_sync_dir_is_sometimes_undone() -> None:
    ops = PowerLossFileOps()
    ops.makedirs("/w")
    fd = ops.open("/w/old", create=True)
    ops.pwrite(fd, b"x", 0)
    ops.sync(fd)
    ops.sync_dir("/w")
    ops.unlink("/w/old")
    present = {("/w/old" in image) for image in _outcomes(ops)}
    assert present == {True, False}
    ops.sync_dir("/w")
    assert all(image == {} for image in _outcomes(ops))


def test_sync_dir_of_another_directory_does_not_help() -> None:
    ops = PowerLossFileOps()
    ops.makedirs("/w/a")
    ops.makedirs("/w/b")
    ops.close(ops.open("/w/a/f", create=True))
    ops.sync_dir("/w/b")
    assert {("/w/a/f" in image) for image in _outcomes(ops)} == {True, False}


def test_unsynced_truncate_leaves_the_old_or_the_new_size() -> None:
    ops = PowerLossFileOps({"/w/f": b"0123456789"})
    fd = ops.open("/w/f")
    ops.truncate(fd, 4)
    # The size change is on disk or not; the dropped bytes may read back as zeros.
    assert {image["/w/f"] for image in _outcomes(ops)} == {b"0123", b"0123456789", b"0123" + bytes(6)}


def test_initial_image_is_durable_and_not_a_crash_point() -> None:
    ops = PowerLossFileOps({"/w/seg": b"abc", "/w/x/y": b"z"})
    assert ops.crash_points() == 0
    assert ops.image(0) == {"/w/seg": b"abc", "/w/x/y": b"z"}
    assert ops.listdir("/w") == ["seg", "x"]


def test_durable_image_is_only_synced_data_under_synced_names() -> None:
    ops = PowerLossFileOps()
    ops.makedirs("/w")
    a = ops.open("/w/a", create=True)
    ops.pwrite(a, b"synced", 0)
    ops.sync(a)
    ops.sync_dir("/w")
    ops.pwrite(a, b"-unsynced", 6)
    b = ops.open("/w/b", create=True)
    ops.pwrite(b, b"named nowhere durable", 0)
    ops.sync(b)
    assert ops.durable_image() == {"/w/a": b"synced"}
    at_sync_dir = 4  # create a, write, sync, sync_dir
    assert ops.describe(at_sync_dir) == "#4 sync_dir /w"
    assert ops.durable_image(at_sync_dir - 1) == {}
    assert ops.image(0) == {}


def test_images_are_deterministic_and_states_match_image() -> None:
    ops = PowerLossFileOps()
    ops.makedirs("/w")
    fds = [ops.open(f"/w/f{i}", create=True) for i in range(3)]
    for i in range(60):
        fd = fds[i % 3]
        ops.pwrite(fd, bytes([i]) * (100 + i * 37), i * 50)
        if i % 7 == 0:
            ops.sync(fd)
        if i % 11 == 0:
            ops.sync_dir("/w")
        if i == 30:
            ops.rename("/w/f1", "/w/g1")
    n = ops.crash_points()
    for at, state in ops.states(range(0, n + 1, 5)):
        first = state.sample(random.Random(f"seed:{at}"))
        assert first == ops.image(at, random.Random(f"seed:{at}"))
        assert first == state.sample(random.Random(f"seed:{at}"))  # sampling does not mutate
    with pytest.raises(ValueError, match="out of order"):
        list(ops.states([3, 2]))


def test_crash_gives_a_file_system_with_every_directory() -> None:
    ops = PowerLossFileOps()
    ops.makedirs("/w/empty")
    ops.makedirs("/w/log")
    ops.close(ops.open("/w/log/f", create=True))
    crashed = ops.crash(0, random.Random(1))
    assert crashed.listdir("/w") == ["empty", "log"]
    assert crashed.listdir("/w/log") == []
    assert not isinstance(crashed, PowerLossFileOps)


def test_powerloss_lock_and_unlock_are_recorded_like_files() -> None:
    ops = PowerLossFileOps()
    ops.makedirs("/w")
    handle = ops.lock("/w/LOCK")
    with pytest.raises(LogLockedError):
        ops.lock("/w/LOCK")
    ops.unlock(handle)
    assert ops.read_bytes("/w/LOCK") == b""
    assert ops.describe(1) == "#1 create /w/LOCK"


def test_describe_names_the_file_as_it_was_called_then() -> None:
    ops = PowerLossFileOps()
    ops.makedirs("/w")
    fd = ops.open("/w/seg.tmp", create=True)
    ops.pwrite(fd, b"header", 0)
    ops.rename("/w/seg.tmp", "/w/seg")
    ops.sync(fd)
    assert [ops.describe(i) for i in range(ops.crash_points() + 1)] == [
        "before the first operation",
        "#1 create /w/seg.tmp",
        "#2 pwrite /w/seg.tmp @0 +6",
        "#3 rename /w/seg.tmp -> /w/seg",
        "#4 sync /w/seg",
    ]
