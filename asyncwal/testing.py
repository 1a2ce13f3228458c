"""Test doubles for the file-operations seam (:class:`asyncwal._fileops.FileOps`).

Like ``trio.testing`` or httpx's ``MockTransport``, this module is public so that users of
asyncwal can test their own code against a log that lives in memory or that fails on cue.

:class:`MemoryFileOps`
    An in-memory file system with POSIX semantics: an open descriptor refers to an inode,
    so it keeps reading and writing the same data after the path is renamed over or
    unlinked; ``pwrite`` past the end zero-fills the gap; ``pread`` is short at the end of
    the file; ``rename`` replaces its target atomically; ``lock`` is an exclusive lock per
    path. Thread-safe: one :class:`threading.Lock` guards all state, because the engine
    calls it from its executor thread while a test inspects it from the event-loop thread.

:class:`FaultyFileOps`
    Wraps another FileOps and forwards every call, but can make chosen calls fail
    (:meth:`FaultyFileOps.inject`), write short, or park until the test lets them go
    (:meth:`FaultyFileOps.block`). It counts every call in :attr:`FaultyFileOps.calls`.

:class:`PowerLossFileOps`
    A MemoryFileOps that records every create, write, truncate, sync, rename, unlink and
    directory sync, and afterwards builds the files a power cut after any of them could
    leave: ``image(at, rng)``, ``durable_image(at)``, ``crash(at, rng)`` (a MemoryFileOps to
    reopen the log on), and ``states()`` to visit every crash point in one pass. The crash
    model, deterministic given ``rng``:

    * bytes covered by a completed ``sync`` of their file always survive, with its size;
    * unsynced writes and truncates of a file survive as a prefix (the last one possibly cut
      short), or torn per 512-byte sector: each touched sector old or new, or, rarely,
      garbage in the bytes that were written there (never outside them: "powersafe
      overwrite"), with the old or the new size;
    * a name created, renamed or unlinked since the last ``sync_dir`` of its directory has
      any of the bindings it had since then, independently of the other names (a rename
      may be lost, half-done, or leave both names); directories themselves always survive.

    The campaigns of ``bench/crash_campaign.py`` reopen the real engine on these images.

Paths are plain strings and are compared after :func:`os.path.normpath`. Directories are
created only by ``makedirs`` (with all their ancestors); ``/`` and ``.`` always exist.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import os
import random
import threading
from typing import TYPE_CHECKING, Final, NamedTuple

from ._errors import LogLockedError
from ._fileops import FileKind, LockState, NotRegularFileError, OsFileOps, PreadReader, pwrite_each_then_sync

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

    from ._fileops import AsyncReader, FileOps

__all__ = ("CrashState", "Fault", "FaultyFileOps", "Gate", "MemoryFileOps", "PowerLossFileOps")


def _oserror(code: int, path: str | None = None) -> OSError:
    """An OSError as ``os`` raises it: ``OSError(ENOENT, ...)`` is a FileNotFoundError."""
    if path is None:
        return OSError(code, os.strerror(code))
    return OSError(code, os.strerror(code), path)


def _parent(path: str) -> str:
    """The directory holding the (normalized) ``path``."""
    return os.path.dirname(path) or "."


# -- MemoryFileOps -------------------------------------------------------------------------


class _Create(NamedTuple):
    path: str
    ino: int


class _Write(NamedTuple):
    ino: int
    offset: int
    data: bytes


class _Truncate(NamedTuple):
    ino: int
    size: int


class _Sync(NamedTuple):
    ino: int


class _Rename(NamedTuple):
    src: str
    dst: str
    ino: int


class _Unlink(NamedTuple):
    path: str
    ino: int


class _SyncDir(NamedTuple):
    path: str


#: A change of state of a MemoryFileOps, as PowerLossFileOps records it.
_Event = _Create | _Write | _Truncate | _Sync | _Rename | _Unlink | _SyncDir


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

    def _event(self, event: _Event) -> None:
        """Called after each change of state; ``PowerLossFileOps`` records them."""

    # -- internal helpers (self._mutex must be held) ---------------------------------------

    def _handle(self, fd: int) -> _Handle:
        try:
            return self._handles[fd]
        except KeyError:
            raise _oserror(errno.EBADF) from None

    def _check_parent(self, path: str) -> None:
        parent = _parent(path)
        if parent in self._dirs:
            return
        if parent in self._entries or parent in self._specials:
            raise _oserror(errno.ENOTDIR, path)
        raise _oserror(errno.ENOENT, path)

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
        self._event(_Create(path, inode.ino))
        if data:
            self._event(_Write(inode.ino, 0, bytes(data)))
        return inode

    def _write(self, inode: _Inode, data: bytes, offset: int) -> None:
        buf = inode.data
        end = offset + len(data)
        if offset > len(buf):
            buf.extend(bytes(offset - len(buf)))
        buf[offset:end] = data
        self._unsynced.add(inode.ino)
        self._event(_Write(inode.ino, offset, data))

    def _truncate(self, inode: _Inode, size: int) -> None:
        buf = inode.data
        if size < len(buf):
            del buf[size:]
        else:
            buf.extend(bytes(size - len(buf)))
        self._unsynced.add(inode.ino)
        self._event(_Truncate(inode.ino, size))

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
                    raise _oserror(errno.EEXIST, p)
                todo.append(p)
                up = _parent(p)
                if up == p:
                    break
                p = up
            self._dirs.update(todo)

    def listdir(self, path: str) -> list[str]:
        """Names of the files and directories directly inside ``path``, sorted."""
        path = os.path.normpath(path)
        with self._mutex:
            if path not in self._dirs:
                raise _oserror(errno.ENOTDIR if path in self._entries else errno.ENOENT, path)
            names = {os.path.basename(p) for p in (*self._entries, *self._specials) if _parent(p) == path}
            names.update(os.path.basename(d) for d in self._dirs if d != path and _parent(d) == path)
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
                raise _oserror(errno.EEXIST, path)
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
                raise _oserror(errno.EEXIST, path)
            inode = self._regular(path)
            if inode is None:
                self._check_parent(path)
                if not create:
                    raise _oserror(errno.ENOENT, path)
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
                raise _oserror(errno.ENOENT, path)
            return self._new_fd(inode, path, writable=False)

    def close(self, fd: int) -> None:
        with self._mutex:
            self._handle(fd)
            del self._handles[fd]

    def _write_handle(self, fd: int, offset: int) -> _Handle:
        """The handle of ``fd``, checked for a write at ``offset`` (self._mutex held)."""
        handle = self._handle(fd)
        if not handle.writable:
            raise _oserror(errno.EBADF)
        if offset < 0:
            raise _oserror(errno.EINVAL)
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
            self._event(_Sync(ino))
            return len(payload)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        """Up to ``size`` bytes at ``offset``: fewer at the end of the file, ``b""`` past it."""
        with self._mutex:
            handle = self._handle(fd)
            if offset < 0 or size < 0:
                raise _oserror(errno.EINVAL)
            return bytes(handle.inode.data[offset : offset + size])

    def size(self, fd: int) -> int:
        with self._mutex:
            return len(self._handle(fd).inode.data)

    def truncate(self, fd: int, size: int) -> None:
        """Cut the file to ``size`` bytes, or grow it with zeros."""
        with self._mutex:
            handle = self._handle(fd)
            if not handle.writable or size < 0:
                raise _oserror(errno.EINVAL)
            self._truncate(handle.inode, size)

    def sync(self, fd: int) -> None:
        with self._mutex:
            handle = self._handle(fd)
            self._unsynced.discard(handle.inode.ino)
            self._event(_Sync(handle.inode.ino))

    def sync_dir(self, path: str) -> None:
        path = os.path.normpath(path)
        with self._mutex:
            if path not in self._dirs:
                raise _oserror(errno.ENOTDIR if path in self._entries else errno.ENOENT, path)
            self._event(_SyncDir(path))

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
                    raise _oserror(errno.EPERM, src)  # renaming directories is not modelled
                if src not in self._specials:
                    raise _oserror(errno.ENOENT, src)
            if dst in self._dirs:
                raise _oserror(errno.EISDIR, dst)
            self._check_parent(dst)
            if src == dst:
                return
            if inode is None:  # a special name: not a recorded event (crash images drop them)
                if dst in self._entries:
                    self._event(_Unlink(dst, self._entries.pop(dst).ino))
                self._specials[dst] = self._specials.pop(src)
                return
            self._specials.pop(dst, None)
            del self._entries[src]
            self._entries[dst] = inode
            self._event(_Rename(src, dst, inode.ino))

    def unlink(self, path: str) -> None:
        """Remove the name ``path``; descriptors open on the file keep working."""
        path = os.path.normpath(path)
        with self._mutex:
            if self._specials.pop(path, None) is not None:
                return
            inode = self._entries.pop(path, None)
            if inode is None:
                raise _oserror(errno.EISDIR if path in self._dirs else errno.ENOENT, path)
            self._event(_Unlink(path, inode.ino))

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
                    f"{_parent(path)} is locked by another opener" + (f" (pid {pid})" if pid else "")
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
                raise _oserror(errno.EBADF) from None
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
                raise _oserror(errno.ENOENT, path)
            return bytes(inode.data)

    def write_bytes(self, path: str, data: bytes) -> None:
        """Replace the contents of ``path`` with ``data`` (creating the file and its directories).

        An existing file keeps its inode, so descriptors open on it see the new bytes. Meant
        for tests that damage a closed log; it is not a durable write.
        """
        path = os.path.normpath(path)
        self.makedirs(_parent(path))
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
                if _parent(p) == dirpath
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


# -- FaultyFileOps -----------------------------------------------------------------------------


def _matches(path_contains: str | None, paths: tuple[str, ...]) -> bool:
    return path_contains is None or any(path_contains in p for p in paths)


class Fault:
    """One injected fault, as returned by :meth:`FaultyFileOps.inject`.

    :ivar seen: matching calls so far (whether or not they failed)
    :ivar fired: calls this fault made fail or write short
    """

    def __init__(
        self,
        owner: FaultyFileOps,
        op: str,
        error: int | None,
        after: int,
        times: int | None,
        path_contains: str | None,
        short: int | None,
    ) -> None:
        self._owner = owner
        self.op: Final = op
        self.error: Final = error
        self.after: Final = after
        self.times: Final = times
        self.path_contains: Final = path_contains
        self.short: Final = short
        self.seen = 0
        self.fired = 0

    def remove(self) -> None:
        """Stop injecting this fault (later calls go through)."""
        self._owner._remove_fault(self)

    def __repr__(self) -> str:
        return (
            f"Fault(op={self.op!r}, error={self.error}, after={self.after}, times={self.times}, "
            f"path_contains={self.path_contains!r}, short={self.short}, seen={self.seen}, "
            f"fired={self.fired})"
        )


class Gate:
    """Parks matching calls in their calling thread until :meth:`release` is called.

    Returned by :meth:`FaultyFileOps.block`. A parked call blocks its thread (the engine's
    executor thread), so never let a call be parked on the event-loop thread.
    """

    def __init__(self, op: str, path_contains: str | None, after: int) -> None:
        self.op: Final = op
        self.path_contains: Final = path_contains
        self.after: Final = after
        self._released = threading.Event()
        self._mutex = threading.Lock()
        self._seen = 0
        self._entered = 0
        # (loop, future, count): resolved on ``loop`` once ``count`` calls have entered
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None], int]] = []

    @property
    def entered(self) -> int:
        """Number of calls that reached the gate (parked, or passed after release)."""
        with self._mutex:
            return self._entered

    @property
    def released(self) -> bool:
        return self._released.is_set()

    def release(self) -> None:
        """Let every parked call, and every later one, through. Idempotent; thread-safe."""
        self._released.set()

    async def wait_entered(self, count: int = 1) -> None:
        """Return once ``count`` calls in total have reached the gate.

        Woken by the entering thread through ``loop.call_soon_threadsafe``: no polling.
        """
        loop = asyncio.get_running_loop()
        with self._mutex:
            if self._entered >= count:
                return
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, fut, count))
        await fut

    def _counts(self) -> bool:
        """Called for a matching call (owner's mutex held): does the gate apply to it?"""
        with self._mutex:
            self._seen += 1
            return self._seen > self.after

    def _enter(self) -> None:
        """Park the calling thread until release; wake the loops waiting for this entry."""
        with self._mutex:
            self._entered += 1
            ready = [w for w in self._waiters if w[2] <= self._entered]
            self._waiters = [w for w in self._waiters if w[2] > self._entered]
        for loop, fut, _ in ready:
            try:
                loop.call_soon_threadsafe(_resolve, fut)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass
        self._released.wait()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class FaultyFileOps:
    """A FileOps that forwards to ``base`` and fails, writes short or blocks on cue.

    Every call is counted in :attr:`calls` (by method name, including calls that fail),
    then parked by any matching :class:`Gate`, then failed by the first matching
    :class:`Fault` that fires, and only then forwarded. A failing call does not reach
    ``base`` at all (except ``close``: the descriptor is closed and then the error raised,
    as Linux always releases a descriptor).

    ``path_contains`` filters match a substring of the path: for descriptor methods
    (``pwrite``, ``sync``...) the path the descriptor was opened with; for ``rename``
    either path; for ``unlock`` the locked path.

    :param base: the FileOps to wrap; a new :class:`~asyncwal._fileops.OsFileOps` if None.
    """

    def __init__(self, base: FileOps | None = None) -> None:
        self.base: Final[FileOps] = base if base is not None else OsFileOps()
        self.calls: collections.Counter[str] = collections.Counter()
        self._mutex = threading.Lock()
        self._faults: list[Fault] = []
        self._gates: list[Gate] = []
        self._paths: dict[int, str] = {}  # open fd -> path it was opened with
        self._lock_paths: dict[int, str] = {}  # lock handle -> path

    # -- configuration -------------------------------------------------------------------

    def inject(
        self,
        op: str,
        error: int | None = errno.EIO,
        *,
        after: int = 0,
        times: int | None = 1,
        path_contains: str | None = None,
        short: int | None = None,
    ) -> Fault:
        """Make calls of method ``op`` fail.

        The first ``after`` matching calls go through; the next ``times`` ones (every later
        one if ``times`` is None) raise ``OSError(error, os.strerror(error))``.

        With ``short=k`` (``op`` must be ``"pwrite"``), the first firing call instead writes
        only the first ``k`` bytes of its data (forwarded to ``base``) and returns ``k`` (at
        most the data's length); the later firing calls raise ``error``, or are short writes
        too if ``error`` is None. So ``inject("pwrite", short=5)`` is one short write after
        which the caller's retry succeeds, and ``inject("pwrite", errno.ENOSPC, short=5,
        times=2)`` is a short write followed by ENOSPC, as a filling disk does.

        :raises ValueError: ``short`` on an operation other than pwrite, or nothing to inject.
        :return: the :class:`Fault`, to inspect (``seen``, ``fired``) or ``remove()``.
        """
        if short is not None and op != "pwrite":
            raise ValueError("short= only applies to pwrite")
        if short is None and error is None:
            raise ValueError("give an error, or short= for a short write")
        if after < 0 or (times is not None and times < 0) or (short is not None and short < 0):
            raise ValueError("after, times and short must be >= 0")
        fault = Fault(self, op, error, after, times, path_contains, short)
        with self._mutex:
            self._faults.append(fault)
        return fault

    def block(self, op: str, *, path_contains: str | None = None, after: int = 0) -> Gate:
        """Park calls of method ``op`` (the ones after the first ``after`` matching calls)
        in their thread until the returned gate is released.

        ``await gate.wait_entered()`` returns once a call is parked.
        """
        gate = Gate(op, path_contains, after)
        with self._mutex:
            self._gates.append(gate)
        return gate

    def clear(self) -> None:
        """Remove every fault and gate; gates are released first, so nothing stays parked."""
        with self._mutex:
            gates, self._gates = self._gates, []
            self._faults.clear()
        for gate in gates:
            gate.release()

    def _remove_fault(self, fault: Fault) -> None:
        with self._mutex:
            if fault in self._faults:
                self._faults.remove(fault)

    # -- the checkpoint every call goes through --------------------------------------------

    def _before(self, op: str, *paths: str) -> Fault | None:
        """Count the call, park it at matching gates, and return the fault that fires, if any."""
        with self._mutex:
            self.calls[op] += 1
            gates = [g for g in self._gates if g.op == op and _matches(g.path_contains, paths)]
            parked = [g for g in gates if g._counts()]
            firing = None
            for fault in self._faults:
                if fault.op != op or not _matches(fault.path_contains, paths):
                    continue
                fault.seen += 1
                if (
                    firing is None
                    and fault.seen > fault.after
                    and (fault.times is None or fault.fired < fault.times)
                ):
                    fault.fired += 1
                    firing = fault
        for gate in parked:
            gate._enter()
        return firing

    def _check(self, op: str, *paths: str) -> None:
        fault = self._before(op, *paths)
        if fault is not None:
            assert fault.error is not None
            raise _oserror(fault.error)

    def _fd_path(self, fd: int) -> str:
        with self._mutex:
            return self._paths.get(fd, "")

    # -- FileOps -------------------------------------------------------------------------

    def makedirs(self, path: str) -> None:
        self._check("makedirs", path)
        self.base.makedirs(path)

    def listdir(self, path: str) -> list[str]:
        self._check("listdir", path)
        return self.base.listdir(path)

    def exists(self, path: str) -> bool:
        self._check("exists", path)
        return self.base.exists(path)

    def kind(self, path: str) -> FileKind:
        self._check("kind", path)
        return self.base.kind(path)

    def open(self, path: str, *, create: bool = False, exclusive: bool = False) -> int:
        self._check("open", path)
        fd = self.base.open(path, create=create, exclusive=exclusive)
        with self._mutex:
            self._paths[fd] = path
        return fd

    def open_readonly(self, path: str) -> int:
        self._check("open_readonly", path)
        fd = self.base.open_readonly(path)
        with self._mutex:
            self._paths[fd] = path
        return fd

    def close(self, fd: int) -> None:
        fault = self._before("close", self._fd_path(fd))
        with self._mutex:
            self._paths.pop(fd, None)
        self.base.close(fd)
        if fault is not None:
            assert fault.error is not None
            raise _oserror(fault.error)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        fault = self._before("pwrite", self._fd_path(fd))
        if fault is not None:
            if fault.short is not None and (fault.fired == 1 or fault.error is None):
                k = min(fault.short, len(data))
                if k == 0:
                    return 0
                return self.base.pwrite(fd, memoryview(data)[:k], offset)
            assert fault.error is not None
            raise _oserror(fault.error)
        return self.base.pwrite(fd, data, offset)

    def pwritev_sync(self, fd: int, buffers: Sequence[bytes | memoryview], offset: int) -> int:
        """``pwrite`` of each buffer, then ``sync``: faults and gates set on either apply.

        A fault injected on ``sync`` thus also stands for a failed ``RWF_DSYNC`` write (the
        bytes written, their flush failed), so tests of fsync errors need not know which of
        the two calls the engine made.
        """
        return pwrite_each_then_sync(self, fd, buffers, offset)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        self._check("pread", self._fd_path(fd))
        return self.base.pread(fd, size, offset)

    def size(self, fd: int) -> int:
        self._check("size", self._fd_path(fd))
        return self.base.size(fd)

    def truncate(self, fd: int, size: int) -> None:
        self._check("truncate", self._fd_path(fd))
        self.base.truncate(fd, size)

    def sync(self, fd: int) -> None:
        self._check("sync", self._fd_path(fd))
        self.base.sync(fd)

    def sync_dir(self, path: str) -> None:
        self._check("sync_dir", path)
        self.base.sync_dir(path)

    def rename(self, src: str, dst: str) -> None:
        self._check("rename", src, dst)
        self.base.rename(src, dst)

    def unlink(self, path: str) -> None:
        self._check("unlink", path)
        self.base.unlink(path)

    def lock(self, path: str) -> int:
        self._check("lock", path)
        handle = self.base.lock(path)
        with self._mutex:
            self._lock_paths[handle] = path
        return handle

    def unlock(self, handle: int) -> None:
        with self._mutex:
            path = self._lock_paths.get(handle, "")
        self._check("unlock", path)
        self.base.unlock(handle)
        with self._mutex:
            self._lock_paths.pop(handle, None)

    def lock_probe(self, path: str) -> LockState:
        self._check("lock_probe", path)
        return self.base.lock_probe(path)

    def open_reader(self, path: str) -> AsyncReader:
        self._check("open_reader", path)
        return self.base.open_reader(path)


# -- PowerLossFileOps ----------------------------------------------------------------------------

#: Probability that a torn sector holds garbage instead of the old or the new bytes.
_GARBAGE_P: Final = 0.05


class _FileState:
    """One inode in the crash model: what is durable, and what happened since.

    Invariant: applying ``pending`` in order to ``durable`` gives ``current``; ``touched``
    (written ranges) and ``resized`` (ranges a truncate dropped or added) together hold
    every byte range that ``pending`` may have changed.
    """

    __slots__ = ("current", "durable", "pending", "resized", "touched")

    def __init__(self) -> None:
        self.durable = bytearray()
        self.current = bytearray()
        self.pending: list[tuple[int, bytes] | int] = []  # (offset, data) writes; int: truncate
        self.touched: list[tuple[int, int]] = []
        self.resized: list[tuple[int, int]] = []

    def write(self, offset: int, data: bytes) -> None:
        _apply_write(self.current, offset, data)
        self.pending.append((offset, data))
        self.touched.append((offset, offset + len(data)))

    def truncate(self, size: int) -> None:
        old = len(self.current)
        _apply_truncate(self.current, size)
        self.pending.append(size)
        if old != size:
            self.resized.append((min(old, size), max(old, size)))

    def sync(self) -> None:
        if self.pending:
            self.durable = bytearray(self.current)
            self.pending = []
            self.touched = []
            self.resized = []

    def sample(self, rng: random.Random, sector: int) -> bytes:
        """Contents after a power cut: durable bytes always; unsynced ones in part or torn."""
        if not self.pending:
            return bytes(self.durable)
        if rng.random() < 0.5:
            # Prefix: the first k unsynced operations reached the disk, then part of the next.
            k = rng.randint(0, len(self.pending))
            buf = bytearray(self.durable)
            for op in self.pending[:k]:
                _apply(buf, op)
            if k < len(self.pending):
                op = self.pending[k]
                if not isinstance(op, int) and op[1]:
                    cut = rng.randint(0, len(op[1]))
                    if cut:
                        _apply_write(buf, op[0], op[1][:cut])
            return bytes(buf)
        # Torn: every touched sector independently holds its old bytes, its new bytes or
        # (rarely) garbage in the bytes that were written; the size is the old or the new one.
        # Bytes outside every unsynced write are never damaged ("powersafe overwrite"), and
        # bytes that only a truncate changed are old or new (zeros), never garbage.
        old, new = self.durable, self.current
        n = max(len(old), len(new))
        out = bytearray(old)
        out.extend(bytes(n - len(out)))
        new_ext = bytes(new) + bytes(n - len(new))
        p_new = rng.random()
        ranges = _merge(self.touched, n)
        for s in _sectors(_merge(self.touched + self.resized, n), sector):
            lo, hi = s * sector, min((s + 1) * sector, n)
            x = rng.random()
            if x < _GARBAGE_P:
                for a, b in ranges:
                    a, b = max(a, lo), min(b, hi)
                    if a < b:
                        out[a:b] = rng.randbytes(b - a)
            elif x < p_new:
                out[lo:hi] = new_ext[lo:hi]
        size = rng.choice((len(old), len(new)))
        _apply_truncate(out, size)
        return bytes(out)


def _apply_write(buf: bytearray, offset: int, data: bytes) -> None:
    if offset > len(buf):
        buf.extend(bytes(offset - len(buf)))
    buf[offset : offset + len(data)] = data


def _apply_truncate(buf: bytearray, size: int) -> None:
    if size < len(buf):
        del buf[size:]
    else:
        buf.extend(bytes(size - len(buf)))


def _apply(buf: bytearray, op: tuple[int, bytes] | int) -> None:
    if isinstance(op, int):
        _apply_truncate(buf, op)
    else:
        _apply_write(buf, op[0], op[1])


def _merge(ranges: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """Sorted, disjoint ranges covering ``ranges`` clipped to ``[0, limit)``."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        b = min(b, limit)
        if a >= b:
            continue
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _sectors(ranges: list[tuple[int, int]], sector: int) -> list[int]:
    """Indexes of the sectors that intersect the sorted, disjoint ``ranges``, ascending."""
    out: list[int] = []
    for a, b in ranges:
        first = max(a // sector, out[-1] + 1 if out else 0)
        out.extend(range(first, (b - 1) // sector + 1))
    return out


class CrashState:
    """The crash model after some prefix of a :class:`PowerLossFileOps` run.

    :meth:`sample` draws one on-disk image a power cut at that moment could leave;
    :meth:`durable` is the worst case without tearing (only synced data, only directory
    entries made durable by ``sync_dir``). A state from :meth:`PowerLossFileOps.states`
    is only valid until that iterator advances.
    """

    def __init__(self, sector_size: int) -> None:
        self._sector = sector_size
        self._files: dict[int, _FileState] = {}
        self._durable_names: dict[str, int] = {}
        self._current_names: dict[str, int] = {}
        # Names changed since their directory's last sync_dir: every binding they have had
        # since then, oldest first, starting with the durable one (None = no such name).
        self._history: dict[str, list[int | None]] = {}

    def _bind(self, path: str, ino: int | None) -> None:
        hist = self._history.setdefault(path, [self._durable_names.get(path)])
        hist.append(ino)
        if ino is None:
            self._current_names.pop(path, None)
        else:
            self._current_names[path] = ino

    def apply(self, event: _Event) -> None:
        """Advance the model by one recorded operation."""
        match event:
            case _Create(path, ino):
                self._files[ino] = _FileState()
                self._bind(path, ino)
            case _Write(ino, offset, data):
                self._files[ino].write(offset, data)
            case _Truncate(ino, size):
                self._files[ino].truncate(size)
            case _Sync(ino):
                self._files[ino].sync()
            case _Rename(src, dst, ino):
                self._bind(dst, ino)
                self._bind(src, None)
            case _Unlink(path, _):
                self._bind(path, None)
            case _SyncDir(directory):
                for path in [p for p in self._history if _parent(p) == directory]:
                    del self._history[path]
                    bound = self._current_names.get(path)
                    if bound is None:
                        self._durable_names.pop(path, None)
                    else:
                        self._durable_names[path] = bound

    def settle(self) -> None:
        """Make everything durable, as after a clean shutdown with every fsync done."""
        for f in self._files.values():
            f.sync()
        for directory in {_parent(p) for p in self._history}:
            self.apply(_SyncDir(directory))

    def sample(self, rng: random.Random) -> dict[str, bytes]:
        """One image a power cut could leave: ``{path: contents}`` of every file.

        Per file: everything synced survives; the unsynced operations survive as a prefix
        (the last one possibly cut short), or torn per sector (old bytes, new bytes or, with
        probability 5%, garbage in the written bytes of that sector) with the old or new size;
        bytes dropped by an unsynced shrinking truncate may read back as zeros.
        Per name changed since its directory's last ``sync_dir``: any binding it has had
        since then (so a create, rename or unlink may or may not be on disk, independently
        for each name). Deterministic given the state of ``rng``.
        """
        names = set(self._durable_names) | set(self._history)
        chosen: dict[str, int] = {}
        for path in sorted(names):
            hist = self._history.get(path)
            if hist is None:
                chosen[path] = self._durable_names[path]
                continue
            options = list(dict.fromkeys(hist))  # distinct bindings, in order
            ino = rng.choice(options)
            if ino is not None:
                chosen[path] = ino
        contents: dict[int, bytes] = {}
        image: dict[str, bytes] = {}
        for path, ino in chosen.items():
            if ino not in contents:
                contents[ino] = self._files[ino].sample(rng, self._sector)
            image[path] = contents[ino]
        return image

    def durable(self) -> dict[str, bytes]:
        """The image holding only synced data under only directory-synced names."""
        return {p: bytes(self._files[ino].durable) for p, ino in sorted(self._durable_names.items())}

    def unsynced(self) -> bool:
        """True if some data or directory entry is not yet durable (a sample may differ)."""
        return bool(self._history) or any(f.pending for f in self._files.values())


class PowerLossFileOps(MemoryFileOps):
    """A :class:`MemoryFileOps` that records every change so power cuts can be simulated.

    Recorded operations (each one is a *crash point*): file creation (``open`` with
    ``create``, ``lock``), ``pwrite``, ``truncate``, ``sync``, ``rename``, ``unlink`` and
    ``sync_dir``. The live file system behaves exactly like :class:`MemoryFileOps` (no
    crash); a crash is simulated afterwards, for any prefix of the run:

    * :meth:`image` ``(at, rng)``: the files a power cut right after the first ``at``
      operations could leave, drawn with ``rng`` (see :meth:`CrashState.sample` for the
      model: synced data always survives; unsynced data survives as a prefix or torn per
      ``sector_size`` sector, possibly with garbage in a torn sector; a create, rename or
      unlink not yet covered by ``sync_dir`` of its directory may or may not be on disk).
      ``at`` runs from 0 (nothing happened) to :meth:`crash_points` (after the last one).
    * :meth:`durable_image`: the worst case without tearing (LevelDB's "state as of the last
      sync").
    * :meth:`crash`: a fresh :class:`MemoryFileOps` holding an image and every directory, to
      reopen the real engine on.
    * :meth:`states`: every crash point in one pass, for campaigns (replaying to each point
      from scratch with :meth:`image` is quadratic).
    * :meth:`describe`: the operation at a crash point, for failure messages.

    Model limits: directories are always durable; ``sync`` is ``fdatasync`` and covers the
    file's data and size but not its name; bytes outside an unsynced write are never damaged.
    Everything is deterministic given the random generators passed in.

    :param image: files (``{path: contents}``) present and durable before the run, e.g. an
        image from an earlier crash. Their directories are created.
    :param sector_size: the unit of torn writes, bytes.
    """

    def __init__(self, image: Mapping[str, bytes] | None = None, *, sector_size: int = 512) -> None:
        if sector_size <= 0:
            raise ValueError("sector_size must be positive")
        self._events: list[_Event] = []
        self._paths_of: dict[int, str] = {}  # ino -> its current path
        self._event_paths: list[str] = []  # per event: the path of its file then, for describe()
        self.sector_size: Final = sector_size
        super().__init__()
        for path, data in (image or {}).items():
            self.write_bytes(path, data)
        self._start: Final = len(self._events)  # events before this are the durable baseline

    def _event(self, event: _Event) -> None:
        self._events.append(event)
        if isinstance(event, _Create):
            self._paths_of[event.ino] = event.path
        elif isinstance(event, _Rename):
            self._paths_of[event.ino] = event.dst
        ino = getattr(event, "ino", None)
        self._event_paths.append(self._paths_of.get(ino, f"inode {ino}") if isinstance(ino, int) else "")

    def _snapshot_events(self) -> list[_Event]:
        with self._mutex:
            return list(self._events)

    def crash_points(self) -> int:
        """Number of operations recorded since construction (``image(at)`` takes 0..this)."""
        with self._mutex:
            return len(self._events) - self._start

    def describe(self, at: int) -> str:
        """A readable description of the ``at``-th operation (1-based): the last one before
        a crash at ``at``."""
        if at == 0:
            return "before the first operation"
        with self._mutex:
            event = self._events[self._start + at - 1]
            path_then = self._event_paths[self._start + at - 1]
        match event:
            case _Write(_, offset, data):
                return f"#{at} pwrite {path_then} @{offset} +{len(data)}"
            case _Truncate(_, size):
                return f"#{at} truncate {path_then} to {size}"
            case _Sync(_):
                return f"#{at} sync {path_then}"
            case _Create(path, _):
                return f"#{at} create {path}"
            case _Rename(src, dst, _):
                return f"#{at} rename {src} -> {dst}"
            case _Unlink(path, _):
                return f"#{at} unlink {path}"
            case _SyncDir(path):
                return f"#{at} sync_dir {path}"
        raise AssertionError(event)  # pragma: no cover

    def _initial_state(self, events: list[_Event]) -> CrashState:
        state = CrashState(self.sector_size)
        for event in events[: self._start]:
            state.apply(event)
        state.settle()
        return state

    def states(self, points: Iterable[int] | None = None) -> Iterator[tuple[int, CrashState]]:
        """Yield ``(at, state)`` for each crash point in ``points`` (ascending; default: all,
        0 to :meth:`crash_points`), replaying the run once.

        ``state.sample(rng)`` equals ``image(at, rng)`` for a generator in the same state.
        A yielded state is valid only until the iterator is advanced.
        """
        events = self._snapshot_events()
        total = len(events) - self._start
        wanted = range(total + 1) if points is None else points
        state = self._initial_state(events)
        done = 0
        for at in wanted:
            if not done <= at <= total:
                raise ValueError(f"crash point {at} out of order or out of range 0..{total}")
            for event in events[self._start + done : self._start + at]:
                state.apply(event)
            done = at
            yield at, state

    def state(self, at: int | None = None) -> CrashState:
        """The crash model after the first ``at`` operations (all of them if None)."""
        for _, state in self.states([self.crash_points() if at is None else at]):
            return state
        raise AssertionError("unreachable")  # pragma: no cover

    def image(self, at: int | None = None, rng: random.Random | None = None) -> dict[str, bytes]:
        """Files a power cut right after the first ``at`` operations could leave.

        :param at: crash point, 0..crash_points(); None means after everything
        :param rng: the source of every random choice; ``random.Random(0)`` if None
        :return: ``{path: contents}``
        """
        return self.state(at).sample(rng if rng is not None else random.Random(0))

    def durable_image(self, at: int | None = None) -> dict[str, bytes]:
        """Only the synced data of only the directory-synced names, at crash point ``at``."""
        return self.state(at).durable()

    def crash(self, at: int | None = None, rng: random.Random | None = None) -> MemoryFileOps:
        """A new :class:`MemoryFileOps` holding :meth:`image` ``(at, rng)`` and every directory
        of this file system (directories are always durable)."""
        return self.from_state(self.state(at), rng if rng is not None else random.Random(0))

    def from_state(self, state: CrashState, rng: random.Random) -> MemoryFileOps:
        """A new :class:`MemoryFileOps` with ``state.sample(rng)`` and every directory."""
        ops = MemoryFileOps.from_image(state.sample(rng))
        with self._mutex:
            dirs = sorted(self._dirs)
        for d in dirs:
            ops.makedirs(d)
        return ops
