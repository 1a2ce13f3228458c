"""asyncwal itself: ``await log.append(data)`` from W coroutines, in one of its three modes.

Fsync and group counts come from ``log.stats()`` (read defensively with ``getattr`` so the
benchmark keeps running while the Stats fields evolve).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._harness import AsyncSubject, Counters

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ("AsyncwalBatch", "AsyncwalNone", "AsyncwalSubject")


def _stat(stats: object, name: str) -> int | None:
    value = getattr(stats, name, None)
    return int(value) if isinstance(value, int | float) else None


class AsyncwalSubject(AsyncSubject):
    sync_mode = "sync"
    log: Any = None
    _groups0: int | None = None

    async def open(self) -> Callable[[bytes], Awaitable[object]]:
        import asyncwal

        self.log = await asyncwal.open(str(self.workdir / "wal"), sync_mode=self.sync_mode)
        append: Callable[[bytes], Awaitable[object]] = self.log.append
        return append

    def counters(self) -> Counters:
        stats = self.log.stats()
        return Counters(records=_stat(stats, "appends"), fsyncs=_stat(stats, "fsyncs"))

    async def close(self) -> None:
        if self.log is not None:
            log, self.log = self.log, None
            self._final = log.stats()
            await log.close()

    def notes(self) -> str:
        stats = getattr(self, "_final", None)
        if stats is None:
            return f"sync_mode={self.sync_mode}"
        appends, groups = _stat(stats, "appends"), _stat(stats, "groups")
        mean = f", {appends / groups:.1f} records/write" if appends and groups else ""
        return f"sync_mode={self.sync_mode}{mean}"


class AsyncwalBatch(AsyncwalSubject):
    sync_mode = "batch"


class AsyncwalNone(AsyncwalSubject):
    sync_mode = "none"
