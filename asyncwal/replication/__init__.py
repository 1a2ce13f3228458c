"""Replication: ship a log to a NATS JetStream stream, wait at ``REPLICATED``, restore from it.

::

    import asyncwal
    from asyncwal import Durability
    from asyncwal.replication import NatsReplication

    settings = NatsReplication(servers=["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"])
    async with asyncwal.open("data/wal", replicate=settings) as log:
        seq = await log.append(b"payload", durability=Durability.REPLICATED)
        # on local DISK and stored on a quorum of the cluster

    report = await asyncwal.replication.restore("data/wal", settings)

Needs the ``nats`` extra (``pip install 'asyncwal[nats]'``); ``import asyncwal`` never
imports this package, and this package imports the NATS client only when replication
starts. See docs/replication.md for what ``REPLICATED`` survives and what it does not.
"""

from ._options import NatsReplication as NatsReplication
from ._replicator import Replicator as Replicator
from ._replicator import replicate as replicate
from ._replicator import replicator_of as replicator_of
from ._restore import RestoreReport as RestoreReport
from ._restore import restore as restore
from ._shipper import ReplicationStatus as ReplicationStatus

__all__ = (
    "NatsReplication",
    "ReplicationStatus",
    "Replicator",
    "RestoreReport",
    "replicate",
    "replicator_of",
    "restore",
)
