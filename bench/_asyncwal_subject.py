"""asyncwal itself: ``await log.append(data)`` from W coroutines, in one of its three modes.

The cell is the one ``asyncwal bench`` measures: the log's counters and the table note come
from :mod:`asyncwal._measure`, which reads them from ``log.stats()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncwal
from asyncwal._measure import Counters, asyncwal_counters, asyncwal_notes

from ._harness import AsyncSubject

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ("AsyncwalBatch", "AsyncwalNone", "AsyncwalSubject")


class AsyncwalSubject(AsyncSubject):
    sync_mode = "sync"
    log: asyncwal.Log | None = None
    _notes = ""
    _steps: tuple[float, float] | None = None

    async def open(self) -> Callable[[bytes], Awaitable[object]]:
        self.log = await asyncwal.open(str(self.workdir / "wal"), sync_mode=self.sync_mode)
        return self.log.append

    def counters(self) -> Counters:
        return asyncwal_counters(self.log) if self.log is not None else Counters()

    async def close(self) -> None:
        if self.log is not None:
            log, self.log = self.log, None
            self._notes = asyncwal_notes(log, self.sync_mode)
            stats = log.stats()
            self._steps = (stats.loop_step_p999, stats.loop_step_max)
            await log.close()

    def loop_steps(self) -> tuple[float, float] | None:
        return self._steps

    def notes(self) -> str:
        return self._notes or f"sync_mode={self.sync_mode}"


class AsyncwalBatch(AsyncwalSubject):
    sync_mode = "batch"


class AsyncwalNone(AsyncwalSubject):
    sync_mode = "none"
