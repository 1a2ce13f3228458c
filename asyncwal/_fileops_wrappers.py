"""File operations that wrap another FileOps, for the command line: read-only, dry run, salvage.

``asyncwal info|dump|verify`` read a log that may be open in another process, so they go
through :class:`ReadOnlyFileOps`; ``verify`` learns what opening the log would do by running
the engine's own recovery on :class:`~asyncwal._fileops_dryrun.DryRunFileOps` (in a module
of its own); ``repair`` opens the log on :class:`SalvagingFileOps`, so that whatever
recovery cuts is kept in a ``.broken`` file first.
Each wraps any :class:`~asyncwal._fileops.FileOps` (the real one, or an in-memory one in
tests), beside :class:`asyncwal.testing.FaultyFileOps`, and is one itself.

Invariants:

* :class:`ReadOnlyFileOps` never calls a mutating method of the wrapped FileOps
  (``pwrite``, ``truncate``, ``rename``, ``unlink``, ``makedirs``, ``lock``, ``open`` with
  ``create``...): it refuses those calls with ``PermissionError(EROFS)`` (:func:`refused`).
* :class:`SalvagingFileOps` forwards every call, except that no byte of a protected file
  (a segment, by default) is lost: a shrinking ``truncate`` first copies the bytes beyond the
  new size to a new ``.broken`` file and makes the copy and its name durable; an ``unlink``
  renames the file to a ``.broken`` name instead. A ``.broken`` name is never reused.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ._filenames import BROKEN_SUFFIX, parse_segment_name
from ._fileops import FileKind, LockState, PwritevSync, pwrite_each_then_sync, write_all

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ._fileops import AsyncReader, FileOps

__all__ = (
    "BROKEN_SUFFIX",
    "ReadOnlyFileOps",
    "SalvagingFileOps",
    "Salvaged",
    "free_broken_name",
    "refused",
    "is_segment_path",
)

#: Bytes copied per read when salvaging.
_COPY_CHUNK: Final = 1 << 20


def is_segment_path(path: str) -> bool:
    """True if the file name of ``path`` is a segment's."""
    return parse_segment_name(os.path.basename(path)) is not None


def refused(op: str, path: str | None = None) -> PermissionError:
    if path is None:
        return PermissionError(errno.EROFS, f"read-only file operations: {op} refused")
    return PermissionError(errno.EROFS, f"read-only file operations: {op} refused", path)


class _Forwarding:
    """Every FileOps method forwarded to ``base``; subclasses override what they change."""

    def __init__(self, base: FileOps) -> None:
        self.base: Final[FileOps] = base

    def makedirs(self, path: str) -> None:
        self.base.makedirs(path)

    def listdir(self, path: str) -> list[str]:
        return self.base.listdir(path)

    def exists(self, path: str) -> bool:
        return self.base.exists(path)

    def kind(self, path: str) -> FileKind:
        return self.base.kind(path)

    def open(self, path: str, *, create: bool = False, exclusive: bool = False) -> int:
        return self.base.open(path, create=create, exclusive=exclusive)

    def open_readonly(self, path: str) -> int:
        return self.base.open_readonly(path)

    def close(self, fd: int) -> None:
        self.base.close(fd)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        return self.base.pwrite(fd, data, offset)

    def pwritev_sync(self, fd: int, buffers: Sequence[bytes | memoryview], offset: int) -> int:
        """The base's ``pwritev_sync`` if it has one, else ``pwrite`` of each then ``sync``."""
        own: PwritevSync | None = getattr(self.base, "pwritev_sync", None)
        if own is None:
            return pwrite_each_then_sync(self, fd, buffers, offset)
        written: int = own(fd, buffers, offset)
        return written

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return self.base.pread(fd, size, offset)

    def size(self, fd: int) -> int:
        return self.base.size(fd)

    def truncate(self, fd: int, size: int) -> None:
        self.base.truncate(fd, size)

    def sync(self, fd: int) -> None:
        self.base.sync(fd)

    def sync_dir(self, path: str) -> None:
        self.base.sync_dir(path)

    def rename(self, src: str, dst: str) -> None:
        self.base.rename(src, dst)

    def unlink(self, path: str) -> None:
        self.base.unlink(path)

    def lock(self, path: str) -> int:
        return self.base.lock(path)

    def unlock(self, handle: int) -> None:
        self.base.unlock(handle)

    def lock_probe(self, path: str) -> LockState:
        return self.base.lock_probe(path)

    def open_reader(self, path: str) -> AsyncReader:
        return self.base.open_reader(path)


# -- read-only --------------------------------------------------------------------------------


class ReadOnlyFileOps(_Forwarding):
    """Reads through ``base``; refuses every call that could change a file or a name.

    ``open`` without ``create`` opens read-only (a write on that descriptor then fails as the
    operating system makes it fail); ``sync`` and ``sync_dir`` are forwarded (they change
    nothing); ``lock`` is refused, ``lock_probe`` allowed.

    :raises PermissionError: (``errno.EROFS``) from every refused call
    """

    def makedirs(self, path: str) -> None:
        raise refused("makedirs", path)

    def open(self, path: str, *, create: bool = False, exclusive: bool = False) -> int:
        if create:
            raise refused("open with create", path)
        return self.base.open_readonly(path)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        raise refused("pwrite")

    def pwritev_sync(self, fd: int, buffers: Sequence[bytes | memoryview], offset: int) -> int:
        raise refused("pwritev_sync")

    def truncate(self, fd: int, size: int) -> None:
        raise refused("truncate")

    def rename(self, src: str, dst: str) -> None:
        raise refused("rename", src)

    def unlink(self, path: str) -> None:
        raise refused("unlink", path)

    def lock(self, path: str) -> int:
        raise refused("lock", path)

    def unlock(self, handle: int) -> None:
        raise refused("unlock")


# -- salvage ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Salvaged:
    """Bytes that :class:`SalvagingFileOps` kept before they were cut.

    :ivar path: the file they were cut from
    :ivar offset: where the cut started in it (0: the whole file was removed)
    :ivar length: bytes kept (everything from ``offset`` to the end of the file)
    :ivar copy: the file holding them
    """

    path: str
    offset: int
    length: int
    copy: str


def free_broken_name(ops: FileOps, path: str) -> str:
    """``path.broken``, or ``path.broken.N`` with the smallest N that is free: a second repair
    never overwrites what the first one kept."""
    candidate = path + BROKEN_SUFFIX
    n = 1
    while ops.exists(candidate):
        n += 1
        candidate = f"{path}{BROKEN_SUFFIX}.{n}"
    return candidate


class SalvagingFileOps(_Forwarding):
    """Forwards to ``base``, except that bytes of a protected file are kept before they go.

    * ``truncate`` that shrinks a protected file first copies the bytes beyond the new size to
      a new ``.broken`` file (see :func:`free_broken_name`), syncs it and its directory, and
      only then truncates;
    * ``unlink`` of a protected file renames it to a ``.broken`` name instead (the caller
      syncs the directory afterwards, as it would after an unlink).

    What was kept is listed in :attr:`salvaged`; ``unlink`` of any other file (a ``*.tmp``
    leftover) is a plain unlink, listed in :attr:`removed`.

    :param protect: which paths are protected; segments by default
    """

    def __init__(self, base: FileOps, *, protect: Callable[[str], bool] = is_segment_path) -> None:
        super().__init__(base)
        self._protect = protect
        self.salvaged: list[Salvaged] = []
        self.removed: list[str] = []
        self._paths: dict[int, str] = {}  # open descriptor -> the path it was opened with

    def open(self, path: str, *, create: bool = False, exclusive: bool = False) -> int:
        fd = self.base.open(path, create=create, exclusive=exclusive)
        self._paths[fd] = path
        return fd

    def close(self, fd: int) -> None:
        self._paths.pop(fd, None)
        self.base.close(fd)

    def truncate(self, fd: int, size: int) -> None:
        path = self._paths.get(fd)
        if path is not None and self._protect(path):
            current = self.base.size(fd)
            if size < current:
                copy = self._copy_tail(fd, path, size, current)
                self.salvaged.append(Salvaged(path, size, current - size, copy))
        self.base.truncate(fd, size)

    def _copy_tail(self, fd: int, path: str, start: int, end: int) -> str:
        """Copy bytes ``start..end`` of ``fd`` to a new ``.broken`` file, durably; its path."""
        copy = free_broken_name(self.base, path)
        out = self.base.open(copy, create=True, exclusive=True)
        try:
            offset = start
            while offset < end:
                chunk = self.base.pread(fd, min(_COPY_CHUNK, end - offset), offset)
                if not chunk:
                    break
                write_all(self.base, out, chunk, offset - start)
                offset += len(chunk)
            self.base.sync(out)
        finally:
            self.base.close(out)
        self.base.sync_dir(os.path.dirname(copy) or ".")
        return copy

    def unlink(self, path: str) -> None:
        if not self._protect(path):
            self.base.unlink(path)
            self.removed.append(path)
            return
        copy = free_broken_name(self.base, path)
        fd = self.base.open_readonly(path)
        try:
            length = self.base.size(fd)
        finally:
            self.base.close(fd)
        self.base.rename(path, copy)
        self.salvaged.append(Salvaged(path, 0, length, copy))
