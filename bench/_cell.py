"""Running one cell: build the subject from the registry, measure it with the core, clean up.

:func:`run_cell` is what the child process (``python -m bench._child``) runs, and what the
smoke test runs in-process. It sits above both :mod:`bench._harness` (the data and subject
kinds) and :mod:`bench._subjects` (the registry), so that neither imports the other back.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asyncwal._measure import Figures, drive_async, drive_sync

from ._harness import AsyncSubject, CellResult, CellSpec, SyncSubject, proc_cpu_seconds, proc_peak_rss_mib
from ._subjects import SUBJECTS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ("run_cell",)


class _GcPauses:
    """The garbage collector's pauses while the block runs: the longest, and the number of
    full collections (through ``gc.callbacks``)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.full = 0
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.longest = max(self.longest, time.perf_counter() - self._started)
        if info.get("generation") == 2:
            self.full += 1

    def __enter__(self) -> _GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def run_cell(spec: CellSpec) -> CellResult:
    """Measure one cell in this process. Never raises for a subject's failure: the result
    carries ``error`` (or ``skipped`` when the subject's software is not installed)."""
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
                with _GcPauses() as pauses:
                    result.take(_run_loop(spec.loop, lambda: _measure_async(subject)))
                result.gc_pause_max_us, result.gc_full_collections = pauses.longest * 1e6, pauses.full
                server = subject.server_pid()
                if server:
                    result.server_rss_peak_mib = proc_peak_rss_mib(server)
            finally:
                subject.teardown()
            result.notes = subject.notes()
            steps = subject.loop_steps() if isinstance(subject, AsyncSubject) else None
            if steps is not None:
                result.loop_step_p999_us, result.loop_step_max_us = steps[0] * 1e6, steps[1] * 1e6
        elif isinstance(subject, SyncSubject):
            subject.setup()
            try:
                result.take(
                    drive_sync(
                        subject.step,
                        size=spec.size,
                        seconds=spec.seconds,
                        warmup=spec.warmup,
                        counters=subject.counters,
                    )
                )
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


async def _measure_async(subject: AsyncSubject) -> Figures:
    spec = subject.spec
    append = await subject.open()
    try:
        server = subject.server_pid()
        return await drive_async(
            append,
            workers=spec.workers,
            size=spec.size,
            seconds=spec.seconds,
            warmup=spec.warmup,
            counters=subject.counters,
            server_cpu=(lambda: proc_cpu_seconds(server)) if server else None,
        )
    finally:
        await subject.close()


def _raise_nofile() -> None:
    # W=4096 sockets (Redis) need more than the usual soft limit of 1024 descriptors.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 16384 if hard == resource.RLIM_INFINITY else min(hard, 16384)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _run_loop(loop: str | None, main: Callable[[], Awaitable[Figures]]) -> Figures:
    async def runner() -> Figures:
        return await main()

    if loop in (None, "asyncio"):
        with asyncio.Runner() as r:
            return r.run(runner())
    if loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
            return r.run(runner())
    raise ValueError(f"unknown event loop {loop!r}")
