"""Options of :func:`asyncwal.open`, validated once, immutable afterwards."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from ._fileops import FileOps

__all__ = ("Durability", "Options", "RecoveryMode", "Replicate", "SyncMode")

SyncMode = Literal["sync", "batch", "none"]
RecoveryMode = Literal["tolerate_tail", "strict", "point_in_time"]

MiB = 1024 * 1024
MIN_SEGMENT_SIZE = 4096


class Durability(enum.IntEnum):
    """How far a record has travelled. Ordered: ``MEMORY < OS < DISK < REPLICATED``."""

    #: Accepted into the log's memory. Lost if the process dies.
    MEMORY = 0
    #: Handed to the kernel by ``write()``. Survives a crash of the process, not a power loss.
    OS = 1
    #: Covered by a completed ``fdatasync``/``fsync``. Survives a power loss.
    DISK = 2
    #: On local ``DISK`` and acknowledged by the replication target (stored on a quorum).
    #: Survives the loss of this machine. Only a log opened with replication offers it.
    REPLICATED = 3


class Replicate(Protocol):
    """What the ``replicate`` option takes: settings that start a log's replication, such as
    :class:`asyncwal.replication.NatsReplication` (the core never imports that package)."""

    def start_replication(self, log: Any, /) -> Awaitable[object]:
        """Start replicating the open ``log`` (an :class:`asyncwal.Log`) and give it the
        ``REPLICATED`` level; the log's close stops it."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """Everything :func:`asyncwal.open` accepts. Each field is documented with its trade-off.

    :param sync_mode: when ``await append()`` returns. ``"sync"`` (default): at ``DISK``, one
        fsync per group of concurrent appends. ``"batch"``: at ``OS``; an fsync follows once
        ``batch_size`` records are unsynced or ``batch_interval`` seconds after the first
        unsynced write, whichever comes first, so a power cut loses at most that window.
        ``"none"``: at ``MEMORY``; records reach the OS promptly but are fsynced only by
        ``sync()``, ``checkpoint()``, ``append_batch()``, a ``DISK`` append, rotation or close.
    :param batch_size: batch mode: unsynced records that force an fsync (>= 1).
    :param batch_interval: batch mode: seconds after the first unsynced write before an fsync.
    :param segment_size: bytes per segment file before a new one is started (>= 4096).
        A record larger than this gets a segment of its own.
    :param max_record_size: largest payload of one record, bytes. Readers never trust a
        length field beyond it, so reopen with at least the value the log was written with.
    :param max_batch_bytes: largest total payload of one ``append_batch()``, bytes.
    :param max_pending_bytes: backpressure: while more than this many bytes are queued and
        not yet written, ``append`` waits (in call order) instead of queueing more.
    :param recovery: what to do with damage found at open. ``"tolerate_tail"`` (default): cut
        a torn or corrupt tail of the last segment; damage elsewhere raises
        :class:`CorruptLogError`. ``"strict"``: any damage raises. ``"point_in_time"``: cut
        everything from the first bad record on, in whichever segment it is.
    :param preallocate: zero-fill segments ahead of the write position (in 256 KiB steps), so
        that the common ``fdatasync`` has no file-size change to commit. Measured on the
        project machine: ~93 us instead of ~125 us per 152-byte write + fdatasync.
    :param slow_fsync_seconds: an fsync slower than this is logged as a warning on the
        ``asyncwal`` logger. ``math.inf`` turns the warning off.
    :param loop_writes: ``batch`` and ``none`` modes: while the log's I/O thread is idle, a
        small group that needs no fsync is handed to the page cache by the event-loop thread
        itself (one plain ``pwrite``, as Redis writes its append-only file), saving two thread
        hand-offs per group. An fsync, a durable write, an open, rename or unlink never runs on
        the loop thread. ``False`` keeps every write on the I/O thread.
    :param slow_loop_write_seconds: two loop-thread writes in a row slower than this (dirty-page
        throttling, a busy disk) send the log back to I/O-thread writes for
        ``loop_write_backoff_seconds``, with one warning on the ``asyncwal`` logger. (One slow
        write alone is as likely the scheduler preempting the thread on a busy machine.)
    :param loop_write_backoff_seconds: how long loop-thread writes stay off after slow ones.
    :param file_ops: the file-operations seam (see :mod:`asyncwal.testing`); ``None`` means
        the real operating system.
    :param replicate: ship the log to a replicated stream and offer ``Durability.REPLICATED``
        (e.g. ``replicate=asyncwal.replication.NatsReplication(servers=[...])``; needs the
        ``nats`` extra). The shipper starts after recovery, before ``open`` returns; a stream
        that belongs to another log, or that the log is behind, fails the open. ``close()``
        ships what is durable (up to the settings' ``drain_timeout``) before it releases the
        log. See docs/replication.md.
    """

    sync_mode: SyncMode = "sync"
    batch_size: int = 100
    batch_interval: float = 0.01
    segment_size: int = 64 * MiB
    max_record_size: int = 16 * MiB
    max_batch_bytes: int = 16 * MiB
    max_pending_bytes: int = 64 * MiB
    recovery: RecoveryMode = "tolerate_tail"
    preallocate: bool = True
    slow_fsync_seconds: float = 1.0
    loop_writes: bool = True
    slow_loop_write_seconds: float = 0.001
    loop_write_backoff_seconds: float = 10.0
    file_ops: FileOps | None = None
    replicate: Replicate | None = None

    def __post_init__(self) -> None:
        if self.sync_mode not in ("sync", "batch", "none"):
            raise ValueError(f"sync_mode must be 'sync', 'batch' or 'none', not {self.sync_mode!r}")
        if self.recovery not in ("tolerate_tail", "strict", "point_in_time"):
            raise ValueError(
                f"recovery must be 'tolerate_tail', 'strict' or 'point_in_time', not {self.recovery!r}"
            )
        _positive_int("batch_size", self.batch_size, 1)
        _positive_int("segment_size", self.segment_size, MIN_SEGMENT_SIZE)
        _positive_int("max_record_size", self.max_record_size, 1)
        _positive_int("max_batch_bytes", self.max_batch_bytes, 1)
        _positive_int("max_pending_bytes", self.max_pending_bytes, 1)
        if self.max_record_size > 2**31 or self.max_batch_bytes > 2**31:
            raise ValueError("max_record_size and max_batch_bytes must be at most 2 GiB")
        for name in (
            "batch_interval",
            "slow_fsync_seconds",
            "slow_loop_write_seconds",
            "loop_write_backoff_seconds",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
            if math.isnan(value) or value <= 0:
                raise ValueError(f"{name} must be > 0 seconds, not {value!r}")
        if self.batch_interval == math.inf:
            raise ValueError("batch_interval must be finite: it bounds the loss window")
        if not isinstance(self.preallocate, bool):
            raise TypeError("preallocate must be a bool")
        if not isinstance(self.loop_writes, bool):
            raise TypeError("loop_writes must be a bool")
        if self.file_ops is not None:
            missing = [name for name in _FILE_OPS_METHODS if not callable(getattr(self.file_ops, name, None))]
            if missing:
                raise TypeError(
                    f"file_ops must be a FileOps (asyncwal.OsFileOps, asyncwal.testing.MemoryFileOps, ...); "
                    f"{type(self.file_ops).__name__} lacks {', '.join(missing)}"
                )
        if self.replicate is not None and not callable(getattr(self.replicate, "start_replication", None)):
            raise TypeError(
                "replicate must be replication settings (asyncwal.replication.NatsReplication), not "
                f"{type(self.replicate).__name__}"
            )

    @property
    def default_durability(self) -> Durability:
        """The level at which ``append()`` returns in this mode."""
        return _MODE_LEVEL[self.sync_mode]


_MODE_LEVEL: dict[str, Durability] = {
    "sync": Durability.DISK,
    "batch": Durability.OS,
    "none": Durability.MEMORY,
}


#: The methods every FileOps has (``pwritev_sync`` and ``close_inherited`` are optional).
_FILE_OPS_METHODS = (
    "makedirs",
    "listdir",
    "exists",
    "open",
    "open_readonly",
    "close",
    "pwrite",
    "pread",
    "size",
    "truncate",
    "sync",
    "sync_dir",
    "rename",
    "unlink",
    "lock",
    "unlock",
    "open_reader",
)


def _positive_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value}")
