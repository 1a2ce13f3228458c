"""Where the shipper gets records from: the log's records that have reached ``DISK``, in order.

The shipper must never publish a record that a local crash could still take back, so its
source yields only records at or below the log's ``durable_seq``. The interface is small on
purpose (``take()`` everything available now, be told when more is), so that a faster
in-process source (the payloads of groups as the engine makes them durable, instead of
reading them back from the files) can replace :class:`FollowSource` without touching the
shipper.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Protocol

from .._options import Durability

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._log import Log
    from .._reader import Record

__all__ = ("FollowSource", "RecordSource")


class RecordSource(Protocol):
    """Records from a start seq on, in seq order, each at least ``DISK``-durable."""

    def take(self) -> list[Record]:
        """Everything available now (possibly nothing); never waits.

        :raises BaseException: the error that ended the source, once its records are taken
        """
        ...

    @property
    def finished(self) -> bool:
        """True when no record will ever come again (the log closed), after the last take."""
        ...

    async def close(self) -> None: ...


class FollowSource:
    """A :class:`RecordSource` that reads the log's files through ``log.follow(DISK)``.

    :param notify: called (loop thread) when records become available after ``take()``
        returned nothing, and when the source ends
    """

    def __init__(self, log: Log, start: int, notify: Callable[[], None]) -> None:
        self._buf: list[Record] = []
        self._notify = notify
        self._error: BaseException | None = None
        self._done = False
        self._task = asyncio.get_running_loop().create_task(
            self._run(log, start), name=f"asyncwal follow {start}"
        )

    async def _run(self, log: Log, start: int) -> None:
        buf_append = self._buf.append
        try:
            async for rec in log.follow(start, durability=Durability.DISK):
                if not self._buf:
                    buf_append(rec)
                    self._notify()
                else:
                    buf_append(rec)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the shipper by take()
            self._error = exc
        finally:
            self._done = True
            self._notify()

    def take(self) -> list[Record]:
        if self._buf:
            out = self._buf[:]
            self._buf.clear()
            return out
        if self._error is not None:
            raise self._error
        return []

    @property
    def finished(self) -> bool:
        return self._done and not self._buf

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
