"""The ``REPLICATED`` level as the shipper sees it: a mark that it advances.

The shipper needs one thing from the log's engine: a handle on the level it owns, with
``seq`` (every seq up to it is replicated) and ``advance(seq)`` (loop thread only, monotonic,
never above the log's ``durable_seq``), while the engine bounds every wait at the level with
a timeout. :func:`attach` takes that handle from the engine when the engine offers one, and
otherwise makes a :class:`LocalLevel`, which keeps the mark and the waits itself (then waits
go through :meth:`Replicator.wait_replicated` instead of the log's own methods).

Invariants (both kinds): the mark never goes back; it is never above the log's durable seq
when advanced; a wait that times out fails with :class:`~asyncwal.ReplicationTimeoutError`
and changes nothing else (the record stays committed locally).
"""

from __future__ import annotations

import asyncio
import bisect
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import ReplicationError, ReplicationTimeoutError
from .._options import Durability

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._log import Log

__all__ = ("LevelHandle", "LocalLevel", "attach")


class LevelHandle(Protocol):
    """What the shipper calls: the engine's external-level handle has this shape."""

    @property
    def seq(self) -> int: ...

    def advance(self, seq: int) -> None: ...


class LocalLevel:
    """A ``REPLICATED`` mark with bounded waits, kept beside a log that has no such level.

    :param start: the mark to start from (nothing is known to be replicated yet)
    :param durable: reads the log's durable seq (``advance`` never goes above it)
    :param timeout: seconds a wait may last
    :param explain: the reason to give in a timeout error (the shipper's last problem)
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        start: int,
        durable: Callable[[], int],
        timeout: float,
        explain: Callable[[], str],
    ) -> None:
        self._loop = loop
        self._mark = start
        self._durable = durable
        self._timeout = timeout
        self._explain = explain
        # (seq, future), sorted by seq
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._closed: BaseException | None = None

    @property
    def seq(self) -> int:
        return self._mark

    def advance(self, seq: int) -> None:
        """Every seq up to ``seq`` is replicated; wake the waits it covers.

        :raises ValueError: ``seq`` is above the log's durable seq
        """
        durable = self._durable()
        if seq > durable:
            raise ValueError(f"seq {seq} cannot be REPLICATED before it is on DISK ({durable})")
        if seq <= self._mark:
            return
        self._mark = seq
        i = bisect.bisect_right(self._waiters, seq, key=_seq_of)
        ready, self._waiters = self._waiters[:i], self._waiters[i:]
        for _, fut in ready:
            if not fut.done():
                fut.set_result(None)

    async def wait(self, seq: int) -> None:
        """Wait until ``seq`` is replicated.

        :raises ReplicationTimeoutError: not within the configured timeout
        :raises ReplicationError: replication was stopped before it got there
        """
        if seq <= self._mark:
            return
        if self._closed is not None:
            raise ReplicationError(f"replication is stopped: {self._closed}") from self._closed
        fut: asyncio.Future[None] = self._loop.create_future()
        bisect.insort(self._waiters, (seq, fut), key=_seq_of)
        limit = self._timeout
        try:
            await asyncio.wait_for(asyncio.shield(fut), limit)
        except TimeoutError:
            fut.cancel()
            raise ReplicationTimeoutError(
                f"seq {seq} was not acknowledged by the stream within {limit} s ({self._explain()}); it "
                "stays committed locally and will be shipped when the stream is reachable",
                seq=seq,
            ) from None

    def close(self, reason: BaseException) -> None:
        """Fail every wait now and later (the shipper stopped for good)."""
        self._closed = reason
        waiters, self._waiters = self._waiters, []
        for _, fut in waiters:
            if not fut.done():
                err = ReplicationError(f"replication is stopped: {reason}")
                err.__cause__ = reason
                fut.set_exception(err)
                fut.exception()


def _seq_of(item: tuple[int, Any]) -> int:
    return int(item[0])


def attach(
    log: Log, timeout: float, explain: Callable[[], str], start: int
) -> tuple[LevelHandle, LocalLevel | None]:
    """The handle to advance: the engine's own when it offers an external ``REPLICATED``
    level, else a :class:`LocalLevel` (returned second, so the caller can wait on it)."""
    engine = getattr(log, "_engine", None)
    external = getattr(engine, "external_level", None)
    if external is not None:

        def timeout_error(seq: int) -> BaseException:
            return ReplicationTimeoutError(
                f"seq {seq} was not acknowledged by the stream within {timeout} s ({explain()}); it "
                "stays committed locally and will be shipped when the stream is reachable",
                seq=seq,
            )

        handle: LevelHandle = external(Durability.REPLICATED, timeout=timeout, timeout_error=timeout_error)
        return handle, None
    local = LocalLevel(asyncio.get_running_loop(), start, lambda: log.durable_seq, timeout, explain)
    return local, local
