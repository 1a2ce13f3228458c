"""The POSIX calls of the file-operations seam that need ``fcntl``: the directory lock and
macOS's full sync.

Imported only by :func:`asyncwal._fileops.platform_locks`, on first use, so that
``import asyncwal`` does not need ``fcntl``. Every function takes a descriptor that
:mod:`asyncwal._fileops` opened and checked to be a regular file; none of them opens,
creates or writes a file.
"""

from __future__ import annotations

import errno
import fcntl

__all__ = ("PosixLocks",)


class PosixLocks:
    """``flock`` locks: advisory, per open file description, released when it is closed (so a
    process that dies releases its lock with its descriptors)."""

    def try_lock(self, fd: int) -> bool:
        """Take an exclusive lock on ``fd`` without waiting; False if another holds one."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def is_held(self, fd: int) -> bool:
        """True if another open file description holds an exclusive lock on the file.

        Takes a shared lock without waiting and releases it at once. On a file system
        without ``flock`` (some network ones) nobody can hold the lock: False.
        """
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError as exc:  # pragma: no cover - file systems without flock
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP):
                return False
            raise
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False

    def full_sync(self, fd: int) -> None:  # pragma: no cover - macOS only
        """Flush the file to stable storage, drive cache included (``F_FULLFSYNC``)."""
        fcntl.fcntl(fd, fcntl.F_FULLFSYNC)  # type: ignore[attr-defined,unused-ignore]
