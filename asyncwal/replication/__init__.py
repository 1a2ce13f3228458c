"""Replication: ship a log to a NATS JetStream stream, wait at ``REPLICATED``, restore from it.

::

    from asyncwal.replication import NatsReplication, Replicator

    async with asyncwal.open("data/wal") as log:
        async with Replicator(log, NatsReplication(servers=["nats://10.0.0.1:4222"])) as rep:
            seq = await log.append(b"payload")
            await rep.wait_replicated(seq)   # on local DISK and stored on a quorum

    report = await asyncwal.replication.restore("data/wal", NatsReplication(servers=[...]))

Needs the ``nats`` extra (``pip install 'asyncwal[nats]'``); ``import asyncwal`` never
imports this package, and this package imports the NATS client only when replication
starts. See docs/replication.md for what ``REPLICATED`` survives and what it does not.
"""

from ._options import NatsReplication as NatsReplication
from ._replicator import Replicator as Replicator
from ._replicator import log_id_of as log_id_of
from ._replicator import replicate as replicate
from ._restore import RestoreReport as RestoreReport
from ._restore import restore as restore
from ._shipper import ReplicationStatus as ReplicationStatus

__all__ = (
    "NatsReplication",
    "ReplicationStatus",
    "Replicator",
    "RestoreReport",
    "log_id_of",
    "replicate",
    "restore",
)
