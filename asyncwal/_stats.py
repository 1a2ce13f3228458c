"""The statistics snapshot of a log (:class:`Stats`, from ``Log.stats()``) and its quantiles.

trio's rule: a statistics method returns an immutable snapshot, never live mutable state. The
counters themselves live where they change (the engine's hot paths); this module only says
what a snapshot holds and how a quantile is taken.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("Stats", "quantile")


@dataclass(frozen=True, slots=True)
class Stats:
    """An immutable snapshot of a log's counters, from :meth:`Log.stats`."""

    appends: int  #: records accepted (a batch counts each record)
    batches: int  #: append_batch() calls accepted
    bytes: int  #: payload bytes written (a batch counts its length table too)
    groups: int  #: write calls made by the writer (each one group of records)
    fsyncs: int  #: fdatasync/fsync calls on segments, and durable (RWF_DSYNC) group writes
    mean_group_size: float  #: records per group
    group_size_p50: float
    group_size_p99: float
    group_size_max: int
    fsync_p50: float  #: seconds, over the last 4096 fsyncs (a durable write's includes the write)
    fsync_p99: float
    fsync_max: float
    queue_depth: int  #: records accepted but not yet handed to the OS
    queued_bytes: int  #: bytes of those records
    executor_seconds: float  #: time the writer spent waiting on its executor
    segments: int  #: segment files in the log
    #: replicated logs: every seq up to this one is acknowledged by the replica (else None)
    replicated_seq: int | None
    #: replicated logs: records on DISK not yet acknowledged by the replica (else 0)
    replication_lag: int
    loop_writes: int  #: groups written to the page cache by the event-loop thread itself
    loop_step_p999: float  #: seconds: the log's own steps on the event loop (writer, callbacks),
    loop_step_max: float  #: over the last 16384 of them: how long asyncwal held the loop


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``sorted_values`` (0.0 if empty)."""
    if not sorted_values:
        return 0.0
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    return float(
        statistics.quantiles(sorted_values, n=1000, method="inclusive")[min(998, round(q * 1000) - 1)]
    )
