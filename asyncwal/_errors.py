"""The asyncwal exception tree.

::

    WALError
    ├── LogClosedError        the log was closed (or close() has started)
    ├── LogFailedError        a write or fsync failed; the log refuses all further work.
    │                         ``__cause__`` is the OSError. Sticky until the log is reopened.
    ├── CorruptLogError       bad bytes that recovery may not cut; ``.segment`` and ``.offset``
    ├── LogLockedError        another opener holds the directory lock
    ├── RecordTooLargeError   also a ValueError: a record or batch over its size limit
    ├── WrongEventLoopError   also a RuntimeError: the log was used from another event loop
    ├── WrongProcessError     also a RuntimeError: the log was used in a child after fork()
    └── TruncatedError        a reader's position was removed by truncate_before()

Once a log is open, every storage error that leaves its methods is one of these: an
``OSError`` from the file system is never raised bare from an append, a sync or a close, it
is the ``__cause__`` of a :class:`LogFailedError`. Only :func:`asyncwal.open` raises a plain
``OSError``, as the built-in ``open`` does, when the directory cannot be created, read or
locked.
"""

from __future__ import annotations

__all__ = (
    "CorruptLogError",
    "LogClosedError",
    "LogFailedError",
    "LogLockedError",
    "RecordTooLargeError",
    "TruncatedError",
    "WALError",
    "WrongEventLoopError",
    "WrongProcessError",
)


class WALError(Exception):
    """Base class of every asyncwal error."""


class LogClosedError(WALError):
    """The log is closed, or ``close()`` has started."""


class LogFailedError(WALError):
    """A write or fsync failed. The log is in the failed state and every later call raises.

    Records that were waiting when the failure happened have an *unknown* outcome: they may
    or may not be found by recovery. Nothing is ever reported durable after a failed fsync.
    Reopen the log to run recovery.
    """


class CorruptLogError(WALError):
    """The log holds damage that the chosen recovery mode does not allow to be cut.

    :ivar segment: path of the damaged file
    :ivar offset: byte offset of the first bad byte in that file
    """

    def __init__(self, message: str, *, segment: str, offset: int) -> None:
        super().__init__(f"{message} (file {segment!r}, offset {offset})")
        self.segment = segment
        self.offset = offset


class LogLockedError(WALError):
    """Another opener, in this process or another, holds the log directory."""


class RecordTooLargeError(WALError, ValueError):
    """A record is larger than ``max_record_size``, or a batch larger than ``max_batch_bytes``."""


class WrongEventLoopError(WALError, RuntimeError):
    """A log is bound to the event loop that opened it and was used from another one."""


class TruncatedError(WALError):
    """A reader's position was deleted by ``truncate_before()`` before it could be read."""


class WrongProcessError(WALError, RuntimeError):
    """A log is bound to the process that opened it and was used in a child after ``fork()``.

    The child never touches the parent's files, lock or I/O thread: open the log (or, for
    several worker processes, a sharded log) in the child instead.
    """
