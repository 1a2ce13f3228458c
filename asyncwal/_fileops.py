"""The file-operations seam: the only module that touches the operating system's files.

The engine performs every read, write, sync, rename, unlink and lock through a
:class:`FileOps`. :class:`OsFileOps` is the real one; :mod:`asyncwal.testing` has an in-memory
one and a fault-injecting one. Everything here is synchronous and is called from the log's
own executor thread, never from the event-loop thread (except ``open_reader``'s async reads).

Contract of each method is that of the POSIX call it is named after; ``sync`` must make the
file's data (and the size, if it changed) durable, and ``sync_dir`` must make the
directory's entries (creations, renames, unlinks) durable.

One method is optional: ``pwritev_sync(fd, buffers, offset)``, a write whose bytes are durable
when it returns (``pwritev2`` with ``RWF_DSYNC`` on Linux). The engine uses it, when present,
for a write that would otherwise be followed by ``sync``; it saves a system call and a
thread wake-up per group. Without it the engine calls ``pwrite`` then ``sync``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
from collections.abc import Callable, Sequence
from typing import Protocol

import aiofiles
import aiofiles.threadpool.binary

from ._errors import LogLockedError

__all__ = ("AsyncReader", "FileOps", "OsFileOps", "PwritevSync", "pwrite_each_then_sync", "write_all_durable")

#: The optional ``FileOps.pwritev_sync(fd, buffers, offset) -> int``: write ``buffers`` one
#: after another from ``offset``, like ``os.pwritev``, and return the number of bytes written
#: (possibly fewer than given; the caller loops), every one of them durable, with the file's
#: size, as after ``sync``. The engine only calls it on a file that has no unsynced changes,
#: so an implementation may make just the written range durable, as ``RWF_DSYNC`` does.
PwritevSync = Callable[[int, Sequence[bytes | memoryview], int], int]

# Linux: pwritev2(RWF_DSYNC) writes and flushes in one call (kernel 4.7+).
_HAVE_RWF_DSYNC = sys.platform.startswith("linux") and hasattr(os, "RWF_DSYNC")


class AsyncReader(Protocol):
    """What replay needs of an open segment: positioned async reads."""

    async def read(self, size: int) -> bytes: ...

    async def seek(self, offset: int) -> int: ...

    async def close(self) -> None: ...


class FileOps(Protocol):
    """File operations used by the engine. File handles are ints."""

    def makedirs(self, path: str) -> None: ...

    def listdir(self, path: str) -> list[str]: ...

    def exists(self, path: str) -> bool: ...

    def open(self, path: str, *, create: bool = False, exclusive: bool = False) -> int:
        """Open for reading and writing; ``create`` creates it, ``exclusive`` requires it new."""
        ...

    def open_readonly(self, path: str) -> int: ...

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
        """Take an exclusive lock on ``path`` (created if missing); raise LogLockedError if held."""
        ...

    def unlock(self, handle: int) -> None: ...

    def open_reader(self, path: str) -> AsyncReader:
        """An async reader of ``path`` (used by replay); opened on first use."""
        ...


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


class _AiofilesReader:
    """AsyncReader over aiofiles; the file is opened on the first call."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._file: aiofiles.threadpool.binary.AsyncBufferedReader | None = None

    async def _open(self) -> aiofiles.threadpool.binary.AsyncBufferedReader:
        if self._file is None:
            self._file = await aiofiles.open(self._path, "rb", buffering=0)  # type: ignore[assignment]
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
    ``fdatasync``, for the bytes written), and writes then ``sync`` elsewhere."""

    def __init__(self) -> None:
        self._rwf_dsync = _HAVE_RWF_DSYNC  # turned off if the kernel refuses the flag

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def open(self, path: str, *, create: bool = False, exclusive: bool = False) -> int:
        flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)
        if create:
            flags |= os.O_CREAT
        if exclusive:
            flags |= os.O_EXCL
        return os.open(path, flags, 0o644)

    def open_readonly(self, path: str) -> int:
        return os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))

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
            fcntl.fcntl(fd, fcntl.F_FULLFSYNC)  # type: ignore[attr-defined,unused-ignore]

    elif hasattr(os, "fdatasync"):

        def sync(self, fd: int) -> None:
            os.fdatasync(fd)

    else:  # pragma: no cover

        def sync(self, fd: int) -> None:
            os.fsync(fd)

    def sync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def lock(self, path: str) -> int:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise LogLockedError(
                f"{os.path.dirname(path) or '.'} is locked by another opener"
                + (f" (pid {holder})" if holder else "")
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def unlock(self, handle: int) -> None:
        try:
            os.ftruncate(handle, 0)
        finally:
            os.close(handle)  # closing the descriptor releases the flock

    def open_reader(self, path: str) -> AsyncReader:
        return _AiofilesReader(path)
