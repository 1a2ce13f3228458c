"""batch and none modes: when the event-loop thread may write, and when an early fsync pays.

In these modes a record is acknowledged once it is in the kernel (``OS``), so the write itself
is a plain ``pwrite`` into the page cache: microseconds, as Redis's event loop writes its
append-only file. Handing it to the I/O thread costs two thread hand-offs (~50 us here), so
the engine lets the loop thread make it, while the I/O thread is idle (Engine._write_on_loop,
Engine._append_direct). The fsync, a durable write, an open, rename or unlink never run on
the loop thread.

:class:`LoopWrites` holds the two judgements that path needs, each from measurements:

* Is the loop thread still allowed to write? A write slowed by dirty-page throttling or a
  saturated disk blocks every coroutine of the service; two slow loop-thread writes in a row
  (one alone is as likely the scheduler preempting the thread) turn the path off for
  ``loop_write_backoff_seconds``, with one warning.
* Does an early fsync pay (batch mode)? An fsync started at ``batch_size/2`` unsynced records
  overlaps the appends that follow it but covers half as many records. With appends every
  ``c`` seconds and fsyncs of ``T`` seconds it wins exactly when ``T < batch_size * c``.

All of this runs on the event-loop thread.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

    from ._options import Options

__all__ = ("LoopWrites",)

logger = logging.getLogger("asyncwal")


class LoopWrites:
    """The loop-thread write path's switch, and the figures behind batch mode's early fsync.

    :param options: the log's options (mode, limits)
    :param loop: the log's event loop (its clock times the backoff)
    :param path: the log directory, for the messages
    """

    __slots__ = (
        "_backoff",
        "_fsync",
        "_gap",
        "_last",
        "_loop",
        "_off_until",
        "_path",
        "_slow",
        "_slow_in_a_row",
        "enabled",
    )

    def __init__(self, options: Options, loop: asyncio.AbstractEventLoop, path: str) -> None:
        #: whether the mode and the options allow loop-thread writes at all
        self.enabled = options.loop_writes and options.sync_mode != "sync"
        self._loop = loop
        self._path = path
        self._slow = options.slow_loop_write_seconds
        self._backoff = options.loop_write_backoff_seconds
        self._off_until = 0.0  # loop.time() before which they are off (after slow ones)
        self._slow_in_a_row = 0
        self._fsync = 0.0  # seconds a background fsync takes (moving average)
        self._gap = 1.0  # seconds between two appends that wrote their own record (moving average)
        self._last = 0.0

    def allowed(self) -> bool:
        """May the loop thread write now? (Enabled, and not backing off after slow writes.)"""
        if not self.enabled:
            return False
        if self._off_until:
            if self._loop.time() < self._off_until:
                return False
            self._off_until = 0.0
            logger.info("asyncwal: page-cache writes from the event loop resume in %s", self._path)
        return True

    def took(self, elapsed: float) -> bool:
        """A loop-thread write took ``elapsed`` seconds; two slow ones in a row turn them off.

        :return: whether this one turned them off
        """
        if elapsed <= self._slow:
            self._slow_in_a_row = 0
            return False
        self._slow_in_a_row += 1
        if self._slow_in_a_row < 2:
            return False
        self._slow_in_a_row = 0
        self._off_until = self._loop.time() + self._backoff
        logger.warning(
            "asyncwal: page-cache writes on the event loop took %.2f ms in %s (limit %.2f ms, "
            "twice in a row): the disk is busy or the kernel is throttling dirty pages; writing "
            "from the log's I/O thread for the next %g s",
            elapsed * 1e3,
            self._path,
            self._slow * 1e3,
            self._backoff,
        )
        return True

    def is_slow(self, elapsed: float) -> bool:
        """Whether :meth:`took` has anything to do for ``elapsed`` (the hot path's test)."""
        return elapsed > self._slow or self._slow_in_a_row > 0

    def appended(self, now: float) -> None:
        """An append wrote its own record at ``now`` (perf_counter): the rate of appends."""
        gap = now - self._last
        self._last = now
        if gap < 0.01:  # a longer one is the caller idle, not the rate it appends at
            self._gap += (gap - self._gap) / 8

    def synced(self, took: float) -> None:
        """A background fsync took ``took`` seconds."""
        self._fsync += (took - self._fsync) / 8

    def early_sync_pays(self, batch_size: int) -> bool:
        """batch mode: does an fsync at ``batch_size/2`` unsynced records beat waiting for
        ``batch_size`` of them? (A fast disk under a single appender: yes; a slow or busy
        disk: one fsync per batch_size records, the plain loop's policy, is faster.)"""
        return self._fsync < batch_size * self._gap
