"""The replication settings: where the stream is and how the shipper behaves. Validated once.

The data lives here, below everything that reads it; the public class
(:class:`~asyncwal.replication.NatsReplication`, in _options) adds the one method that starts
a replicator, so that the modules it starts never import it back.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from ._wire import MAX_FENCES

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._wire import Layout

__all__ = ("Settings",)

KiB: Final = 1024
#: Messages in flight by default, per layout (see ``max_in_flight``).
PACKED_IN_FLIGHT: Final = 32
RECORD_IN_FLIGHT: Final = 256

# A JetStream stream name: no whitespace, dots, wildcards or path separators.
_STREAM_NAME = re.compile(r"[^\s.*>/\\]{1,255}")
# A NATS subject without wildcards: dot-separated non-empty tokens.
_SUBJECT = re.compile(r"[^\s.*>]+(\.[^\s.*>]+)*")


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The fields and checks of :class:`~asyncwal.replication.NatsReplication` (documented
    there), as the shipper, the link and restore read them."""

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
            if self.layout == "packed" and self.max_in_flight > MAX_FENCES:
                raise ValueError(f"max_in_flight must be <= {MAX_FENCES} in the packed layout")
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
        if self.max_in_flight is not None:
            return self.max_in_flight
        return PACKED_IN_FLIGHT if self.layout == "packed" else RECORD_IN_FLIGHT

    def stream_for(self, log_id: str) -> str:
        return self.stream if self.stream is not None else f"asyncwal-{log_id}"

    def subject_for(self, log_id: str) -> str:
        return self.subject if self.subject is not None else f"asyncwal.{log_id}"


def _int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value}")
