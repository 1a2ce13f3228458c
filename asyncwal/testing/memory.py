"""An in-memory file system with POSIX semantics, for tests: :class:`MemoryFileOps`.

An open descriptor refers to an inode, so it keeps reading and writing the same data after
the path is renamed over or unlinked; ``pwrite`` past the end zero-fills the gap; ``pread``
is short at the end of the file; ``rename`` replaces its target atomically; ``lock`` is an
exclusive lock per path. Thread-safe: one :class:`threading.Lock` guards all state, because
the engine calls it from its I/O thread while a test inspects it from the event-loop thread.

Paths are plain strings and are compared after :func:`os.path.normpath`. Directories are
created only by ``makedirs`` (with all their ancestors); ``/`` and ``.`` always exist.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import TYPE_CHECKING, Final

from .._errors import LogLockedError
from .._fileops import FileKind, LockState, NotRegularFileError, PreadReader
from ._common import Create, Event, Rename, Sync, SyncDir, Truncate, Unlink, Write, oserror, parent

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from .._fileops import AsyncReader

__all__ = ("MemoryFileOps",)


class _Inode:
    """The data of one file. Identity matters: descriptors point at inodes, not paths."""

    __slots__ = ("data", "ino")

    def __init__(self, ino: int, data: bytes = b"") -> None:
        self.ino: Final = ino
        self.data = bytearray(data)


class _Handle:
    """An open descriptor: the inode it refers to and the path it was opened with."""

    __slots__ = ("inode", "path", "writable")

    def __init__(self, inode: _Inode, path: str, writable: bool) -> None:
        self.inode: Final = inode
        self.path: Final = path
        self.writable: Final = writable


class MemoryFileOps:
    """An in-memory :class:`~asyncwal._fileops.FileOps` with POSIX semantics.

    Every method behaves like the ``os`` call it is named after and raises the same
    :class:`OSError` subclasses (FileNotFoundError, FileExistsError, IsADirectoryError,
    NotADirectoryError, ``EBADF`` for an unknown descriptor), and, like
    :class:`~asyncwal.OsFileOps`, refuses to open anything but a regular file with
    :class:`~asyncwal.NotRegularFileError`. ``sync`` and ``sync_dir`` check their argument
    and otherwise do nothing: nothing is ever lost here. For a file system that can lose
    unsynced data, see ``PowerLossFileOps``.

    Besides regular files and directories, :meth:`add_special` puts names that stand for a
    symbolic link, a FIFO, a device or a socket (what a hostile directory holds): they are
    listed, reported by :meth:`kind`, renamed and unlinked like files, and never opened.

    Only regular files and special names can be renamed or unlinked; directories are never
    removed.

    Invariant: every method takes ``self._mutex`` for its whole duration, so each call is
    atomic with respect to every other call, from any thread.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._dirs: set[str] = {"/", "."}
        self._entries: dict[str, _Inode] = {}
        self._specials: dict[str, FileKind] = {}  # names that are neither files nor directories
        self._handles: dict[int, _Handle] = {}
        self._locks: dict[str, int] = {}  # locked path -> lock handle
        self._lock_paths: dict[int, tuple[str, int]] = {}  # lock handle -> (path, fd)
        self._next_fd = 3
        self._next_ino = 1
        self._unsynced: set[int] = set()  # inodes changed since their last sync

    # -- hooks for subclasses (called with self._mutex held) ------------------------------

    def _event(self, event: Event) -> None:
        """Called after each change of state; ``PowerLossFileOps`` records them."""

    # -- internal helpers (self._mutex must be held) ---------------------------------------

    def _handle(self, fd: int) -> _Handle:
        try:
            return self._handles[fd]
        except KeyError:
            raise oserror(errno.EBADF) from None

    def _check_parent(self, path: str) -> None:
        up = parent(path)
        if up in self._dirs:
            return
        if up in self._entries or up in self._specials:
            raise oserror(errno.ENOTDIR, path)
        raise oserror(errno.ENOENT, path)

    def _kind(self, path: str) -> FileKind:
        if path in self._entries:
            return FileKind.REGULAR
        if path in self._dirs:
            return FileKind.DIRECTORY
        return self._specials.get(path, FileKind.MISSING)

    def _regular(self, path: str) -> _Inode | None:
        """The inode at ``path``, None if nothing is there.

        :raises NotRegularFileError: a directory or a special name is there
        """
        inode = self._entries.get(path)
        if inode is None:
            kind = self._kind(path)
            if kind is not FileKind.MISSING:
                raise NotRegularFileError(path, kind)
        return inode

    def _new_fd(self, inode: _Inode, path: str, writable: bool) -> int:
        fd = self._next_fd
        self._next_fd += 1
        self._handles[fd] = _Handle(inode, path, writable)
        return fd

    def _create(self, path: str, data: bytes = b"") -> _Inode:
        inode = _Inode(self._next_ino, data)
        self._next_ino += 1
        self._entries[path] = inode
        self._event(Create(path, inode.ino))
        if data:
            self._event(Write(inode.ino, 0, bytes(data)))
        return inode

    def _write(self, inode: _Inode, data: bytes, offset: int) -> None:
        buf = inode.data
        end = offset + len(data)
        if offset > len(buf):
            buf.extend(bytes(offset - len(buf)))
        buf[offset:end] = data
        self._unsynced.add(inode.ino)
        self._event(Write(inode.ino, offset, data))

    def _truncate(self, inode: _Inode, size: int) -> None:
        buf = inode.data
        if size < len(buf):
            del buf[size:]
        else:
            buf.extend(bytes(size - len(buf)))
        self._unsynced.add(inode.ino)
        self._event(Truncate(inode.ino, size))

    # -- FileOps ---------------------------------------------------------------------------

    def makedirs(self, path: str) -> None:
        """Create ``path`` and its missing ancestors; an existing directory is fine.

        :raises FileExistsError: if ``path`` or an ancestor is a regular file.
        """
        path = os.path.normpath(path)
        with self._mutex:
            todo = []
            p = path
            while p not in self._dirs:
                if p in self._entries or p in self._specials:
                    raise oserror(errno.EEXIST, p)
                todo.append(p)
                up = parent(p)
                if up == p:
                    break
                p = up
            self._dirs.update(todo)

    def listdir(self, path: str) -> list[str]:
        """Names of the files and directories directly inside ``path``, sorted."""
        path = os.path.normpath(path)
        with self._mutex:
            if path not in self._dirs:
                raise oserror(errno.ENOTDIR if path in self._entries else errno.ENOENT, path)
            names = {os.path.basename(p) for p in (*self._entries, *self._specials) if parent(p) == path}
            names.update(os.path.basename(d) for d in self._dirs if d != path and parent(d) == path)
            return sorted(names)

    def exists(self, path: str) -> bool:
        """True if anything (a file, a directory, a special name) is at ``path``."""
        path = os.path.normpath(path)
        with self._mutex:
            return self._kind(path) is not FileKind.MISSING

    def kind(self, path: str) -> FileKind:
        path = os.path.normpath(path)
        with self._mutex:
            return self._kind(path)

    def add_special(self, path: str, kind: FileKind = FileKind.OTHER) -> None:
        """Put at ``path`` a name that is not a regular file: ``FileKind.SYMLINK`` or
        ``FileKind.OTHER`` (a FIFO, a device or a socket). It has no contents and no target;
        crash images of :class:`PowerLossFileOps` do not keep it.

        :raises FileExistsError: something is at ``path`` already
        :raises ValueError: ``kind`` is not SYMLINK or OTHER
        """
        if kind not in (FileKind.SYMLINK, FileKind.OTHER):
            raise ValueError(f"a special name is a symbolic link or OTHER, not {kind}")
        path = os.path.normpath(path)
        with self._mutex:
            if self._kind(path) is not FileKind.MISSING:
                raise oserror(errno.EEXIST, path)
            self._check_parent(path)
            self._specials[path] = kind

    def open(self, path: str, *, create: bool = False, exclusive: bool = False) -> int:
        """Open for reading and writing, like ``os.open(O_RDWR [| O_CREAT [| O_EXCL]])``.

        As on Linux, ``exclusive`` without ``create`` has no effect.

        :raises FileExistsError: ``create`` and ``exclusive``, and anything is at ``path``.
        :raises FileNotFoundError: ``path`` (or its directory) does not exist and may not be created.
        :raises NotRegularFileError: ``path`` is a directory or a special name.
        """
        path = os.path.normpath(path)
        with self._mutex:
            if create and exclusive and self._kind(path) is not FileKind.MISSING:
                raise oserror(errno.EEXIST, path)
            inode = self._regular(path)
            if inode is None:
                self._check_parent(path)
                if not create:
                    raise oserror(errno.ENOENT, path)
                inode = self._create(path)
            return self._new_fd(inode, path, writable=True)

    def open_readonly(self, path: str) -> int:
        """Open for reading only: ``pwrite`` and ``truncate`` on it fail with ``EBADF``/``EINVAL``.

        :raises NotRegularFileError: ``path`` is a directory or a special name.
        """
        path = os.path.normpath(path)
        with self._mutex:
            inode = self._regular(path)
            if inode is None:
                self._check_parent(path)
                raise oserror(errno.ENOENT, path)
            return self._new_fd(inode, path, writable=False)

    def close(self, fd: int) -> None:
        with self._mutex:
            self._handle(fd)
            del self._handles[fd]

    def _write_handle(self, fd: int, offset: int) -> _Handle:
        """The handle of ``fd``, checked for a write at ``offset`` (self._mutex held)."""
        handle = self._handle(fd)
        if not handle.writable:
            raise oserror(errno.EBADF)
        if offset < 0:
            raise oserror(errno.EINVAL)
        return handle

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        """Write all of ``data`` at ``offset`` (never short); a gap past the end reads as zeros."""
        with self._mutex:
            handle = self._write_handle(fd, offset)
            payload = bytes(data)
            self._write(handle.inode, payload, offset)
            return len(payload)

    def pwritev_sync(self, fd: int, buffers: Sequence[bytes | memoryview], offset: int) -> int:
        """Write ``buffers`` one after another at ``offset``, then sync the file (never short).

        :raises ValueError: the file has changes not yet synced. A real ``RWF_DSYNC`` write
            would leave them unsynced, so the engine never does this; the check catches it.
        """
        with self._mutex:
            handle = self._write_handle(fd, offset)
            ino = handle.inode.ino
            if ino in self._unsynced:
                raise ValueError(f"pwritev_sync on {handle.path}, which has unsynced changes")
            payload = b"".join(buffers)
            self._write(handle.inode, payload, offset)
            self._unsynced.discard(ino)
            self._event(Sync(ino))
            return len(payload)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        """Up to ``size`` bytes at ``offset``: fewer at the end of the file, ``b""`` past it."""
        with self._mutex:
            handle = self._handle(fd)
            if offset < 0 or size < 0:
                raise oserror(errno.EINVAL)
            return bytes(handle.inode.data[offset : offset + size])

    def size(self, fd: int) -> int:
        with self._mutex:
            return len(self._handle(fd).inode.data)

    def truncate(self, fd: int, size: int) -> None:
        """Cut the file to ``size`` bytes, or grow it with zeros."""
        with self._mutex:
            handle = self._handle(fd)
            if not handle.writable or size < 0:
                raise oserror(errno.EINVAL)
            self._truncate(handle.inode, size)

    def sync(self, fd: int) -> None:
        with self._mutex:
            handle = self._handle(fd)
            self._unsynced.discard(handle.inode.ino)
            self._event(Sync(handle.inode.ino))

    def sync_dir(self, path: str) -> None:
        path = os.path.normpath(path)
        with self._mutex:
            if path not in self._dirs:
                raise oserror(errno.ENOTDIR if path in self._entries else errno.ENOENT, path)
            self._event(SyncDir(path))

    def rename(self, src: str, dst: str) -> None:
        """Move the file (or special name) ``src`` to ``dst``, atomically replacing a file or
        special name already at ``dst``.

        :raises FileNotFoundError: ``src`` does not exist, or ``dst``'s directory does not.
        :raises IsADirectoryError: ``dst`` is a directory.
        """
        src = os.path.normpath(src)
        dst = os.path.normpath(dst)
        with self._mutex:
            inode = self._entries.get(src)
            if inode is None:
                if src in self._dirs:
                    raise oserror(errno.EPERM, src)  # renaming directories is not modelled
                if src not in self._specials:
                    raise oserror(errno.ENOENT, src)
            if dst in self._dirs:
                raise oserror(errno.EISDIR, dst)
            self._check_parent(dst)
            if src == dst:
                return
            if inode is None:  # a special name: not a recorded event (crash images drop them)
                if dst in self._entries:
                    self._event(Unlink(dst, self._entries.pop(dst).ino))
                self._specials[dst] = self._specials.pop(src)
                return
            self._specials.pop(dst, None)
            del self._entries[src]
            self._entries[dst] = inode
            self._event(Rename(src, dst, inode.ino))

    def unlink(self, path: str) -> None:
        """Remove the name ``path``; descriptors open on the file keep working."""
        path = os.path.normpath(path)
        with self._mutex:
            if self._specials.pop(path, None) is not None:
                return
            inode = self._entries.pop(path, None)
            if inode is None:
                raise oserror(errno.EISDIR if path in self._dirs else errno.ENOENT, path)
            self._event(Unlink(path, inode.ino))

    def lock(self, path: str) -> int:
        """Take the exclusive lock of ``path``, creating the file if missing.

        Like :class:`~asyncwal._fileops.OsFileOps`, the file then holds the pid.

        :raises LogLockedError: another handle holds the lock of ``path``.
        :raises NotRegularFileError: ``path`` is a directory or a special name.
        :return: a handle for :meth:`unlock`.
        """
        path = os.path.normpath(path)
        with self._mutex:
            inode = self._regular(path)
            if path in self._locks:
                pid = bytes(inode.data[:64]).decode("ascii", "replace").strip() if inode else ""
                raise LogLockedError(
                    f"{parent(path)} is locked by another opener" + (f" (pid {pid})" if pid else "")
                )
            if inode is None:
                self._check_parent(path)
                inode = self._create(path)
            fd = self._new_fd(inode, path, writable=True)
            self._truncate(inode, 0)
            self._write(inode, f"{os.getpid()}\n".encode(), 0)
            handle = self._next_fd
            self._next_fd += 1
            self._locks[path] = handle
            self._lock_paths[handle] = (path, fd)
            return handle

    def unlock(self, handle: int) -> None:
        """Release a lock taken by :meth:`lock` (the file is emptied and kept)."""
        with self._mutex:
            try:
                path, fd = self._lock_paths.pop(handle)
            except KeyError:
                raise oserror(errno.EBADF) from None
            del self._locks[path]
            self._truncate(self._handles.pop(fd).inode, 0)

    def lock_probe(self, path: str) -> LockState:
        """Whether :meth:`lock` of ``path`` is held, and the pid in the file; changes nothing.

        :raises NotRegularFileError: ``path`` is a directory or a special name.
        """
        path = os.path.normpath(path)
        with self._mutex:
            inode = self._regular(path)
            if inode is None:
                return LockState(False, False, None)
            text = bytes(inode.data[:64]).decode("ascii", "replace").strip()
            pid = int(text) if text.isascii() and text.isdigit() else None
            return LockState(True, path in self._locks, pid)

    def open_reader(self, path: str) -> AsyncReader:
        """An async reader of ``path``; the file is looked up on first use, as with aiofiles."""
        return PreadReader(self, os.path.normpath(path))

    # -- inspection helpers for tests --------------------------------------------------------

    def read_bytes(self, path: str) -> bytes:
        """The current contents of the file ``path``.

        :raises FileNotFoundError: no such file.
        """
        path = os.path.normpath(path)
        with self._mutex:
            inode = self._entries.get(path)
            if inode is None:
                raise oserror(errno.ENOENT, path)
            return bytes(inode.data)

    def write_bytes(self, path: str, data: bytes) -> None:
        """Replace the contents of ``path`` with ``data`` (creating the file and its directories).

        An existing file keeps its inode, so descriptors open on it see the new bytes. Meant
        for tests that damage a closed log; it is not a durable write.
        """
        path = os.path.normpath(path)
        self.makedirs(parent(path))
        with self._mutex:
            inode = self._entries.get(path)
            if inode is None:
                self._create(path, data)
            else:
                self._truncate(inode, 0)
                self._write(inode, bytes(data), 0)

    def files(self, dirpath: str) -> dict[str, bytes]:
        """``{name: contents}`` of every regular file directly inside ``dirpath``."""
        dirpath = os.path.normpath(dirpath)
        with self._mutex:
            return {
                os.path.basename(p): bytes(inode.data)
                for p, inode in sorted(self._entries.items())
                if parent(p) == dirpath
            }

    def snapshot(self) -> dict[str, bytes]:
        """``{path: contents}`` of every file; :meth:`from_image` turns it back into a file system."""
        with self._mutex:
            return {p: bytes(inode.data) for p, inode in sorted(self._entries.items())}

    @classmethod
    def from_image(cls, image: Mapping[str, bytes]) -> MemoryFileOps:
        """A new file system holding exactly the files of ``image`` (``{path: contents}``).

        The directories of every path are created. Use it to reopen a log on the state a
        simulated crash left behind.
        """
        ops = cls()
        for path, data in image.items():
            ops.write_bytes(path, data)
        return ops
