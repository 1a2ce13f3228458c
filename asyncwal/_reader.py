"""Reading records back: the async segment reader behind ``Log.replay()`` and ``follow()``.

Reads go through :meth:`FileOps.open_reader` (aiofiles for the real file system) in large
chunks, and every frame's CRC is checked again: bytes can rot at rest.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, NamedTuple

import google_crc32c

from ._errors import CorruptLogError
from ._format import BATCH, DATA, SEGMENT_HEADER_SIZE, FormatError, decode_batch, decode_segment_header

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from ._fileops import AsyncReader

__all__ = ("READ_CHUNK", "Record", "read_segment")

READ_CHUNK = 1 << 20
_FRAME = struct.Struct("<IIQB3x")
_unpack_frame = _FRAME.unpack_from
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
) -> AsyncIterator[Record]:
    """Yield the records of one segment whose seq is ``>= start``, in order.

    Stops before the first record whose seq is above ``limit()`` (called again before every
    frame, so a growing log is read as far as it has reached the OS). With ``wait``, it
    instead awaits ``wait(seq)`` there and goes on if that returns True (live tailing).

    :raises CorruptLogError: a frame inside the readable range does not validate
    """
    buf = await reader.read(READ_CHUNK)
    try:
        if decode_segment_header(buf) != first_seq:
            raise FormatError("segment header does not match its name")
    except FormatError as exc:
        raise CorruptLogError(str(exc), segment=path, offset=0) from None
    base = 0  # file offset of buf[0]
    pos = SEGMENT_HEADER_SIZE
    seq = first_seq
    while True:
        # Invariant: every record with seq <= limit() is wholly in the file, so from here on
        # anything that does not read back is damage, never a record still being written.
        if seq > limit():
            if wait is None or not await wait(seq):
                return
            continue
        if pos + 20 > len(buf):
            # The file may have grown since the last read (the active segment): read on.
            buf, base, pos, grew = await _refill(reader, buf, base, pos, 20)
            if not grew:
                raise CorruptLogError(f"record {seq} is missing", segment=path, offset=base + pos)
            continue
        crc, length, fseq, rtype = _unpack_frame(buf, pos)
        if length > max_length or fseq != seq or rtype not in (DATA, BATCH):
            raise CorruptLogError(f"record {seq} does not validate", segment=path, offset=base + pos)
        end = pos + 20 + length
        if end > len(buf):
            buf, base, pos, grew = await _refill(reader, buf, base, pos, 20 + length)
            if not grew:
                raise CorruptLogError(f"record {seq} is cut short", segment=path, offset=base + pos)
            continue
        if _crc(buf[pos + 4 : end]) != crc:
            raise CorruptLogError("checksum mismatch", segment=path, offset=base + pos)
        if rtype == DATA:
            if seq >= start:
                yield Record(seq, buf[pos + 20 : end])
            seq += 1
        else:
            try:
                items = decode_batch(buf[pos + 20 : end])
            except FormatError as exc:
                raise CorruptLogError(str(exc), segment=path, offset=base + pos) from None
            for data in items:
                if seq >= start:
                    yield Record(seq, data)
                seq += 1
        pos = end


async def _refill(
    reader: AsyncReader, buf: bytes, base: int, pos: int, need: int
) -> tuple[bytes, int, int, bool]:
    """Drop the consumed part of ``buf`` and read on, at least up to ``need`` bytes from ``pos``.

    :return: ``(buf, base, pos, grew)``; ``grew`` is False if the file had nothing more
    """
    want = max(READ_CHUNK, need - (len(buf) - pos))
    parts = [buf[pos:]]
    got = 0
    while got < want:
        chunk = await reader.read(want - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts), base + pos, 0, got > 0
