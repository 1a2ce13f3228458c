"""The replication settings: where the stream is and how the shipper behaves. Validated once."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._wire import Layout

__all__ = ("NatsReplication",)

KiB: Final = 1024

# A JetStream stream name: no whitespace, dots, wildcards or path separators.
_STREAM_NAME = re.compile(r"[^\s.*>/\\]{1,255}")
# A NATS subject without wildcards: dot-separated non-empty tokens.
_SUBJECT = re.compile(r"[^\s.*>]+(\.[^\s.*>]+)*")


@dataclass(frozen=True, slots=True, kw_only=True)
class NatsReplication:
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
    :param max_in_flight: record layout: messages published and not yet acknowledged, at
        most (default 256). The packed layout always has one in flight (its order check
        needs the previous message stored; the next message grows meanwhile).
    :param max_message_bytes: packed layout: the largest message body the shipper builds
        (capped by the server's ``max_payload``). A record larger than that travels alone.
    :param drain_timeout: on close, seconds the shipper keeps shipping what is durable
        before it stops (records left over are shipped by the next run).
    :param connect_options: extra keyword arguments for ``nats.connect`` (credentials, TLS,
        ...). The shipper sets its own reconnect and callback options.
    """

    servers: str | tuple[str, ...] | list[str]
    stream: str | None = None
    subject: str | None = None
    layout: Layout = "packed"
    replicas: int = 3
    create_stream: bool = True
    timeout: float = 5.0
    request_timeout: float = 2.0
    max_in_flight: int | None = None
    max_message_bytes: int = 512 * KiB
    drain_timeout: float = 5.0
    connect_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        servers = (self.servers,) if isinstance(self.servers, str) else tuple(self.servers)
        if not servers or not all(isinstance(s, str) and s for s in servers):
            raise ValueError("servers must be a NATS URL or a non-empty list of them")
        object.__setattr__(self, "servers", servers)
        if self.stream is not None and not (
            isinstance(self.stream, str) and _STREAM_NAME.fullmatch(self.stream)
        ):
            raise ValueError(f"invalid stream name {self.stream!r} (no spaces, '.', '*', '>' or slashes)")
        if self.subject is not None and not (
            isinstance(self.subject, str) and _SUBJECT.fullmatch(self.subject)
        ):
            raise ValueError(f"invalid subject {self.subject!r} (dot-separated tokens, no wildcards)")
        if self.layout not in ("packed", "record"):
            raise ValueError(f"layout must be 'packed' or 'record', not {self.layout!r}")
        _int("replicas", self.replicas, 1)
        if self.max_in_flight is not None:
            _int("max_in_flight", self.max_in_flight, 1)
        _int("max_message_bytes", self.max_message_bytes, 1024)
        for name in ("timeout", "request_timeout", "drain_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
            if math.isnan(value) or value <= 0 or value == math.inf:
                raise ValueError(f"{name} must be a finite number of seconds > 0, not {value!r}")
        if not isinstance(self.create_stream, bool):
            raise TypeError("create_stream must be a bool")
        object.__setattr__(self, "connect_options", dict(self.connect_options))

    @property
    def in_flight(self) -> int:
        """Messages the shipper keeps in flight in this layout."""
        if self.layout == "packed":
            return 1
        return self.max_in_flight if self.max_in_flight is not None else 256

    def stream_for(self, log_id: str) -> str:
        return self.stream if self.stream is not None else f"asyncwal-{log_id}"

    def subject_for(self, log_id: str) -> str:
        return self.subject if self.subject is not None else f"asyncwal.{log_id}"


def _int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value}")
