"""The harness's data and subjects: a cell's spec and result, the three kinds of subject, and
process statistics.

The measuring itself (warm-up, the measured window, latencies, counters at the window's edges)
is :mod:`asyncwal._measure`, the one implementation that ``asyncwal bench`` uses too;
:mod:`bench._cell` runs a cell with it.
"""

from __future__ import annotations

import dataclasses
import os
import resource
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from asyncwal._measure import CDF_PERCENTILES, Counters, Figures

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

__all__ = (
    "CDF_PERCENTILES",
    "AsyncSubject",
    "CellResult",
    "CellSpec",
    "Counters",
    "ExternalSubject",
    "SyncSubject",
    "proc_cpu_seconds",
    "proc_peak_rss_mib",
)

MIB = 1024 * 1024


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
    #: asyncwal only: the longest steps the log itself ran on the event loop (writer task
    #: steps, completion callbacks, loop-thread writes), p99.9 and max, from its stats()
    loop_step_p999_us: float | None = None
    loop_step_max_us: float | None = None
    #: async subjects: the longest pause of the interpreter's garbage collector while the cell
    #: ran, and how many full (generation 2) collections there were: a collection stalls the
    #: loop in whichever step allocates the object that starts it
    gc_pause_max_us: float | None = None
    gc_full_collections: int | None = None
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

    def take(self, figures: Figures) -> None:
        """Copy what the measuring core measured into this result."""
        self.seconds = figures.seconds
        self.appends = figures.appends
        self.appends_per_s = figures.appends_per_s
        self.mb_per_s = figures.mb_per_s
        lat = figures.latency
        if lat is not None:
            self.mean_us, self.p50_us, self.p99_us = lat.mean_us, lat.p50_us, lat.p99_us
            self.p999_us, self.max_us, self.cdf = lat.p999_us, lat.max_us, lat.cdf
        self.fsyncs = figures.fsyncs
        self.fsyncs_per_s = figures.fsyncs_per_s
        self.records_per_fsync = figures.records_per_fsync
        self.cpu_s = figures.cpu_s
        self.cpu_us_per_append = figures.cpu_us_per_append
        self.server_cpu_s = figures.server_cpu_s


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

    def loop_steps(self) -> tuple[float, float] | None:
        """The subject's own longest steps on the loop, (p99.9, max) in seconds, if it knows."""
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
