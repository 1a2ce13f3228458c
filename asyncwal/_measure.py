"""The measuring core of asyncwal's benchmarks: one implementation behind ``asyncwal bench``
(installed with the package) and ``python -m bench`` (the project's harness, from a checkout).

A *cell* is W workers appending records of one size through one ``append`` callable. Its
contract:

* for ``warmup`` seconds the workers append as fast as the subject lets them, unmeasured;
* then, in the measured window, every append that *completes* inside the window is counted
  and its latency recorded (``perf_counter_ns`` taken right before the call and right after
  the ``await`` returns);
* the window is ``seconds`` long, extended by whole ``seconds`` (up to :data:`MAX_WINDOWS` in
  all) while fewer than :data:`MIN_ROUNDS` x W appends completed: a subject that commits in
  groups completes appends in waves of about W, and a window of a few waves would count one
  wave more or less by the luck of its phase. The window's end is a fixed time, never the
  moment of a completion, so the count stays unbiased;
* counters (records, fsyncs) and CPU time are taken when the first append completes past each
  window edge: the first moment the loop can observe it (a subject whose append never
  suspends would never let a timer callback run);
* then the workers stop issuing appends and the ones in flight drain.

Nothing here is imported by ``import asyncwal``; only the ``bench`` command and the harness
use it. CPU is ``time.process_time()`` (user + system, every thread), which exists everywhere.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._log import Log

__all__ = (
    "CDF_PERCENTILES",
    "MAX_WINDOWS",
    "MIN_ROUNDS",
    "Counters",
    "Edge",
    "Figures",
    "LatencySummary",
    "Window",
    "asyncwal_counters",
    "asyncwal_notes",
    "drive_async",
    "drive_sync",
    "measure_asyncwal",
    "payload",
    "summarize_latencies",
)

#: Percentiles at which each cell's latency distribution is kept (for CDF plots).
CDF_PERCENTILES: Final[tuple[float, ...]] = (
    0.0, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 55.0, 60.0, 65.0,
    70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0, 97.0, 98.0, 99.0, 99.5, 99.7, 99.8, 99.9, 99.95,
    99.99, 100.0,
)  # fmt: skip

#: A window is extended until it holds at least this many rounds of W appends ...
MIN_ROUNDS: Final = 4
#: ... but it is at most this many times ``seconds`` long.
MAX_WINDOWS: Final = 3


@dataclass(slots=True, kw_only=True)
class Counters:
    """Cumulative counters a subject can report; ``None`` where it cannot count."""

    records: int | None = None  #: records the subject has made durable / accepted
    fsyncs: int | None = None  #: fsync/fdatasync calls


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencySummary:
    """Latencies in microseconds."""

    count: int
    mean_us: float
    p50_us: float
    p99_us: float
    p999_us: float
    max_us: float
    cdf: list[tuple[float, float]]  #: (percentile, microseconds) at :data:`CDF_PERCENTILES`


def summarize_latencies(lat_ns: array[int]) -> LatencySummary | None:
    """Percentiles (nearest rank) of latencies given in nanoseconds, in microseconds."""
    n = len(lat_ns)
    if n == 0:
        return None
    at: Callable[[int], float]
    try:  # millions of latencies: numpy sorts them in place, without an object per number
        import numpy as np

        arr = np.frombuffer(lat_ns, dtype=np.int64).copy()
        arr.sort()
        total = float(arr.sum())

        def at(i: int) -> float:
            return float(arr[i])

    except ImportError:  # numpy is optional (it comes with the bench extra)
        ordered = sorted(lat_ns)
        total = float(sum(ordered))

        def at(i: int) -> float:
            return float(ordered[i])

    def pct(p: float) -> float:
        return at(min(n - 1, max(0, math.ceil(p / 100.0 * n) - 1))) / 1000.0

    return LatencySummary(
        count=n,
        mean_us=total / n / 1000.0,
        p50_us=pct(50.0),
        p99_us=pct(99.0),
        p999_us=pct(99.9),
        max_us=at(n - 1) / 1000.0,
        cdf=[(p, pct(p)) for p in CDF_PERCENTILES],
    )


@dataclass(frozen=True, slots=True)
class Edge:
    """What was observed at one edge of the measured window."""

    t_ns: int
    cpu_s: float  #: this process's CPU time (every thread)
    counters: Counters
    server_cpu_s: float | None  #: a server process's CPU time, for subjects that have one


def _edge(counters: Callable[[], Counters], server_cpu: Callable[[], float | None] | None) -> Edge:
    return Edge(time.perf_counter_ns(), time.process_time(), counters(), server_cpu() if server_cpu else None)


class Window:
    """The measured window (see the module docstring): from ``start_ns``, ``seconds`` long,
    extended while fewer than :data:`MIN_ROUNDS` x ``workers`` appends completed."""

    __slots__ = ("end", "extensions", "min_count", "step")

    def __init__(self, start_ns: int, seconds: float, workers: int) -> None:
        self.step = int(seconds * 1e9)
        self.end = start_ns + self.step
        self.min_count = MIN_ROUNDS * workers
        self.extensions = 0

    def over(self, count: int) -> bool:
        """Called at the first completion at or after ``end``: stop, or extend by one step."""
        if count >= self.min_count or self.extensions + 1 >= MAX_WINDOWS:
            return True
        self.extensions += 1
        self.end += self.step
        return False


@dataclass(slots=True, kw_only=True)
class Figures:
    """What one cell measured. Rates are per second of the measured window."""

    size: int  #: payload bytes per record
    seconds: float = 0.0  #: length of the measured window actually used
    appends: int = 0  #: acknowledged appends completed inside the window
    appends_per_s: float = 0.0
    mb_per_s: float = 0.0  #: payload megabytes (10**6) per second
    latency: LatencySummary | None = None
    fsyncs: int | None = None  #: fsync calls inside the window, where countable
    fsyncs_per_s: float | None = None
    records_per_fsync: float | None = None
    cpu_s: float | None = None  #: CPU seconds inside the window (client, plus server if any)
    cpu_us_per_append: float | None = None
    server_cpu_s: float | None = None  #: part of cpu_s spent by a server process
    extensions: int = 0  #: times the window was extended
    latencies_ns: array[int] = field(default_factory=lambda: array("q"), repr=False)


def _figures(
    size: int, lat: array[int], window: Window, start_ns: int, a: Edge | None, b: Edge | None
) -> Figures:
    """The figures of a cell from its latencies and the two window-edge observations."""
    out = Figures(size=size, latencies_ns=lat, extensions=window.extensions)
    out.seconds = (window.end - start_ns) / 1e9
    out.appends = len(lat)
    out.appends_per_s = out.appends / out.seconds
    out.mb_per_s = out.appends_per_s * size / 1e6
    out.latency = summarize_latencies(lat)
    if a is None or b is None:
        return out
    span = (b.t_ns - a.t_ns) / 1e9
    if span <= 0:
        return out
    cpu = b.cpu_s - a.cpu_s
    if a.server_cpu_s is not None and b.server_cpu_s is not None:
        out.server_cpu_s = b.server_cpu_s - a.server_cpu_s
        cpu += out.server_cpu_s
    out.cpu_s = cpu
    # CPU is measured over [a, b], the appends over the nominal window: scale.
    if out.appends:
        out.cpu_us_per_append = cpu / (out.appends_per_s * span) * 1e6
    c0, c1 = a.counters, b.counters
    if c0.fsyncs is not None and c1.fsyncs is not None:
        out.fsyncs = c1.fsyncs - c0.fsyncs
        out.fsyncs_per_s = out.fsyncs / span
        if out.fsyncs > 0:
            if c0.records is not None and c1.records is not None:
                out.records_per_fsync = (c1.records - c0.records) / out.fsyncs
            else:
                out.records_per_fsync = out.appends_per_s * span / out.fsyncs
    return out


def payload(size: int) -> bytes:
    """The record every append of a cell writes: incompressible, fixed for the whole cell."""
    return os.urandom(size)


async def drive_async(
    append: Callable[[bytes], Awaitable[object]],
    *,
    workers: int,
    size: int,
    seconds: float,
    warmup: float,
    counters: Callable[[], Counters] = Counters,
    server_cpu: Callable[[], float | None] | None = None,
) -> Figures:
    """Measure ``workers`` coroutines awaiting ``append(record)`` in a loop (one cell).

    :param counters: read at each window edge (the subject's records and fsyncs so far)
    :param server_cpu: read at each window edge: CPU seconds of a server doing the work
    """
    data = payload(size)
    lat: array[int] = array("q")
    record = lat.append
    clock = time.perf_counter_ns
    warm_end = clock() + int(warmup * 1e9)
    window = Window(warm_end, seconds, workers)
    edges: list[Edge | None] = [None, None]

    async def worker() -> None:
        while True:
            t0 = clock()
            await append(data)
            t1 = clock()
            if t1 >= warm_end:
                if t1 >= window.end and (edges[1] is not None or window.over(len(lat))):
                    if edges[1] is None:
                        edges[1] = _edge(counters, server_cpu)
                    return
                if edges[0] is None:
                    edges[0] = _edge(counters, server_cpu)
                record(t1 - t0)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return _figures(size, lat, window, warm_end, edges[0], edges[1])


def drive_sync(
    step: Callable[[bytes], int],
    *,
    size: int,
    seconds: float,
    warmup: float,
    counters: Callable[[], Counters] = Counters,
) -> Figures:
    """Measure one plain loop calling ``step(record)``, which returns how many records it
    acknowledged (a group's records all get the group's latency)."""
    data = payload(size)
    lat: array[int] = array("q")
    clock = time.perf_counter_ns
    warm_end = clock() + int(warmup * 1e9)
    window = Window(warm_end, seconds, 1)
    start: Edge | None = None
    while True:
        t0 = clock()
        n = step(data)
        t1 = clock()
        if t1 >= warm_end:
            if t1 >= window.end and window.over(len(lat)):
                return _figures(size, lat, window, warm_end, start, _edge(counters, None))
            if start is None:
                start = _edge(counters, None)
            dt = t1 - t0
            if n == 1:
                lat.append(dt)
            else:
                lat.extend(array("q", [dt]) * n)


# -- asyncwal's own cells ---------------------------------------------------------------------


def asyncwal_counters(log: Log) -> Counters:
    """A log's records and fsyncs so far, from ``stats()``."""
    stats = log.stats()
    return Counters(records=stats.appends, fsyncs=stats.fsyncs)


def asyncwal_notes(log: Log, sync_mode: str) -> str:
    """What a cell's table note says about a log: its mode and mean records per write."""
    stats = log.stats()
    mean = f", {stats.appends / stats.groups:.1f} records/write" if stats.appends and stats.groups else ""
    return f"sync_mode={sync_mode}{mean}"


async def measure_asyncwal(
    path: str, sync_mode: str, *, workers: int, size: int, seconds: float, warmup: float
) -> tuple[Figures, str]:
    """One asyncwal cell: a new log at ``path`` in ``sync_mode``, measured, then closed.

    :return: the figures and the cell's note (see :func:`asyncwal_notes`)
    """
    from ._log import open as open_log

    log = await open_log(path, sync_mode=sync_mode)
    try:
        figures = await drive_async(
            log.append,
            workers=workers,
            size=size,
            seconds=seconds,
            warmup=warmup,
            counters=lambda: asyncwal_counters(log),
        )
        return figures, asyncwal_notes(log, sync_mode)
    finally:
        await log.close()
