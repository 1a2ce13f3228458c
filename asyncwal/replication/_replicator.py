"""The public handle of a log's replication: start the shipper, wait at ``REPLICATED``, stop.

A :class:`Replicator` ties three things to one open :class:`~asyncwal.Log`: the shipper task,
the ``REPLICATED`` level it advances (the engine's own when the engine offers one, see
_level), and the log's identity (which names the stream). It never owns the log: close the
replicator before the log, so that it can ship what is durable first.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from .._errors import LogClosedError, ReplicationError
from .._options import Durability
from ._jetstream import LinkError, import_nats
from ._level import LevelHandle, LocalLevel, attach
from ._shipper import ReplicationStatus, Shipper

if TYPE_CHECKING:
    from .._log import Log
    from ._options import NatsReplication

__all__ = ("Replicator", "log_id_of", "replicate")


def log_id_of(log: Log) -> str:
    """The log's durable identity (a UUID string).

    Taken from the log itself when it has one (``log.log_id``, kept in META). A log without
    one gets a stable stand-in derived from its directory path, so that the same path always
    ships to the same stream.
    """
    own = getattr(log, "log_id", None)
    if isinstance(own, str) and own:
        return own
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "asyncwal:" + log.path))


class Replicator:
    """Ships ``log`` to its NATS JetStream stream and offers the ``REPLICATED`` level.

    ::

        async with asyncwal.open("data/wal") as log:
            async with Replicator(log, NatsReplication(servers=["nats://10.0.0.1:4222"])) as rep:
                seq = await log.append(b"payload")
                await rep.wait_replicated(seq)   # stored on a quorum of the cluster

    :param log: an open log; the replicator does not close it
    :param options: where the stream is, and how to ship
    """

    def __init__(self, log: Log, options: NatsReplication) -> None:
        import_nats()  # fail now, with the extra's name, if the client is missing
        self._log = log
        self._options = options
        self.log_id = log_id_of(log)
        self._shipper: Shipper | None = None
        self._handle: LevelHandle | None = None
        self._local: LocalLevel | None = None

    @property
    def options(self) -> NatsReplication:
        return self._options

    @property
    def stream(self) -> str:
        """The stream that holds the log."""
        return self._options.stream_for(self.log_id)

    @property
    def replicated_seq(self) -> int:
        """Every seq up to this one is on local ``DISK`` and acknowledged by the stream."""
        return self._handle.seq if self._handle is not None else 0

    async def start(self, wait: float | None = None) -> None:
        """Start shipping, and wait (``request_timeout`` by default) for the stream's position.

        A stream that is unreachable now is not an error: the shipper keeps trying in the
        background, and ``REPLICATED`` waits time out meanwhile.

        :raises StreamMismatchError: the stream belongs to another log
        :raises DivergedError: the log is behind its stream, or disagrees with it
        :raises RuntimeError: already started
        """
        if self._shipper is not None:
            raise RuntimeError("this replicator was already started")
        if self._log.closed:
            raise LogClosedError("the log is closed")

        def explain() -> str:
            return self._shipper.explain() if self._shipper is not None else "not started"

        self._handle, self._local = attach(self._log, self._options.timeout, explain, start=0)
        shipper = Shipper(self._log, self._options, self.log_id, self._handle)
        if self._local is not None:
            shipper.on_fatal(self._local.close)
        self._shipper = shipper
        shipper.start()
        try:
            await shipper.started(self._options.request_timeout if wait is None else wait)
        except LinkError:
            pass  # unreachable for now: the shipper goes on trying
        except BaseException:
            await shipper.stop()
            raise

    async def wait_replicated(self, seq: int) -> None:
        """Wait until record ``seq`` is replicated (``Durability.REPLICATED``).

        :raises ValueError: ``seq`` was never appended
        :raises ReplicationTimeoutError: not acknowledged within the ``timeout`` option; the
            record stays committed locally and is shipped once the stream is reachable
        :raises ReplicationError: replication stopped for good (see :meth:`status`)
        """
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise TypeError("seq must be an int")
        if seq > self._log.last_seq:
            raise ValueError(f"seq {seq} has not been appended (last_seq is {self._log.last_seq})")
        if self._handle is None:
            raise ReplicationError("replication is not started")
        if self._local is not None:
            await self._local.wait(seq)
            return
        await self._log.wait_for(seq, Durability.REPLICATED)

    def status(self) -> ReplicationStatus:
        """A snapshot: what is shipped, what is in flight, the last problem."""
        if self._shipper is None:
            raise ReplicationError("replication is not started")
        return self._shipper.status()

    async def close(self) -> None:
        """Ship what is durable now (up to ``drain_timeout`` seconds), then stop."""
        shipper = self._shipper
        if shipper is None:
            return
        await shipper.stop()
        if self._local is not None:
            self._local.close(ReplicationError("the replicator was closed"))

    async def __aenter__(self) -> Replicator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def replicate(log: Log, options: NatsReplication, **start: Any) -> Replicator:
    """Start replicating ``log``: ``Replicator(log, options)`` then :meth:`Replicator.start`."""
    rep = Replicator(log, options)
    await rep.start(**start)
    return rep
