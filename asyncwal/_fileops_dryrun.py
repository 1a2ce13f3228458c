"""The dry run of the command line: :class:`DryRunFileOps`, which records what recovery (or a
whole ``asyncwal.open``) would change instead of changing it.

``asyncwal verify`` runs the engine's own recovery on it to say exactly what opening the log
would do. Invariant: no mutating method of the wrapped FileOps is ever called; the changes
are kept in memory (the bytes written and the sizes cut, never a copy of a file), and later
calls are answered as if they had been made.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Final

from ._errors import LogLockedError
from ._fileops import FileKind, PreadReader, pwrite_each_then_sync
from ._fileops_wrappers import refused

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._fileops import AsyncReader, FileOps, LockState

__all__ = ("DryRunFileOps",)


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
            raise refused("makedirs", path)

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
