"""The public handle of a log's replication: start the shipper, wait at ``REPLICATED``, stop.

A :class:`Replicator` ties four things to one open :class:`~asyncwal.Log`: the shipper task,
the log's ``REPLICATED`` level (which the shipper advances), the log's retention (which
``truncate_before`` clamps to the first record not yet in the stream), and the log's close
(which drains and stops the replicator once every accepted record is durable, before the
files are released). ``asyncwal.open(path, replicate=NatsReplication(...))`` makes one;
:func:`replicate` makes one for a log that is open already.

Invariants: at most one replicator per log; the ``REPLICATED`` mark starts at the position
read from the stream; once the replicator is closed the log no longer offers ``REPLICATED``
(waits at it fail with :class:`~asyncwal.ReplicationError`) and truncation is free again.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .._errors import LogClosedError, ReplicationError
from .._options import Durability
from ._jetstream import LinkError, import_nats
from ._level import attach, detach
from ._shipper import ReplicationStatus, Shipper

if TYPE_CHECKING:
    from .._log import Log
    from ._settings import Settings

__all__ = ("Replicator", "replicate", "replicator_of")


def replicator_of(log: Log) -> Replicator | None:
    """The replicator running on ``log`` (``asyncwal.open(..., replicate=...)`` starts one),
    or None."""
    rep = log._engine.replication
    return rep if isinstance(rep, Replicator) else None


class Replicator:
    """Ships ``log`` to its NATS JetStream stream and offers the ``REPLICATED`` level.

    ::

        async with asyncwal.open("data/wal") as log:
            rep = await asyncwal.replication.replicate(log, NatsReplication(servers=[...]))
            seq = await log.append(b"payload", durability=asyncwal.Durability.REPLICATED)

    Closing the log closes the replicator (after shipping what is durable, for up to
    ``drain_timeout`` seconds); so does :meth:`close` or leaving ``async with``.

    :param log: an open log; the replicator does not own it
    :param options: where the stream is, and how to ship
    """

    def __init__(self, log: Log, options: Settings) -> None:
        import_nats()  # fail now, with the extra's name, if the client is missing
        self._log = log
        self._options = options
        self.log_id = log.log_id
        self._shipper: Shipper | None = None
        self._attached = False
        self._closing: asyncio.Task[None] | None = None

    @property
    def options(self) -> Settings:
        return self._options

    @property
    def stream(self) -> str:
        """The stream that holds the log."""
        return self._options.stream_for(self.log_id)

    @property
    def replicated_seq(self) -> int:
        """Every seq up to this one is on local ``DISK`` and acknowledged by the stream."""
        if not self._attached:
            return 0
        return self._log._engine.mark(Durability.REPLICATED)

    def _explain(self) -> str:
        return self._shipper.explain() if self._shipper is not None else "not started"

    async def start(self, wait: float | None = None) -> None:
        """Start shipping, and wait (``request_timeout`` by default) for the stream's position.

        A stream that is unreachable now is not an error: the shipper keeps trying in the
        background, and ``REPLICATED`` waits time out meanwhile.

        :raises StreamMismatchError: the stream belongs to another log
        :raises DivergedError: the log is behind its stream, or disagrees with it
        :raises ReplicationError: the log is replicated already
        :raises RuntimeError: this replicator was started before
        """
        if self._shipper is not None:
            raise RuntimeError("this replicator was already started")
        log = self._log
        if log.closed:
            raise LogClosedError("the log is closed")
        engine = log._engine
        if engine.replication is not None:
            raise ReplicationError(f"the log {log.path} is replicated already")
        shipper = Shipper(log, self._options, self.log_id)
        self._shipper = shipper
        engine.replication = self
        engine.retain_from = shipper.retain_from
        shipper.start()
        try:
            await shipper.started(self._options.request_timeout if wait is None else wait)
        except LinkError:
            pass  # unreachable for now: the shipper goes on trying
        except BaseException:
            await shipper.stop()
            self._release()
            raise
        shipper.attach(attach(log, self._options.timeout, self._explain, start=shipper.shipped_seq))
        self._attached = True

    async def wait_replicated(self, seq: int) -> None:
        """Wait until record ``seq`` is replicated: ``log.wait_for(seq, Durability.REPLICATED)``.

        :raises ValueError: ``seq`` was never appended
        :raises ReplicationTimeoutError: not acknowledged within the ``timeout`` option; the
            record stays committed locally and is shipped once the stream is reachable
        :raises ReplicationError: replication is not running (see :meth:`status`)
        """
        if not self._attached or self._closing is not None:
            raise ReplicationError(f"replication is not running ({self._explain()})")
        await self._log.wait_for(seq, Durability.REPLICATED)

    def status(self) -> ReplicationStatus:
        """A snapshot: what is shipped, what is in flight, the last problem."""
        if self._shipper is None:
            raise ReplicationError("replication is not started")
        return self._shipper.status()

    async def close(self) -> None:
        """Ship what is durable now (up to ``drain_timeout`` seconds), then stop. Waits at
        ``REPLICATED`` that are still unresolved then fail."""
        if self._shipper is None:
            return
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        shipper = self._shipper
        assert shipper is not None
        try:
            await shipper.stop()
        finally:
            self._release()

    def _release(self) -> None:
        engine = self._log._engine
        if self._attached:
            detach(self._log, self._explain)
        if engine.replication is self:
            engine.replication = None
            engine.retain_from = None

    async def __aenter__(self) -> Replicator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def replicate(log: Log, options: Settings, **start: Any) -> Replicator:
    """Start replicating ``log``: ``Replicator(log, options)`` then :meth:`Replicator.start`."""
    rep = Replicator(log, options)
    await rep.start(**start)
    return rep
