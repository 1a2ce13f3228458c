"""The asyncwal exception tree.

::

    WALError
    ├── LogClosedError        the log was closed (or close() has started)
    ├── LogFailedError        a write or fsync failed; the log refuses all further work.
    │                         ``__cause__`` is the OSError. Sticky until the log is reopened.
    ├── CorruptLogError       bad bytes that recovery may not cut; ``.segment`` and ``.offset``
    ├── LogLockedError        another opener holds the directory lock
    │   └── NoFreeShardError  open_sharded(): every shard up to max_shards is held
    ├── RecordTooLargeError   also a ValueError: a record or batch over its size limit
    ├── WrongEventLoopError   also a RuntimeError: the log was used from another event loop
    ├── WrongProcessError     also a RuntimeError: the log was used in a child after fork()
    ├── TruncatedError        a reader's position was removed by truncate_before()
    └── ReplicationError      shipping the log to its stream failed or cannot start
        ├── ReplicationTimeoutError  also a TimeoutError: a REPLICATED wait ran out of time;
        │                            the record stays committed locally (outcome ambiguous)
        ├── StreamMismatchError      the stream belongs to another log, or holds a message
        │                            that asyncwal did not write (or that is damaged)
        └── DivergedError            the local log and its stream disagree: the log is behind
                                     the stream (restore it) or holds other records

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
    "DivergedError",
    "NoFreeShardError",
    "RecordTooLargeError",
    "ReplicationError",
    "ReplicationTimeoutError",
    "StreamMismatchError",
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


class NoFreeShardError(LogLockedError):
    """:func:`asyncwal.open_sharded` found every shard up to ``max_shards`` held by other
    openers: more processes than shards. Raise ``max_shards`` or run fewer processes."""


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


class ReplicationError(WALError):
    """Shipping the log to its replication stream failed, or cannot start."""


class ReplicationTimeoutError(ReplicationError, TimeoutError):
    """A wait at ``Durability.REPLICATED`` ran out of time.

    The record is committed locally (it is on ``DISK``) and stays in the log; whether the
    stream has it is *unknown*: it may be stored there already, or be shipped later when the
    stream is reachable again. Nothing is ever reported replicated without the stream's
    acknowledgement, and the log never downgrades a ``REPLICATED`` wait to a lower level.

    :ivar seq: the record that was waited for
    """

    def __init__(self, message: str, *, seq: int) -> None:
        super().__init__(message)
        self.seq = seq


class StreamMismatchError(ReplicationError):
    """The stream is not this log's: it belongs to another log id, or holds a message that
    asyncwal did not write or that fails its checks. Nothing local is changed."""


class DivergedError(ReplicationError):
    """The local log and its stream disagree.

    Either the log is *behind* the stream (it lost records the stream has: a ``batch`` or
    ``none`` tail in a power cut, or a lost disk; run ``asyncwal restore``), or a record the
    stream holds differs from the local record with the same seq.

    :ivar local_seq: the local log's last seq
    :ivar stream_seq: the last seq the stream holds
    """

    def __init__(self, message: str, *, local_seq: int, stream_seq: int) -> None:
        super().__init__(message)
        self.local_seq = local_seq
        self.stream_seq = stream_seq
