"""The public replication settings: :class:`NatsReplication`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._settings import Settings

if TYPE_CHECKING:
    from .._log import Log
    from ._replicator import Replicator

__all__ = ("NatsReplication",)


@dataclass(frozen=True, slots=True, kw_only=True)
class NatsReplication(Settings):
    """Ship a log to a NATS JetStream stream, and offer ``Durability.REPLICATED``.

    :param servers: the NATS URL(s) of the cluster, e.g. ``["nats://10.0.0.1:4222",
        "nats://10.0.0.2:4222"]``; give several, the client fails over between them.
    :param stream: the JetStream stream that holds this log. Default ``asyncwal-<log id>``.
        One stream holds one log: the shipper refuses a stream that belongs to another.
    :param subject: the subject the log's messages are published on. Default
        ``asyncwal.<log id>``.
    :param layout: ``"packed"`` (default): one message per run of records (up to
        ``max_message_bytes``), the seq range in its headers: the fast one. ``"record"``: one
        message per record, its payload as the body: any NATS consumer can read records
        directly, at a far lower rate (the client costs ~50 us of CPU per message).
    :param replicas: replicas of a stream the shipper creates (3: a Raft quorum of 2
        survives the loss of one server). An existing stream keeps its own setting.
    :param create_stream: create the stream if it does not exist (else it is an error).
    :param timeout: seconds a ``REPLICATED`` wait may last before it fails with
        :class:`~asyncwal.ReplicationTimeoutError` (the record stays committed locally).
    :param request_timeout: seconds the shipper waits for one acknowledgement or API answer
        before it treats the request as failed, settles what is in flight and re-reads the
        stream's position. Client futures can otherwise wait forever.
    :param max_in_flight: messages published and not yet acknowledged, at most (default
        256 in the record layout, 32 in the packed layout, where it is also the number of
        fences written at each start of shipping; at most 1000 there).
    :param max_message_bytes: packed layout: the largest message body the shipper builds
        (capped by the server's ``max_payload``). A record larger than that travels alone.
    :param drain_timeout: on close, seconds the shipper keeps shipping what is durable
        before it stops (records left over are shipped by the next run).
    :param connect_options: extra keyword arguments for ``nats.connect`` (credentials, TLS,
        ...). The shipper sets its own reconnect and callback options.
    """

    async def start_replication(self, log: Log, /) -> Replicator:
        """Start replicating ``log`` with these settings (what ``asyncwal.open(path,
        replicate=...)`` calls after recovery); the log's close stops it.

        :raises StreamMismatchError, DivergedError: see :meth:`Replicator.start`
        """
        from ._replicator import replicate

        return await replicate(log, self)
