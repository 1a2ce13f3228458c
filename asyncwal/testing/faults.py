"""A FileOps wrapper that fails, writes short or parks calls on cue: :class:`FaultyFileOps`.

It forwards every call to another FileOps (the real one by default), counts them, parks
matching calls at a :class:`Gate` until the test releases it, and makes matching calls fail
with a chosen ``errno`` (a :class:`Fault`). It is LevelDB's ``FaultInjectionTestEnv`` idea:
the engine under test is never patched, only its file system misbehaves.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import threading
from typing import TYPE_CHECKING, Final

from .._fileops import OsFileOps, pwrite_each_then_sync
from ._common import oserror

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._fileops import AsyncReader, FileKind, FileOps, LockState

__all__ = ("Fault", "FaultyFileOps", "Gate")


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
        if not self._released.is_set() and asyncio._get_running_loop() is not None:
            raise RuntimeError(
                f"a Gate on {self.op!r} would park an event-loop thread, which would never wake: "
                "the call was made on the loop (batch/none modes write small groups there; open "
                "the log with loop_writes=False to keep every write on the I/O thread)"
            )
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
            raise oserror(fault.error)

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
            raise oserror(fault.error)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        fault = self._before("pwrite", self._fd_path(fd))
        if fault is not None:
            if fault.short is not None and (fault.fired == 1 or fault.error is None):
                k = min(fault.short, len(data))
                if k == 0:
                    return 0
                return self.base.pwrite(fd, memoryview(data)[:k], offset)
            assert fault.error is not None
            raise oserror(fault.error)
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
