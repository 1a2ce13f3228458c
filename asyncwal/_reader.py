"""Reading records back: the async segment reader behind ``Log.replay()`` and ``follow()``.

Reads go through :meth:`FileOps.open_reader` (aiofiles for the real file system) in large
chunks, and every frame's CRC is checked again: bytes can rot at rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import google_crc32c

from ._errors import CorruptLogError
from ._format import BATCH, DATA, FRAME, SEGMENT_HEADER_SIZE, FormatError, decode_batch, decode_segment_header

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from ._fileops import AsyncReader

__all__ = ("READ_CHUNK", "Record", "read_segment")

READ_CHUNK = 1 << 20
STALE_READ = 1 << 16
_unpack_frame = FRAME.unpack_from
_crc = google_crc32c.value


class Record(NamedTuple):
    """One record of the log."""

    #: its sequence number
    seq: int
    #: its payload
    data: bytes


async def read_segment(
    reader: AsyncReader,
    path: str,
    first_seq: int,
    start: int,
    limit: Callable[[], int],
    max_length: int,
    wait: Callable[[int], Awaitable[bool]] | None = None,
) -> AsyncIterator[list[Record]]:
    """Yield the records of one segment whose seq is ``>= start``, in order, in lists.

    Each list holds the records parsed from the buffer in one go (no await in between), so
    the caller's per-record work is one plain ``for`` step. Stops before the first record
    whose seq is above ``limit()`` (called again for every list, so a growing log is read as
    far as it has reached the OS). With ``wait``, it instead awaits ``wait(seq)`` there and
    goes on if that returns True (live tailing).

    :raises CorruptLogError: a frame inside the readable range does not validate
    """
    # Invariant: the bytes in ``buf`` are those of the file when it was read, so they can be
    # trusted only for records with seq <= ``known`` (limit() just before that read: those
    # were wholly written by then). A later record may sit where ``buf`` still holds the zero
    # fill, so for it the file is read again.
    known = limit()
    buf = await _read_at(reader, 0, READ_CHUNK)
    try:
        if decode_segment_header(buf) != first_seq:
            raise FormatError("segment header does not match its name")
    except FormatError as exc:
        raise CorruptLogError(str(exc), segment=path, offset=0) from None
    base = 0  # file offset of buf[0]
    pos = SEGMENT_HEADER_SIZE
    seq = first_seq
    while True:
        # Parse what the buffer holds, up to the limit; no await in this loop.
        out: list[Record] = []
        stop = min(limit(), known)
        size = len(buf)
        while seq <= stop and pos + 20 <= size:
            crc, length, fseq, rtype = _unpack_frame(buf, pos)
            if length > max_length or fseq != seq or rtype not in (DATA, BATCH):
                raise CorruptLogError(f"record {seq} does not validate", segment=path, offset=base + pos)
            end = pos + 20 + length
            if end > size:
                break
            if _crc(buf[pos + 4 : end]) != crc:
                raise CorruptLogError("checksum mismatch", segment=path, offset=base + pos)
            if rtype == DATA:
                if seq >= start:
                    out.append(Record(seq, buf[pos + 20 : end]))
                seq += 1
            else:
                try:
                    items = decode_batch(buf[pos + 20 : end])
                except FormatError as exc:
                    raise CorruptLogError(str(exc), segment=path, offset=base + pos) from None
                for data in items:
                    if seq >= start:
                        out.append(Record(seq, data))
                    seq += 1
            pos = end
        if out:
            yield out
        if seq > limit():
            if wait is None or not await wait(seq):
                return
            continue
        # seq <= limit(): its frame is wholly in the file. Read it (again, if ``buf`` is stale
        # or ends too early); a tailing reader that waited usually needs little, so less.
        need = 20 if pos + 20 > len(buf) else 20 + min(_unpack_frame(buf, pos)[1], max_length)
        stale = seq > known
        known = limit()
        base += pos
        pos = 0
        size = STALE_READ if stale and need <= STALE_READ else max(need, READ_CHUNK)
        buf = await _read_at(reader, base, size)
        if len(buf) < need:
            raise CorruptLogError(f"record {seq} is missing or cut short", segment=path, offset=base)


async def _read_at(reader: AsyncReader, offset: int, size: int) -> bytes:
    """Read ``size`` bytes from ``offset``, fewer only at the end of the file."""
    await reader.seek(offset)
    parts = []
    got = 0
    while got < size:
        chunk = await reader.read(size - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)
