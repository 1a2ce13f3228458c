"""Where the shipper gets records from: the log's records that have reached ``DISK``, in order.

The shipper must never publish a record that a local crash could still take back, so it only
ever gets records at or below the log's ``durable_seq``. They come from two places:

* **the engine's durable tap** (``Engine.tap_durable``): the payloads of each group, handed
  over from memory on the loop thread the moment the group is durable. This is the common
  case, and it costs no I/O: a ``REPLICATED`` append pays no read-back of its own record.
* **the files**, read through the log's own reader, for whatever the tap cannot give: records
  written before the tap was set, records it dropped (too many bytes waited for an fsync),
  records this source forgot (the shipper fell more than ``max_bytes`` behind, e.g. while the
  stream was unreachable), and records the shipper needs again after a resync.

Invariants: :meth:`TapSource.take` and :meth:`TapSource.read` return consecutive records
starting exactly at the position (``seek`` sets it, every return advances it); memory holds
at most about ``max_bytes`` of records the shipper has not taken; a record is read from the
files only once it is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING, Final

from .._options import Durability

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable

    from .._log import Log
    from .._reader import Record

__all__ = ("TapSource", "read_records")

_DISK: Final = Durability.DISK
MiB: Final = 1024 * 1024
#: Bytes of durable records the source keeps in memory for the shipper, at most; past that
#: it forgets them and reads them from the files when the shipper gets to them.
DEFAULT_MAX_BYTES: Final = 32 * MiB


def read_records(log: Log, start: int, end: int) -> AsyncGenerator[Record, None]:
    """The records ``start..end`` (all durable) read from the log's files, even while the
    log is closing (``replay()`` refuses then).

    :raises TruncatedError: a record in the range was removed by ``truncate_before``
    """
    return log._read(start, lambda: end, follow=False)


class TapSource:
    """The log's durable records from a position on, from the tap or from the files.

    :param notify: called (loop thread) when records may have become available
    :param max_bytes: the most bytes of records kept in memory for the shipper
    """

    def __init__(self, log: Log, notify: Callable[[], None], max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._log = log
        self._engine = log._engine
        self._notify = notify
        self._max = max_bytes
        # (first seq, payloads, bytes), consecutive, oldest first (a gap only before the first)
        self._chunks: deque[tuple[int, list[bytes], int]] = deque()
        self._bytes = 0
        self._next = 1
        # The open file reader, the seq it yields next, and the record it yielded that did
        # not fit in the last read.
        self._files: AsyncGenerator[Record, None] | None = None
        self._files_next = 0
        self._files_end = 0
        self._held: Record | None = None
        self._watch: asyncio.Task[None] | None = None
        tap_from = self._engine.tap_durable(self._on_tap, max_bytes=max_bytes)
        if self._engine.mark(_DISK) < tap_from - 1:
            # Records below tap_from never come through the tap: tell the shipper when they
            # are durable (on an idle log, no later delivery would).
            self._watch = asyncio.get_running_loop().create_task(self._watch_disk(tap_from - 1))

    async def _watch_disk(self, seq: int) -> None:
        engine = self._engine
        with contextlib.suppress(Exception):
            await engine.wait_progress(seq, lambda: engine.mark(_DISK))
        self._notify()

    def _on_tap(self, first: int, payloads: list[bytes] | None) -> None:
        if payloads is None:
            return  # dropped by the engine: a gap before the next delivery, read from the files
        nbytes = sum(map(len, payloads))
        if self._bytes + nbytes > self._max:
            # The shipper is far behind: keep nothing, it reads these from the files.
            self._chunks.clear()
            self._bytes = 0
        else:
            self._chunks.append((first, payloads, nbytes))
            self._bytes += nbytes
        self._notify()

    # -- the position ------------------------------------------------------------------

    def seek(self, seq: int) -> None:
        """The next record wanted is ``seq``."""
        self._next = seq
        self._prune()

    def _prune(self) -> None:
        chunks = self._chunks
        nxt = self._next
        while chunks and chunks[0][0] + len(chunks[0][1]) <= nxt:
            self._bytes -= chunks.popleft()[2]

    # -- from memory -------------------------------------------------------------------

    def take(self, max_records: int, max_bytes: int) -> tuple[int, list[bytes]] | None:
        """The records from the position on that the tap has handed over: at most
        ``max_records``, and (with 4 bytes of framing each, and 4 for the count) at most
        ``max_bytes``, except that a first record larger than that comes alone. Never waits.

        :return: ``(first seq, payloads)``, or None if the next record is not in memory
        """
        self._prune()
        chunks = self._chunks
        nxt = self._next
        if not chunks or chunks[0][0] > nxt:
            return None
        first = nxt
        out: list[bytes] = []
        room = max_bytes - 4
        while chunks and len(out) < max_records:
            cfirst, payloads, nbytes = chunks[0]
            if cfirst > nxt:
                break
            if cfirst < nxt:  # partly taken before
                payloads = payloads[nxt - cfirst :]
                self._bytes -= nbytes
                nbytes = sum(map(len, payloads))
                self._bytes += nbytes
                chunks[0] = (nxt, payloads, nbytes)
            n = len(payloads)
            if n <= max_records - len(out) and nbytes + 4 * n <= room:
                out += payloads
                room -= nbytes + 4 * n
                nxt += n
                self._bytes -= nbytes
                chunks.popleft()
                continue
            k = 0
            limit = min(n, max_records - len(out))
            while k < limit:
                size = 4 + len(payloads[k])
                if size > room and (out or k):
                    break
                room -= size
                k += 1
            if k:
                out += payloads[:k]
                nxt += k
            break
        self._next = nxt
        return (first, out) if out else None

    # -- from the files ----------------------------------------------------------------

    def needs_read(self) -> bool:
        """True when the next record is durable but not in memory (see :meth:`read`)."""
        self._prune()
        if self._chunks and self._chunks[0][0] <= self._next:
            return False
        return self._engine.mark(_DISK) >= self._next

    async def read(self, max_records: int, max_bytes: int) -> tuple[int, list[bytes]] | None:
        """Like :meth:`take`, for durable records that are not in memory: read from the files
        (up to the first record that is).

        :raises TruncatedError: the next record was removed by ``truncate_before``
        :raises CorruptLogError: the files do not read back
        """
        self._prune()
        nxt = self._next
        end = self._engine.mark(_DISK)
        if self._chunks:
            end = min(end, self._chunks[0][0] - 1)
        if end < nxt:
            return None
        if self._files is not None and self._files_next != nxt:
            await self._close_files()
        self._files_end = end
        if self._files is None:
            # Bounded by _files_end, read at each step: a reader left open goes on as far as
            # the next read() allows.
            self._files = self._log._read(nxt, lambda: self._files_end, follow=False)
            self._files_next = nxt
        out: list[bytes] = []
        room = max_bytes - 4
        files = self._files
        while len(out) < max_records and nxt <= end:
            rec = self._held
            self._held = None
            if rec is None:
                try:
                    rec = await files.__anext__()
                except StopAsyncIteration:
                    await self._close_files()
                    break
            size = 4 + len(rec.data)
            if size > room and out:
                self._held = rec
                break
            assert rec.seq == nxt, f"read seq {rec.seq}, expected {nxt}"
            room -= size
            out.append(rec.data)
            nxt += 1
        self._next = self._files_next = nxt
        return (nxt - len(out), out) if out else None

    async def _close_files(self) -> None:
        files, self._files, self._held = self._files, None, None
        if files is not None:
            await files.aclose()

    async def close(self) -> None:
        """Stop the tap and the file reader; the source is unusable afterwards."""
        self._engine.untap_durable()
        self._chunks.clear()
        self._bytes = 0
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self._close_files()
