"""The file-operations seam: the only place where asyncwal touches the operating system's files.

Every read, write, sync, rename, unlink and lock of the engine, of recovery and of the
command line goes through a :class:`FileOps`. :class:`OsFileOps` is the real one;
:mod:`asyncwal._fileops_wrappers` has the read-only, dry-run and salvaging wrappers
the command line uses, and :mod:`asyncwal.testing` an in-memory one and a fault-injecting
one. Everything here is synchronous and is called from the log's own I/O thread, never from
the event-loop thread (except ``open_reader``'s async reads).

Contract of each method is that of the POSIX call it is named after, with these additions,
which every implementation keeps:

* **Nothing is followed, nothing hangs.** ``open``, ``open_readonly``, ``lock`` and
  ``lock_probe`` refuse a name that is not a regular file (a directory, a symbolic link, a
  FIFO, a device or a socket) with :class:`NotRegularFileError`, without following a
  symbolic link and without blocking on a FIFO: a hostile directory can make asyncwal fail
  with a clear error, never write through a link or wait forever (for the real file system,
  :mod:`asyncwal._fileops_regular` does this). ``kind`` says what a name is without
  following or opening it; ``exists`` is true for any name, a dangling symbolic link included.
* ``sync`` makes the file's data (and the size, if it changed) durable; ``sync_dir`` makes the
  directory's entries (creations, renames, unlinks) durable.
* ``lock`` takes the directory lock (an exclusive ``flock`` of the LOCK file, which then holds
  the holder's pid); ``lock_probe`` tells whether it is held, and by which pid, without
  creating the file, changing a byte, or holding a lock for more than an instant.

One method is optional: ``pwritev_sync(fd, buffers, offset)``, a write whose bytes are durable
when it returns (``pwritev2`` with ``RWF_DSYNC`` on Linux). The engine uses it, when present,
for a write that would otherwise be followed by ``sync``; it saves a system call and a
thread wake-up per group. Without it the engine calls ``pwrite`` then ``sync``.

Platform code (``fcntl``: the lock, and ``F_FULLFSYNC`` on macOS) lives in
:mod:`asyncwal._fileops_posix`, imported by :func:`platform_locks` on first use, so
``import asyncwal`` works where ``fcntl`` does not exist; there, opening a log on the real
file system fails with a clear ``OSError`` at the lock.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import aiofiles
import aiofiles.threadpool.binary

from ._errors import LogLockedError
from ._fileops_regular import FileKind as FileKind
from ._fileops_regular import NotRegularFileError as NotRegularFileError
from ._fileops_regular import kind_of, open_regular

if TYPE_CHECKING:
    from ._fileops_posix import PosixLocks

__all__ = (
    "AsyncReader",
    "makedirs_durably",
    "FileKind",
    "FileOps",
    "LockState",
    "NotRegularFileError",
    "OsFileOps",
    "PreadReader",
    "PwritevSync",
    "file_size",
    "platform_locks",
    "pwrite_each_then_sync",
    "read_all",
    "write_all",
    "write_all_durable",
)

#: The optional ``FileOps.pwritev_sync(fd, buffers, offset) -> int``: write ``buffers`` one
#: after another from ``offset``, like ``os.pwritev``, and return the number of bytes written
#: (possibly fewer than given; the caller loops), every one of them durable, with the file's
#: size, as after ``sync``. The engine only calls it on a file that has no unsynced changes,
#: so an implementation may make just the written range durable, as ``RWF_DSYNC`` does.
PwritevSync = Callable[[int, Sequence[bytes | memoryview], int], int]

# Linux: pwritev2(RWF_DSYNC) writes and flushes in one call (kernel 4.7+).
_HAVE_RWF_DSYNC = sys.platform.startswith("linux") and hasattr(os, "RWF_DSYNC")


@dataclass(frozen=True, slots=True)
class LockState:
    """The directory lock as :meth:`FileOps.lock_probe` found it.

    :ivar exists: there is a LOCK file (the log was opened at least once)
    :ivar held: a live opener holds the lock
    :ivar pid: the pid its holder wrote in the file; a free lock that still names a pid was
        not released cleanly (its holder died with the log open)
    """

    exists: bool
    held: bool
    pid: int | None


class AsyncReader(Protocol):
    """What replay needs of an open segment: positioned async reads."""

    async def read(self, size: int) -> bytes: ...

    async def seek(self, offset: int) -> int: ...

    async def close(self) -> None: ...


class FileOps(Protocol):
    """File operations used by asyncwal. File handles are ints. See the module docstring."""

    def makedirs(self, path: str) -> None: ...

    def listdir(self, path: str) -> list[str]: ...

    def exists(self, path: str) -> bool:
        """True if the name exists, whatever it is (a dangling symbolic link too)."""
        ...

    def kind(self, path: str) -> FileKind:
        """What the name is; never follows a symbolic link, never opens the file."""
        ...

    def open(self, path: str, *, create: bool = False, exclusive: bool = False) -> int:
        """Open a regular file for reading and writing; ``create`` creates it, ``exclusive``
        requires it new.

        :raises NotRegularFileError: ``path`` is not a regular file (not followed, not changed)
        """
        ...

    def open_readonly(self, path: str) -> int:
        """Open a regular file for reading.

        :raises NotRegularFileError: ``path`` is not a regular file (not followed, not opened)
        """
        ...

    def close(self, fd: int) -> None: ...

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        """Write at ``offset``; may write fewer bytes than given (the caller loops)."""
        ...

    def pread(self, fd: int, size: int, offset: int) -> bytes: ...

    def size(self, fd: int) -> int: ...

    def truncate(self, fd: int, size: int) -> None: ...

    def sync(self, fd: int) -> None:
        """Make the file's data durable (fdatasync; F_FULLFSYNC on macOS)."""
        ...

    def sync_dir(self, path: str) -> None:
        """Make the directory's entries durable."""
        ...

    def rename(self, src: str, dst: str) -> None: ...

    def unlink(self, path: str) -> None: ...

    def lock(self, path: str) -> int:
        """Take an exclusive lock on ``path`` (created if missing) and write the pid in it.

        :raises LogLockedError: another opener holds it
        :raises NotRegularFileError: ``path`` is not a regular file (its target is untouched)
        """
        ...

    def unlock(self, handle: int) -> None: ...

    def lock_probe(self, path: str) -> LockState:
        """Whether the lock of ``path`` is held and by which pid; changes nothing.

        :raises NotRegularFileError: ``path`` is not a regular file
        """
        ...

    def open_reader(self, path: str) -> AsyncReader:
        """An async reader of ``path`` (used by replay); opened on first use."""
        ...


def makedirs_durably(ops: FileOps, path: str) -> None:
    """Create ``path`` and its missing ancestors, then fsync the parent of each one created,
    top down, so that the new entries survive a power loss. An existing directory is fine."""
    missing: list[str] = []
    p = os.path.normpath(path)
    while not ops.exists(p):
        missing.append(p)
        parent = os.path.dirname(p) or "."
        if parent == p:
            break
        p = parent
    if not missing:
        return
    ops.makedirs(path)
    for created in reversed(missing):
        ops.sync_dir(os.path.dirname(created) or ".")


def write_all(ops: FileOps, fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write every byte of ``data`` at ``offset``, looping over short writes."""
    view = memoryview(data)
    while view:
        n = ops.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(errno.EIO, "write returned 0 bytes")
        view = view[n:]
        offset += n


def write_all_durable(
    pwritev_sync: PwritevSync, fd: int, buffers: Sequence[bytes | memoryview], offset: int
) -> None:
    """Write every byte of ``buffers`` from ``offset``, durably, looping over short writes."""
    views = [memoryview(b) for b in buffers if len(b)]
    while views:
        n = pwritev_sync(fd, views, offset)
        if n <= 0:
            raise OSError(errno.EIO, "write returned 0 bytes")
        offset += n
        while n:
            if n >= len(views[0]):
                n -= len(views.pop(0))
            else:
                views[0] = views[0][n:]
                n = 0


def pwrite_each_then_sync(ops: FileOps, fd: int, buffers: Sequence[bytes | memoryview], offset: int) -> int:
    """``pwritev_sync`` made of plain calls: ``ops.pwrite`` of each buffer (stopping at a
    short write), then ``ops.sync``. Returns the bytes written, all of them synced."""
    written = 0
    for buf in buffers:
        n = ops.pwrite(fd, buf, offset + written)
        written += n
        if n < len(buf):
            break
    ops.sync(fd)
    return written


def read_all(ops: FileOps, fd: int) -> bytes:
    """Read the whole file."""
    size = ops.size(fd)
    parts = []
    offset = 0
    while offset < size:
        chunk = ops.pread(fd, min(size - offset, 1 << 24), offset)
        if not chunk:
            break
        parts.append(chunk)
        offset += len(chunk)
    return b"".join(parts)


def file_size(ops: FileOps, path: str) -> int:
    """The size of the regular file ``path`` (opened read-only for an instant).

    :raises NotRegularFileError: ``path`` is not a regular file
    """
    fd = ops.open_readonly(path)
    try:
        return ops.size(fd)
    finally:
        ops.close(fd)


class PreadReader:
    """An :class:`AsyncReader` over any FileOps' ``open_readonly``/``pread``, served at once
    (no thread hop): for file systems in memory and the wrappers over them.

    Opens ``path`` on first use and keeps that descriptor, so it goes on reading the same
    file after the name is unlinked or renamed over, like a real descriptor.
    """

    def __init__(self, ops: FileOps, path: str) -> None:
        self._ops = ops
        self._path = path
        self._fd: int | None = None
        self._pos = 0

    def _open(self) -> int:
        if self._fd is None:
            self._fd = self._ops.open_readonly(self._path)
        return self._fd

    async def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes from the current position (everything left if ``size < 0``)."""
        fd = self._open()
        if size < 0:
            size = max(self._ops.size(fd) - self._pos, 0)
        data = self._ops.pread(fd, size, self._pos)
        self._pos += len(data)
        return data

    async def seek(self, offset: int) -> int:
        self._open()
        if offset < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        self._pos = offset
        return offset

    async def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self._ops.close(fd)


# -- the real file system -------------------------------------------------------------------


class _NoLocks:
    """The lock of a platform without ``fcntl``: every call fails with a clear error."""

    def _refuse(self) -> OSError:
        return OSError(errno.ENOTSUP, "the directory lock needs fcntl.flock, which this platform lacks")

    def try_lock(self, fd: int) -> bool:
        raise self._refuse()

    def is_held(self, fd: int) -> bool:
        raise self._refuse()

    def full_sync(self, fd: int) -> None:
        os.fsync(fd)


@functools.cache
def platform_locks() -> PosixLocks | _NoLocks:
    """The platform's lock (and full-sync) calls: :mod:`asyncwal._fileops_posix` where
    ``fcntl`` exists, else one that refuses to lock. Imported on first call, not with asyncwal."""
    try:
        from ._fileops_posix import PosixLocks
    except ImportError:
        return _NoLocks()
    return PosixLocks()


class _AiofilesReader:
    """AsyncReader over aiofiles; the file is opened (as a regular file only) on the first call."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._file: aiofiles.threadpool.binary.AsyncBufferedReader | None = None

    async def _open(self) -> aiofiles.threadpool.binary.AsyncBufferedReader:
        if self._file is None:
            self._file = await aiofiles.open(  # type: ignore[assignment]
                self._path, "rb", buffering=0, opener=open_regular
            )
        assert self._file is not None
        return self._file

    async def read(self, size: int) -> bytes:
        return await (await self._open()).read(size)

    async def seek(self, offset: int) -> int:
        return await (await self._open()).seek(offset)

    async def close(self) -> None:
        if self._file is not None:
            await self._file.close()
            self._file = None


class OsFileOps:
    """The real file system. ``sync`` is ``fdatasync`` on Linux, ``F_FULLFSYNC`` on macOS
    (plain ``fsync`` there does not flush the drive's cache), ``fsync`` elsewhere.
    ``pwritev_sync`` is one ``pwritev2(RWF_DSYNC)`` on Linux (the same flush as
    ``fdatasync``, for the bytes written), and writes then ``sync`` elsewhere.

    Files are opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked with ``fstat``: anything
    but a regular file is refused with :class:`NotRegularFileError`.
    """

    def __init__(self) -> None:
        self._rwf_dsync = _HAVE_RWF_DSYNC  # turned off if the kernel refuses the flag

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def kind(self, path: str) -> FileKind:
        return kind_of(path)[0]

    def open(self, path: str, *, create: bool = False, exclusive: bool = False) -> int:
        flags = os.O_RDWR
        if create:
            flags |= os.O_CREAT
        if exclusive:
            flags |= os.O_EXCL
        return open_regular(path, flags)

    def open_readonly(self, path: str) -> int:
        return open_regular(path, os.O_RDONLY)

    def close(self, fd: int) -> None:
        os.close(fd)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def pwritev_sync(self, fd: int, buffers: Sequence[bytes | memoryview], offset: int) -> int:
        """Write ``buffers`` from ``offset``; the bytes written are durable on return."""
        if self._rwf_dsync:
            try:
                return os.pwritev(fd, buffers, offset, os.RWF_DSYNC)
            except NotImplementedError:
                self._rwf_dsync = False
            except OSError as exc:
                # Kernels before 4.7 (or a libc without pwritev2) refuse the flag before
                # writing anything; any other error is the write's own and is raised.
                if exc.errno not in (errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                self._rwf_dsync = False
        return pwrite_each_then_sync(self, fd, buffers, offset)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return os.pread(fd, size, offset)

    def close_inherited(self, fd: int) -> None:
        """In a child after fork(): close this process's copy of a parent's descriptor (the
        parent's stays open, and the child no longer keeps the parent's lock alive)."""
        if fd >= 0:
            os.close(fd)

    def size(self, fd: int) -> int:
        return os.fstat(fd).st_size

    def truncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    if sys.platform == "darwin":  # pragma: no cover - not the CI platform

        def sync(self, fd: int) -> None:
            platform_locks().full_sync(fd)

    elif hasattr(os, "fdatasync"):

        def sync(self, fd: int) -> None:
            os.fdatasync(fd)

    else:  # pragma: no cover

        def sync(self, fd: int) -> None:
            os.fsync(fd)

    def sync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def lock(self, path: str) -> int:
        fd = open_regular(path, os.O_RDWR | os.O_CREAT)
        try:
            if not platform_locks().try_lock(fd):
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
                raise LogLockedError(
                    f"{os.path.dirname(path) or '.'} is locked by another opener"
                    + (f" (pid {holder})" if holder else "")
                )
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def unlock(self, handle: int) -> None:
        try:
            os.ftruncate(handle, 0)
        finally:
            os.close(handle)  # closing the descriptor releases the flock

    def lock_probe(self, path: str) -> LockState:
        """Open ``path`` read-only and try a non-blocking shared lock, released at once.

        Never creates or writes the file. For the few microseconds of the probe, an opener
        of the same directory fails with ``LogLockedError`` as it would against any holder.
        """
        try:
            fd = open_regular(path, os.O_RDONLY)
        except FileNotFoundError:
            return LockState(False, False, None)
        try:
            text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            pid = int(text) if text.isascii() and text.isdigit() else None
            return LockState(True, platform_locks().is_held(fd), pid)
        finally:
            os.close(fd)

    def open_reader(self, path: str) -> AsyncReader:
        return _AiofilesReader(path)
