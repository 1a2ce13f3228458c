"""The measuring core: one cell = one subject, one event loop, W workers, one record size.

Contract of a cell: for ``warmup`` seconds W workers append as fast as the subject lets them;
then for ``seconds`` seconds every append that *completes* inside the window is counted and
its latency (``perf_counter_ns`` taken by the caller right before the call and right after
the ``await`` returns) is recorded; then the workers stop issuing appends and the ones in
flight drain. Subject counters (fsyncs, records) and CPU time are snapshotted when the first
append completes past each window edge, which is the first moment the loop can observe it
(a subject whose append never suspends would never let a timer callback run).

:func:`run_cell` is what the child process (``python -m bench._child``) runs, and what the
smoke test runs in-process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import resource
import shutil
import time
from abc import ABC, abstractmethod
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = (
    "CDF_PERCENTILES",
    "AsyncSubject",
    "CellResult",
    "CellSpec",
    "Counters",
    "ExternalSubject",
    "LatencySummary",
    "SyncSubject",
    "WindowCounters",
    "proc_cpu_seconds",
    "proc_peak_rss_mib",
    "run_cell",
    "summarize_latencies",
)

#: Percentiles at which each cell's latency distribution is kept (for CDF plots).
CDF_PERCENTILES: tuple[float, ...] = (
    0.0, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 55.0, 60.0, 65.0,
    70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0, 97.0, 98.0, 99.0, 99.5, 99.7, 99.8, 99.9, 99.95,
    99.99, 100.0,
)  # fmt: skip

MIB = 1024 * 1024
#: A window is extended until it holds at least this many rounds of W appends ...
MIN_ROUNDS = 4
#: ... but it is at most this many times ``seconds`` long.
MAX_WINDOWS = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class CellSpec:
    """One measurement. Serialised to JSON to hand it to the child process."""

    subject: str
    loop: str | None  #: "asyncio" or "uvloop" for async subjects, None for the others
    workers: int
    size: int  #: payload bytes per record
    seconds: float  #: measured window
    warmup: float  #: unmeasured run-in before the window
    workdir: str  #: a directory the cell may fill; removed afterwards

    def label(self) -> str:
        loop = f" {self.loop}" if self.loop else ""
        return f"{self.subject}{loop} W={self.workers} {self.size}B"


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


@dataclass(slots=True, kw_only=True)
class CellResult:
    """What one cell measured. All rates are per second of the measured window."""

    subject: str
    loop: str | None
    workers: int
    size: int
    seconds: float = 0.0  #: length of the measured window actually used
    appends: int = 0  #: acknowledged appends completed inside the window
    appends_per_s: float = 0.0
    mb_per_s: float = 0.0  #: payload megabytes (10**6) per second
    mean_us: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    p999_us: float | None = None
    max_us: float | None = None
    cdf: list[tuple[float, float]] = field(default_factory=list)
    fsyncs: int | None = None  #: fsync calls inside the window, where countable
    fsyncs_per_s: float | None = None
    records_per_fsync: float | None = None
    cpu_s: float | None = None  #: CPU seconds inside the window (client, plus server if any)
    cpu_us_per_append: float | None = None
    rss_peak_mib: float | None = None  #: peak RSS of the measuring process
    server_cpu_s: float | None = None  #: part of cpu_s spent by a server process (Redis)
    server_rss_peak_mib: float | None = None
    samples: list[float] = field(default_factory=list)  #: appends/s of each repetition (--repeat)
    load1: float | None = None  #: 1-minute load average of the machine as the cell started
    notes: str = ""
    error: str | None = None
    skipped: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellResult:
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["cdf"] = [(float(p), float(v)) for p, v in kwargs.get("cdf", [])]
        return cls(**kwargs)

    @property
    def ok(self) -> bool:
        return self.error is None and self.skipped is None and self.appends > 0


# -- subjects ------------------------------------------------------------------------------


class AsyncSubject(ABC):
    """A subject driven by W coroutines on an event loop.

    Lifecycle: ``setup()`` (sync, before the loop exists: start servers, make files), then on
    the loop ``await open()``, W workers calling ``append``, ``await close()``; then
    ``teardown()`` (sync, always called once ``setup()`` returned).
    """

    def __init__(self, spec: CellSpec, workdir: Path) -> None:
        self.spec = spec
        self.workdir = workdir

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Synchronous preparation before the event loop starts."""

    @abstractmethod
    async def open(self) -> Callable[[bytes], Awaitable[object]]:
        """Open the subject; return the per-record append coroutine function."""

    def counters(self) -> Counters:
        return Counters()

    def server_pid(self) -> int | None:
        """A server process whose CPU and RSS belong to this subject's cost."""
        return None

    @abstractmethod
    async def close(self) -> None: ...

    def teardown(self) -> None:  # noqa: B027 - optional hook
        """Synchronous clean-up after the event loop is gone."""

    def notes(self) -> str:
        return ""


class SyncSubject(ABC):
    """A subject driven by one plain loop calling ``step()`` (no event loop)."""

    def __init__(self, spec: CellSpec, workdir: Path) -> None:
        self.spec = spec
        self.workdir = workdir
        self.fsyncs = 0
        self.records = 0

    @abstractmethod
    def setup(self) -> None: ...

    @abstractmethod
    def step(self, data: bytes) -> int:
        """Do one iteration; return how many records it made durable (or wrote)."""

    @abstractmethod
    def teardown(self) -> None: ...

    def counters(self) -> Counters:
        return Counters(records=self.records, fsyncs=self.fsyncs)

    def notes(self) -> str:
        return ""


class ExternalSubject(ABC):
    """A subject that measures itself (a C benchmark client); it fills the result."""

    def __init__(self, spec: CellSpec, workdir: Path) -> None:
        self.spec = spec
        self.workdir = workdir

    @abstractmethod
    def run(self, result: CellResult) -> None: ...


# -- process statistics ---------------------------------------------------------------------


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process, from ``/proc/<pid>/stat``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_peak_rss_mib(pid: int | None = None) -> float | None:
    """Peak RSS (``VmHWM``) of a live process, MiB; of this process if ``pid`` is None."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def summarize_latencies(lat_ns: array[int]) -> LatencySummary | None:
    """Percentiles of latencies given in nanoseconds (nearest-rank), in microseconds."""
    n = len(lat_ns)
    if n == 0:
        return None
    try:
        import numpy as np

        arr = np.frombuffer(lat_ns, dtype=np.int64).copy()
        arr.sort()
        total = float(arr.sum())

        def at(i: int) -> float:
            return float(arr[i])
    except ImportError:  # pragma: no cover - numpy comes with matplotlib
        ordered = sorted(lat_ns)
        total = float(sum(ordered))

        def at(i: int) -> float:
            return float(ordered[i])

    def pct(p: float) -> float:
        idx = min(n - 1, max(0, math.ceil(p / 100.0 * n) - 1))
        return at(idx) / 1000.0

    return LatencySummary(
        count=n,
        mean_us=total / n / 1000.0,
        p50_us=pct(50.0),
        p99_us=pct(99.0),
        p999_us=pct(99.9),
        max_us=at(n - 1) / 1000.0,
        cdf=[(p, pct(p)) for p in CDF_PERCENTILES],
    )


@dataclass(slots=True)
class WindowCounters:
    """A snapshot at one edge of the measured window."""

    t_ns: int
    cpu_s: float
    counters: Counters
    server_cpu_s: float | None


def _snapshot(counters: Callable[[], Counters], server_pid: int | None) -> WindowCounters:
    return WindowCounters(
        t_ns=time.perf_counter_ns(),
        cpu_s=_self_cpu(),
        counters=counters(),
        server_cpu_s=proc_cpu_seconds(server_pid) if server_pid else None,
    )


def _fill(
    result: CellResult,
    lat: array[int],
    window_ns: int,
    start: WindowCounters | None,
    end: WindowCounters | None,
) -> None:
    """Fill a result from the latencies and the window-edge snapshots."""
    result.seconds = window_ns / 1e9
    result.appends = len(lat)
    result.appends_per_s = result.appends / result.seconds
    result.mb_per_s = result.appends_per_s * result.size / 1e6
    summary = summarize_latencies(lat)
    if summary is not None:
        result.mean_us = summary.mean_us
        result.p50_us = summary.p50_us
        result.p99_us = summary.p99_us
        result.p999_us = summary.p999_us
        result.max_us = summary.max_us
        result.cdf = summary.cdf
    if start is None or end is None:
        return
    span = (end.t_ns - start.t_ns) / 1e9
    if span <= 0:
        return
    cpu = end.cpu_s - start.cpu_s
    if start.server_cpu_s is not None and end.server_cpu_s is not None:
        result.server_cpu_s = end.server_cpu_s - start.server_cpu_s
        cpu += result.server_cpu_s
    result.cpu_s = cpu
    # CPU is measured over [start, end], the appends over the nominal window: scale.
    if result.appends:
        result.cpu_us_per_append = cpu / (result.appends_per_s * span) * 1e6
    c0, c1 = start.counters, end.counters
    if c0.fsyncs is not None and c1.fsyncs is not None:
        result.fsyncs = c1.fsyncs - c0.fsyncs
        result.fsyncs_per_s = result.fsyncs / span
        if result.fsyncs > 0:
            if c0.records is not None and c1.records is not None:
                result.records_per_fsync = (c1.records - c0.records) / result.fsyncs
            else:
                result.records_per_fsync = result.appends_per_s * span / result.fsyncs


# -- drivers ---------------------------------------------------------------------------------


class Window:
    """The measured window: ``seconds`` long, extended by whole ``seconds`` (up to
    :data:`MAX_WINDOWS` in all) while fewer than :data:`MIN_ROUNDS` x W appends completed.

    A subject that commits in groups completes its appends in waves of about W; a window
    holding only a few waves would count one wave more or less by the luck of its phase. The
    window's end stays a fixed time (never the moment of a completion), so the count stays
    unbiased; it only gets more waves to average over.
    """

    __slots__ = ("end", "extensions", "min_count", "step")

    def __init__(self, start_ns: int, spec: CellSpec) -> None:
        self.step = int(spec.seconds * 1e9)
        self.end = start_ns + self.step
        self.min_count = MIN_ROUNDS * spec.workers
        self.extensions = 0

    def over(self, count: int) -> bool:
        """Called at the first completion at or after ``end``: stop, or extend by one step."""
        if count >= self.min_count or self.extensions + 1 >= MAX_WINDOWS:
            return True
        self.extensions += 1
        self.end += self.step
        return False


def _payload(size: int) -> bytes:
    # Incompressible and fixed for the whole cell; every subject appends the same bytes.
    return os.urandom(size)


async def _drive_async(subject: AsyncSubject, result: CellResult) -> None:
    spec = subject.spec
    append = await subject.open()
    try:
        data = _payload(spec.size)
        lat: array[int] = array("q")
        record = lat.append
        clock = time.perf_counter_ns
        server_pid = subject.server_pid()
        t_begin = clock()
        warm_end = t_begin + int(spec.warmup * 1e9)
        window = Window(warm_end, spec)
        edges: list[WindowCounters | None] = [None, None]

        async def worker() -> None:
            while True:
                t0 = clock()
                await append(data)
                t1 = clock()
                if t1 >= warm_end:
                    if t1 >= window.end and (edges[1] is not None or window.over(len(lat))):
                        if edges[1] is None:
                            edges[1] = _snapshot(subject.counters, server_pid)
                        return
                    if edges[0] is None:
                        edges[0] = _snapshot(subject.counters, server_pid)
                    record(t1 - t0)

        await asyncio.gather(*(worker() for _ in range(spec.workers)))
        _fill(result, lat, window.end - warm_end, edges[0], edges[1])
    finally:
        await subject.close()


def _drive_sync(subject: SyncSubject, result: CellResult) -> None:
    spec = subject.spec
    data = _payload(spec.size)
    lat: array[int] = array("q")
    clock = time.perf_counter_ns
    step = subject.step
    t_begin = clock()
    warm_end = t_begin + int(spec.warmup * 1e9)
    window = Window(warm_end, spec)
    start_snap: WindowCounters | None = None
    end_snap: WindowCounters | None = None
    while True:
        t0 = clock()
        n = step(data)
        t1 = clock()
        if t1 >= warm_end:
            if t1 >= window.end and window.over(len(lat)):
                end_snap = _snapshot(subject.counters, None)
                break
            if start_snap is None:
                start_snap = _snapshot(subject.counters, None)
            dt = t1 - t0
            if n == 1:
                lat.append(dt)
            else:
                # Every record of a group is acknowledged when the group's sync returns.
                lat.extend(array("q", [dt]) * n)
    _fill(result, lat, window.end - warm_end, start_snap, end_snap)


def _raise_nofile() -> None:
    # W=4096 sockets (Redis) need more than the usual soft limit of 1024 descriptors.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 16384 if hard == resource.RLIM_INFINITY else min(hard, 16384)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _run_loop(loop: str | None, main: Callable[[], Awaitable[None]]) -> None:
    async def runner() -> None:
        await main()

    if loop in (None, "asyncio"):
        with asyncio.Runner() as r:
            r.run(runner())
    elif loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
            r.run(runner())
    else:
        raise ValueError(f"unknown event loop {loop!r}")


def run_cell(spec: CellSpec) -> CellResult:
    """Measure one cell in this process. Never raises for a subject's failure: the result
    carries ``error`` (or ``skipped`` when the subject's software is not installed)."""
    from ._subjects import SUBJECTS

    result = CellResult(subject=spec.subject, loop=spec.loop, workers=spec.workers, size=spec.size)
    info = SUBJECTS.get(spec.subject)
    if info is None:
        result.error = f"unknown subject {spec.subject!r}"
        return result
    reason = info.unavailable()
    if reason is not None:
        result.skipped = reason
        return result
    _raise_nofile()
    workdir = Path(spec.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        subject = info.factory(spec, workdir)
        if isinstance(subject, AsyncSubject):
            subject.setup()
            try:
                _run_loop(spec.loop, lambda: _drive_async(subject, result))
                server = subject.server_pid()
                if server:
                    result.server_rss_peak_mib = proc_peak_rss_mib(server)
            finally:
                subject.teardown()
            result.notes = subject.notes()
        elif isinstance(subject, SyncSubject):
            subject.setup()
            try:
                _drive_sync(subject, result)
            finally:
                subject.teardown()
            result.notes = subject.notes()
        else:
            subject.run(result)
        result.rss_peak_mib = result.rss_peak_mib or proc_peak_rss_mib()
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if result.error is None and result.appends == 0:
        result.error = "no append completed inside the measured window"
    return result
