"""The ``REPLICATED`` level as the shipper sees it: a mark that it advances.

The log's engine keeps every level's mark and waiters (asyncwal/_levels.py); the shipper owns
``REPLICATED`` through the handle :func:`attach` takes from the engine: ``seq`` (every seq up
to it is replicated) and ``advance(seq)`` (loop thread only, monotonic, never above the log's
``durable_seq``). The engine bounds every wait at the level with the timeout given here and
fails it with the error built here, which says why shipping is behind.

Invariants: the mark never goes back; it starts at the position read from the stream (never
above the log's durable seq); a wait that times out fails with
:class:`~asyncwal.ReplicationTimeoutError` and changes nothing else (the record stays
committed locally); once replication stops, waits fail with :class:`~asyncwal.ReplicationError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .._errors import ReplicationError, ReplicationTimeoutError
from .._options import Durability

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._log import Log

__all__ = ("LevelHandle", "attach", "detach")


class LevelHandle(Protocol):
    """What the shipper calls: the engine's external-level handle has this shape."""

    @property
    def seq(self) -> int: ...

    def advance(self, seq: int) -> None: ...


def attach(log: Log, timeout: float, explain: Callable[[], str], start: int) -> LevelHandle:
    """Take the log's ``REPLICATED`` level, starting at ``start`` (what the stream holds).

    :raises ValueError: the level is taken (another replicator runs on this log)
    """

    def timeout_error(seq: int) -> BaseException:
        return ReplicationTimeoutError(
            f"seq {seq} was not acknowledged by the stream within {timeout} s ({explain()}); it "
            "stays committed locally and will be shipped when the stream is reachable",
            seq=seq,
        )

    return log._engine.external_level(
        Durability.REPLICATED, timeout=timeout, timeout_error=timeout_error, start=start
    )


def detach(log: Log, explain: Callable[[], str]) -> None:
    """Give the level up: the log stops offering ``REPLICATED``; waits at it fail now."""

    def stopped(seq: int) -> BaseException:
        return ReplicationError(f"seq {seq} is not known to be replicated: {explain()}")

    log._engine.levels.detach(Durability.REPLICATED, stopped)
