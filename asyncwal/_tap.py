"""The durable tap: records handed to an in-process consumer from memory once they are on disk.

The replication shipper needs every record, in seq order, as soon as it reaches ``DISK``.
Reading them back from the segment files costs a file read per progress event (~0.7 ms of a
``REPLICATED`` append at one appender, measured); the writer already holds the payloads of every
group it writes. :class:`DurableTap` keeps those groups from the moment the writer takes them
until an fsync covers them, then hands them over.

Invariants: groups are kept and delivered in seq order, each one whole, once, and only when
its last seq is durable; what waits is bounded by ``max_bytes`` (``none`` mode with nobody
syncing): past it, the kept groups are dropped and the consumer is told where its gap starts.
All of this runs on the event-loop thread.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, cast

from ._format import decode_batch
from ._segment import Batch

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("DurableTap",)


class DurableTap:
    """Groups handed to the writer and not yet durable, for one consumer.

    :param callback: ``callback(first, payloads)``: the records ``first, first + 1, ...`` are
        durable; ``callback(first, None)``: the records from ``first`` up to the next
        delivery's first seq were dropped from memory (read them from the files). Called on
        the loop thread; it must not block.
    :param max_bytes: the most payload bytes kept waiting for an fsync
    """

    __slots__ = ("_bytes", "_callback", "_groups", "_max")

    def __init__(self, callback: Callable[[int, list[bytes] | None], None], max_bytes: int) -> None:
        self._callback = callback
        self._max = max_bytes
        self._groups: deque[tuple[int, int, list[bytes | Batch], int]] = deque()  # first, last, items, bytes
        self._bytes = 0

    def __bool__(self) -> bool:
        """True while some group waits for its fsync."""
        return bool(self._groups)

    def taken(self, first: int, last: int, items: list[bytes | Batch], nbytes: int) -> None:
        """The writer took the group ``first..last``: keep it until it is durable."""
        groups = self._groups
        if self._bytes + nbytes > self._max and groups:
            dropped = groups[0][0]
            groups.clear()
            self._bytes = 0
            self._callback(dropped, None)
        groups.append((first, last, items, nbytes))
        self._bytes += nbytes

    def durable(self, seq: int) -> None:
        """Every seq up to ``seq`` is durable: hand over the groups wholly below it."""
        groups = self._groups
        callback = self._callback
        while groups and groups[0][1] <= seq:
            first, _, items, nbytes = groups.popleft()
            self._bytes -= nbytes
            if any(type(item) is Batch for item in items):
                payloads: list[bytes] = []
                for item in items:
                    if isinstance(item, Batch):
                        payloads += decode_batch(item.body)
                    else:
                        payloads.append(item)
            else:
                payloads = cast("list[bytes]", items)
            callback(first, payloads)
