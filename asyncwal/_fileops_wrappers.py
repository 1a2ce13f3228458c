"""File operations that wrap another FileOps, for the command line: read-only, dry run, salvage.

``asyncwal info|dump|verify`` read a log that may be open in another process, so they go
through :class:`ReadOnlyFileOps`; ``verify`` learns what opening the log would do by running
the engine's own recovery on :class:`DryRunFileOps`; ``repair`` opens the log on
:class:`SalvagingFileOps`, so that whatever recovery cuts is kept in a ``.broken`` file first.
Each wraps any :class:`~asyncwal._fileops.FileOps` (the real one, or an in-memory one in
tests), beside :class:`asyncwal.testing.FaultyFileOps`, and is one itself.

Invariants:

* :class:`ReadOnlyFileOps` and :class:`DryRunFileOps` never call a mutating method of the
  wrapped FileOps (``pwrite``, ``truncate``, ``rename``, ``unlink``, ``makedirs``, ``lock``,
  ``open`` with ``create``...): the first refuses those calls with ``PermissionError(EROFS)``,
  the second records them and answers later reads as if they had happened, keeping the
  changes in memory (memory: the bytes it was asked to write, never a copy of a file).
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

from ._errors import LogLockedError
from ._fileops import FileKind, LockState, PreadReader, PwritevSync, pwrite_each_then_sync, write_all
from ._format import parse_segment_name

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ._fileops import AsyncReader, FileOps

__all__ = (
    "BROKEN_SUFFIX",
    "DryRunFileOps",
    "ReadOnlyFileOps",
    "SalvagingFileOps",
    "Salvaged",
    "free_broken_name",
    "is_segment_path",
)

#: Suffix of the copies :class:`SalvagingFileOps` keeps (``NAME.broken``, ``NAME.broken.2``...).
BROKEN_SUFFIX: Final = ".broken"
#: Bytes copied per read when salvaging.
_COPY_CHUNK: Final = 1 << 20


def is_segment_path(path: str) -> bool:
    """True if the file name of ``path`` is a segment's."""
    return parse_segment_name(os.path.basename(path)) is not None


def _refused(op: str, path: str | None = None) -> PermissionError:
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
        raise _refused("makedirs", path)

    def open(self, path: str, *, create: bool = False, exclusive: bool = False) -> int:
        if create:
            raise _refused("open with create", path)
        return self.base.open_readonly(path)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        raise _refused("pwrite")

    def pwritev_sync(self, fd: int, buffers: Sequence[bytes | memoryview], offset: int) -> int:
        raise _refused("pwritev_sync")

    def truncate(self, fd: int, size: int) -> None:
        raise _refused("truncate")

    def rename(self, src: str, dst: str) -> None:
        raise _refused("rename", src)

    def unlink(self, path: str) -> None:
        raise _refused("unlink", path)

    def lock(self, path: str) -> int:
        raise _refused("lock", path)

    def unlock(self, handle: int) -> None:
        raise _refused("unlock")


# -- dry run ----------------------------------------------------------------------------------


class _Shadow:
    """A file as the dry run sees it: the wrapped file's bytes below ``keep`` (read from
    ``base_path``; None for a file the dry run created), zeros up to ``size``, and then the
    dry run's own writes over that, in order.

    Invariant: ``keep <= size`` and every write lies below ``size`` (a truncate clips them).
    """

    __slots__ = ("base_path", "changed", "keep", "opened", "size", "writes")

    def __init__(self, base_path: str | None, size: int) -> None:
        self.base_path = base_path
        self.keep = size
        self.size = size
        self.writes: list[tuple[int, bytes]] = []
        self.changed = base_path is None  # a created file is a change already
        self.opened = 0  # descriptors of the dry run open on it

    def truncate(self, size: int) -> None:
        self.keep = min(self.keep, size)
        self.size = size
        self.writes = [(o, d[: size - o]) for o, d in self.writes if o < size]
        self.changed = True

    def write(self, offset: int, data: bytes) -> None:
        self.writes.append((offset, data))
        self.size = max(self.size, offset + len(data))
        self.changed = True

    def read(self, base: FileOps, base_fd: int | None, size: int, offset: int) -> bytes:
        end = min(offset + size, self.size)
        if end <= offset:
            return b""
        out = bytearray(end - offset)
        if base_fd is not None and offset < self.keep:
            got = base.pread(base_fd, min(end, self.keep) - offset, offset)
            out[: len(got)] = got
        for w_off, data in self.writes:
            lo, hi = max(w_off, offset), min(w_off + len(data), end)
            if lo < hi:
                out[lo - offset : hi - offset] = data[lo - w_off : hi - w_off]
        return bytes(out)


class DryRunFileOps:
    """Reads through ``base``; records every change instead of making it, and answers later
    calls as if it had been made (a truncated file reads shorter, an unlinked name is gone, a
    created file holds what was written to it, a rename moves it).

    What recovery (or a whole ``asyncwal.open``) would do is then in :attr:`truncations`,
    :attr:`unlinks`, :attr:`renames`, :attr:`created` and :attr:`writes`. ``makedirs`` of an
    existing directory and ``sync``/``sync_dir`` do nothing; ``lock`` only checks that the
    lock is free; ``makedirs`` of a new directory is refused with ``PermissionError(EROFS)``.

    Changes made by others to the wrapped files meanwhile show through, except in the files
    this dry run has open or changed (they read as of the dry run's first open). Only regular
    files can be renamed.
    """

    def __init__(self, base: FileOps) -> None:
        self.base: Final[FileOps] = base
        #: ``(path, new size)`` of each truncate, in order
        self.truncations: list[tuple[str, int]] = []
        #: paths unlinked, in order
        self.unlinks: list[str] = []
        #: ``(src, dst)`` of each rename, in order
        self.renames: list[tuple[str, str]] = []
        #: paths of files created, in order
        self.created: list[str] = []
        #: ``(path, offset, length)`` of each write, in order
        self.writes: list[tuple[str, int, int]] = []
        # path -> its shadow (None: removed by the dry run); a path not here is the base's
        self._shadows: dict[str, _Shadow | None] = {}
        # descriptor -> (shadow, base descriptor or None, path it was opened with, writable)
        self._fds: dict[int, tuple[_Shadow, int | None, str, bool]] = {}
        self._locks: set[int] = set()  # handles of lock(): nothing is really locked
        self._next_fd = 1 << 20

    @property
    def replacements(self) -> list[str]:
        """Targets of the renames: files recovery would replace atomically (e.g. META)."""
        return [dst for _, dst in self.renames]

    # -- names ---------------------------------------------------------------------------------

    def _where(self, path: str) -> tuple[bool, _Shadow | None]:
        """``(shadowed, shadow)``: whether the dry run decides what ``path`` is, and the file."""
        path = os.path.normpath(path)
        if path in self._shadows:
            return True, self._shadows[path]
        return False, None

    def makedirs(self, path: str) -> None:
        if self.base.kind(path) is not FileKind.DIRECTORY:
            raise _refused("makedirs", path)

    def listdir(self, path: str) -> list[str]:
        names = set(self.base.listdir(path))
        directory = os.path.normpath(path)
        for p, shadow in self._shadows.items():
            if os.path.dirname(p) != directory:
                continue
            if shadow is None:
                names.discard(os.path.basename(p))
            else:
                names.add(os.path.basename(p))
        return sorted(names)

    def kind(self, path: str) -> FileKind:
        shadowed, shadow = self._where(path)
        if not shadowed:
            return self.base.kind(path)
        return FileKind.MISSING if shadow is None else FileKind.REGULAR

    def exists(self, path: str) -> bool:
        return self.kind(path) is not FileKind.MISSING

    # -- descriptors ---------------------------------------------------------------------------

    def _new_fd(self, shadow: _Shadow, path: str, writable: bool, base_fd: int | None = None) -> int:
        """A descriptor of the dry run on ``shadow``; ``base_fd``, if given, is the wrapped
        file already open (read-only), else it is opened here."""
        if base_fd is None and shadow.base_path is not None:
            base_fd = self.base.open_readonly(shadow.base_path)
        fd = self._next_fd
        self._next_fd += 1
        shadow.opened += 1
        self._fds[fd] = (shadow, base_fd, os.path.normpath(path), writable)
        return fd

    def _open(self, path: str, writable: bool, create: bool = False, exclusive: bool = False) -> int:
        path = os.path.normpath(path)
        shadowed, shadow = self._where(path)
        if create and exclusive and self.exists(path):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path)
        if shadowed and shadow is not None:
            return self._new_fd(shadow, path, writable)
        if not shadowed:
            kind = self.base.kind(path)
            if kind is not FileKind.MISSING or not create:
                # Let the base open it (and refuse what is not a regular file, or missing).
                base_fd = self.base.open_readonly(path)
                try:
                    shadow = _Shadow(path, self.base.size(base_fd))
                except BaseException:
                    self.base.close(base_fd)
                    raise
                self._shadows[path] = shadow
                return self._new_fd(shadow, path, writable, base_fd)
        if not create:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        parent = os.path.dirname(path) or "."
        if self.kind(parent) is not FileKind.DIRECTORY:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        shadow = _Shadow(None, 0)
        self._shadows[path] = shadow
        self.created.append(path)
        return self._new_fd(shadow, path, writable)

    def open(self, path: str, *, create: bool = False, exclusive: bool = False) -> int:
        return self._open(path, True, create, exclusive)

    def open_readonly(self, path: str) -> int:
        return self._open(path, False)

    def _fd(self, fd: int) -> tuple[_Shadow, int | None, str, bool]:
        try:
            return self._fds[fd]
        except KeyError:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF)) from None

    def close(self, fd: int) -> None:
        shadow, base_fd, path, _ = self._fd(fd)
        del self._fds[fd]
        shadow.opened -= 1
        if base_fd is not None:
            self.base.close(base_fd)
        # An unchanged file that nobody has open is the base's again (so it is read afresh).
        if not shadow.changed and not shadow.opened and self._shadows.get(path) is shadow:
            del self._shadows[path]

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        shadow, base_fd, _, _ = self._fd(fd)
        if size < 0 or offset < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return shadow.read(self.base, base_fd, size, offset)

    def size(self, fd: int) -> int:
        return self._fd(fd)[0].size

    def _writable(self, fd: int) -> tuple[_Shadow, str]:
        shadow, _, path, writable = self._fd(fd)
        if not writable:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return shadow, path

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        shadow, path = self._writable(fd)
        payload = bytes(data)
        shadow.write(offset, payload)
        self.writes.append((path, offset, len(payload)))
        return len(payload)

    def pwritev_sync(self, fd: int, buffers: Sequence[bytes | memoryview], offset: int) -> int:
        return pwrite_each_then_sync(self, fd, buffers, offset)

    def truncate(self, fd: int, size: int) -> None:
        shadow, path = self._writable(fd)
        if size < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        shadow.truncate(size)
        self.truncations.append((path, size))

    def sync(self, fd: int) -> None:
        self._fd(fd)

    def sync_dir(self, path: str) -> None:
        if self.kind(path) is not FileKind.DIRECTORY:
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)

    def rename(self, src: str, dst: str) -> None:
        src, dst = os.path.normpath(src), os.path.normpath(dst)
        if self.kind(dst) is FileKind.DIRECTORY:
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), dst)
        fd = self._open(src, False)  # the file as the dry run sees it (refuses what is not one)
        shadow = self._fd(fd)[0]
        self.close(fd)
        shadow.changed = True
        self._shadows[dst] = shadow
        if src != dst:
            self._shadows[src] = None
        self.renames.append((src, dst))

    def unlink(self, path: str) -> None:
        path = os.path.normpath(path)
        kind = self.kind(path)
        if kind is FileKind.MISSING:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        if kind is FileKind.DIRECTORY:
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        self._shadows[path] = None
        self.unlinks.append(path)

    def lock(self, path: str) -> int:
        """Check that the lock is free (``lock_probe``) and take nothing.

        :raises LogLockedError: a live opener holds it
        """
        state = self.base.lock_probe(path)
        if state.held:
            raise LogLockedError(
                f"{os.path.dirname(path) or '.'} is locked by another opener"
                + (f" (pid {state.pid})" if state.pid is not None else "")
            )
        handle = self._next_fd
        self._next_fd += 1
        self._locks.add(handle)
        return handle

    def unlock(self, handle: int) -> None:
        try:
            self._locks.remove(handle)
        except KeyError:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF)) from None

    def lock_probe(self, path: str) -> LockState:
        return self.base.lock_probe(path)

    def open_reader(self, path: str) -> AsyncReader:
        """The wrapped FileOps' reader for a file the dry run has not touched; for one it has,
        a reader served from :meth:`pread` on the calling thread."""
        shadowed, _ = self._where(path)
        return PreadReader(self, path) if shadowed else self.base.open_reader(path)


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
