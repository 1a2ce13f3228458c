"""The on-disk format, version 1: a pure codec with no I/O. See docs/format.md.

Segment file ``<first_seq:020d>.wal``::

    segment  := header frame* zero*
    header   := magic[8]="ASYNCWAL" version:u32=1 flags:u32=0 first_seq:u64 crc:u32 pad[4]=0
    frame    := crc:u32 length:u32 seq:u64 type:u8 pad[3]=0 payload[length]

All integers are little-endian. ``header.crc`` is the CRC32C of the header's first 24 bytes;
``frame.crc`` is the CRC32C of the frame's bytes 4..20 followed by the payload, so it covers
the length, the seq and the type as well as the data. A frame of ``type`` DATA holds one
record with ``seq``; a frame of type BATCH holds the records ``seq .. seq+count-1``::

    batch payload := count:u32 length:u32{count} data{count}

A frame is valid if and only if: its 20 header bytes are in the file, ``type`` is DATA or
BATCH, the pad is zero, ``length`` is at most the reader's limit, the whole payload is in the
file, the CRC matches, ``seq`` is exactly the seq that follows the previous frame (the
header's ``first_seq`` for the first frame), and, for a batch, the payload parses exactly.
The log in a segment ends at the first position that does not hold a valid frame. If every
byte from there to the end of the file is zero, the segment ends cleanly (segments are
zero-filled ahead of the write position); anything else is damage.

CRC32C of an all-zero frame header is not zero, so zero-filled space can never parse as a
record; and because the seq is covered, a stale frame from an older position cannot either.
"""

from __future__ import annotations

import struct
import sys
from array import array
from typing import TYPE_CHECKING, Final

import google_crc32c

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = (
    "BATCH",
    "DATA",
    "FORMAT_VERSION",
    "FRAME",
    "FRAME_HEADER_SIZE",
    "FRAME_TAIL",
    "FormatError",
    "META_NAME",
    "SEGMENT_HEADER_SIZE",
    "U32",
    "batch_count",
    "crc32c",
    "decode_batch",
    "decode_meta",
    "decode_segment_header",
    "encode_batch",
    "encode_frame",
    "encode_meta",
    "encode_segment_header",
    "frame_header",
    "parse_segment_name",
    "segment_name",
)

FORMAT_VERSION: Final = 1
SEGMENT_MAGIC: Final = b"ASYNCWAL"
META_MAGIC: Final = b"AWALMETA"
META_NAME: Final = "META"
SEGMENT_SUFFIX: Final = ".wal"

DATA: Final = 1
BATCH: Final = 2

_SEG_HEADER = struct.Struct("<8sIIQI4x")
SEGMENT_HEADER_SIZE: Final = _SEG_HEADER.size  # 32

#: The frame header, and its part after the CRC (what the CRC covers, with the payload).
#: Other modules frame and parse records with these; the layout is defined only here.
FRAME = struct.Struct("<IIQB3x")
FRAME_TAIL = struct.Struct("<IQB3x")
U32 = struct.Struct("<I")
FRAME_HEADER_SIZE: Final = FRAME.size  # 20

_META = struct.Struct("<8sIIQQI")  # magic version flags low_water cp_seq cp_len
_META_HAS_CHECKPOINT: Final = 1

crc32c = google_crc32c.value
_crc_extend = google_crc32c.extend
_tail_pack = FRAME_TAIL.pack
_u32_pack = U32.pack
_BIG_ENDIAN = sys.byteorder == "big"
assert array("I").itemsize == 4, "BATCH length tables are arrays of 32-bit unsigned ints"


class FormatError(Exception):
    """Bytes that are not valid in this format. Internal: mapped to CorruptLogError at the edge."""


def segment_name(first_seq: int) -> str:
    """File name of the segment whose first record has ``first_seq``; names sort by seq."""
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    """The first seq encoded in a segment file name, or None if ``name`` is not a segment."""
    if len(name) != 20 + len(SEGMENT_SUFFIX) or not name.endswith(SEGMENT_SUFFIX):
        return None
    digits = name[:20]
    return int(digits) if digits.isdigit() else None


def encode_segment_header(first_seq: int) -> bytes:
    head = _SEG_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, 0, first_seq, 0)[:24]
    return _SEG_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, 0, first_seq, crc32c(head))


def decode_segment_header(buf: bytes | memoryview) -> int:
    """Return the header's first seq; raise FormatError if the header is not valid."""
    if len(buf) < SEGMENT_HEADER_SIZE:
        raise FormatError(f"segment header is {len(buf)} bytes, expected {SEGMENT_HEADER_SIZE}")
    magic, version, flags, first_seq, crc = _SEG_HEADER.unpack_from(buf, 0)
    if magic != SEGMENT_MAGIC:
        raise FormatError("not an asyncwal segment (bad magic)")
    if crc32c(bytes(buf[:24])) != crc:
        raise FormatError("segment header checksum mismatch")
    if version != FORMAT_VERSION:
        raise FormatError(f"segment format version {version} is not supported (this is {FORMAT_VERSION})")
    if flags != 0:
        raise FormatError(f"unknown segment flags {flags:#x}")
    return int(first_seq)


def frame_header(seq: int, payload: bytes, rtype: int = DATA) -> bytes:
    """The 20-byte header that precedes ``payload`` on disk."""
    tail = _tail_pack(len(payload), seq, rtype)
    return _u32_pack(_crc_extend(crc32c(tail), payload)) + tail


def encode_batch(payloads: Sequence[bytes]) -> bytes:
    """Payload of a BATCH frame holding ``payloads`` in order."""
    table = array("I", (len(payloads),))
    table.extend(map(len, payloads))
    if _BIG_ENDIAN:
        table.byteswap()
    return b"".join((table.tobytes(), *payloads))


def encode_frame(seq: int, payloads: Sequence[bytes]) -> tuple[bytes, bytes]:
    """Header and payload of the frame holding ``payloads`` from ``seq`` on.

    One record is a DATA frame; several are a BATCH frame, so that a whole group costs one
    header and one CRC however many records it holds.
    """
    if len(payloads) == 1:
        payload = payloads[0]
        return frame_header(seq, payload), payload
    body = encode_batch(payloads)
    return frame_header(seq, body, BATCH), body


def _batch_lengths(payload: bytes | memoryview) -> tuple[int, ...]:
    """The record lengths of a BATCH payload; raise FormatError unless it parses exactly."""
    if len(payload) < 4:
        raise FormatError("batch payload shorter than its count")
    (count,) = U32.unpack_from(payload, 0)
    table_end = 4 + 4 * count
    if count == 0 or table_end > len(payload):
        raise FormatError(f"batch count {count} does not fit its payload")
    lengths: tuple[int, ...] = struct.unpack_from(f"<{count}I", payload, 4)
    if table_end + sum(lengths) != len(payload):
        raise FormatError("batch lengths do not add up to its payload")
    return lengths


def batch_count(payload: bytes | memoryview) -> int:
    """How many records a BATCH payload holds; raise FormatError unless it parses exactly."""
    return len(_batch_lengths(payload))


def decode_batch(payload: bytes | memoryview) -> list[bytes]:
    """Split a BATCH payload; raise FormatError unless it parses exactly."""
    lengths = _batch_lengths(payload)
    out = []
    pos = 4 + 4 * len(lengths)
    view = memoryview(payload)
    for n in lengths:
        out.append(bytes(view[pos : pos + n]))
        pos += n
    return out


# -- frame scanning ---------------------------------------------------------------------

#: scan_frame results (negative); non-negative results are the offset just past the frame.
END = -1  # only zero bytes (or nothing) from here on: the clean end of a segment
NEED_MORE = -2  # the frame runs past the end of the buffer
BAD = -3  # damage


def scan_frame(
    buf: bytes | memoryview, pos: int, expected_seq: int, max_length: int
) -> tuple[int, int, int, str]:
    """Check the frame at ``pos``.

    :return: ``(end, type, count, reason)``: ``end`` is the offset just past a valid frame, or
        END, NEED_MORE or BAD; ``count`` is how many seqs the frame holds; ``reason`` says what
        is wrong when ``end`` is BAD or NEED_MORE.

    ``buf`` must hold everything from ``pos`` that the caller has: NEED_MORE means a longer
    buffer could decide, so at the end of a file it means a torn frame. Never allocates
    more than the frame's bytes; a length over ``max_length`` is BAD before anything is read.
    """
    size = len(buf)
    if pos + FRAME_HEADER_SIZE > size:
        if not any(buf[pos:size]):
            return END, 0, 0, ""
        return NEED_MORE, 0, 0, "frame header runs past the end of the file"
    crc, length, seq, rtype = FRAME.unpack_from(buf, pos)
    if crc == 0 and length == 0 and seq == 0 and rtype == 0:
        return END, 0, 0, ""  # the caller decides whether the rest is zero too
    if rtype not in (DATA, BATCH) or buf[pos + 17 : pos + 20] != b"\0\0\0":
        return BAD, 0, 0, f"unknown record type {rtype}"
    if length > max_length:
        return BAD, 0, 0, f"length field {length} exceeds the limit {max_length}"
    end = pos + FRAME_HEADER_SIZE + length
    if end > size:
        return NEED_MORE, 0, 0, "record runs past the end of the file"
    if crc32c(bytes(buf[pos + 4 : end])) != crc:
        return BAD, 0, 0, "checksum mismatch"
    if seq != expected_seq:
        return BAD, 0, 0, f"seq {seq} where {expected_seq} was expected"
    if rtype == BATCH:
        try:
            count = batch_count(memoryview(buf)[pos + 20 : end])
        except FormatError as exc:
            return BAD, 0, 0, str(exc)
        return end, rtype, count, ""
    return end, rtype, 1, ""


def is_zero(buf: bytes | memoryview, start: int) -> bool:
    """True if every byte of ``buf`` from ``start`` on is zero."""
    view = memoryview(buf)[start:]
    step = 1 << 16
    zero = bytes(step)
    for i in range(0, len(view), step):
        chunk = view[i : i + step]
        if chunk != zero[: len(chunk)]:
            return False
    return True


# -- META file ----------------------------------------------------------------------------


def encode_meta(low_water: int, checkpoint: tuple[int, bytes] | None) -> bytes:
    """The META file: low-water seq of truncate_before() and the last checkpoint."""
    flags = _META_HAS_CHECKPOINT if checkpoint is not None else 0
    cp_seq, cp_data = checkpoint if checkpoint is not None else (0, b"")
    body = _META.pack(META_MAGIC, FORMAT_VERSION, flags, low_water, cp_seq, len(cp_data)) + cp_data
    return body + _u32_pack(crc32c(body))


def decode_meta(buf: bytes) -> tuple[int, tuple[int, bytes] | None]:
    if len(buf) < _META.size + 4:
        raise FormatError("META file is too short")
    magic, version, flags, low_water, cp_seq, cp_len = _META.unpack_from(buf, 0)
    if magic != META_MAGIC:
        raise FormatError("META file has a bad magic")
    if len(buf) != _META.size + cp_len + 4 or U32.unpack_from(buf, len(buf) - 4)[0] != crc32c(buf[:-4]):
        raise FormatError("META file checksum mismatch")
    if version != FORMAT_VERSION:
        raise FormatError(f"META format version {version} is not supported")
    checkpoint = (int(cp_seq), bytes(buf[_META.size : _META.size + cp_len])) if flags & 1 else None
    return int(low_water), checkpoint
