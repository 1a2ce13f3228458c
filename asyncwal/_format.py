"""The on-disk format, version 1: a pure codec with no I/O. See docs/format.md.

Segment file ``<first_seq:020d>.wal`` (names: _filenames.py)::

    segment  := header frame* zero*
    header   := magic[8]="ASYNCWAL" version:u32=1 flags:u32=0 first_seq:u64 crc:u32 pad[4]=0
    frame    := crc:u32 length:u32 seq:u64 type:u8 pad[3]=0 payload[length]

All integers are little-endian. ``header.crc`` is the CRC32C of the header's first 24 bytes;
``frame.crc`` is the CRC32C of the frame's bytes 4..20 followed by the payload, so it covers
the length, the seq and the type as well as the data. A frame of type SINGLE holds one
record with ``seq``; a frame of type MULTI holds the records ``seq .. seq+count-1``::

    multi payload := count:u32 length:u32{count} data{count}

(format.md calls the two types by their version-1 names, DATA and BATCH. A MULTI frame is
either one ``append_batch()`` or the records of separate appends written in one group.)

A frame is valid if and only if: its 20 header bytes are in the file, ``type`` is SINGLE or
MULTI, the pad is zero, ``length`` is at most the reader's limit, the whole payload is in
the file, the CRC matches, ``seq`` is exactly the seq that follows the previous frame (the
header's ``first_seq`` for the first frame), and, for MULTI, the payload parses exactly.
The log in a segment ends at the first position that does not hold a valid frame. If every
byte from there to the end of the file is zero, the segment ends cleanly (segments are
zero-filled ahead of the write position); anything else is damage. _reader.py applies
this rule; this module only encodes, decodes and names what is wrong (:class:`Damage`).

CRC32C of an all-zero frame header is not zero, so zero-filled space can never parse as a
record; and because the seq is covered, a stale frame from an older position cannot either.

META (version 2; version 1 is still read, see :func:`decode_meta`)::

    meta := magic[8]="AWALMETA" version:u32=2 flags:u32 low_water:u64 cp_seq:u64
            rest_len:u32 log_id[16] cp_data[rest_len-16] crc:u32

Version 1 had ``cp_len`` where version 2 has ``rest_len`` and no log id. Keeping the fixed
part and counting the log id in ``rest_len`` means a version-1 reader finds a META of the
right length and checksum and then refuses it by its version, with a clear message.

This module is the only one that binds the CRC and the only one that knows a frame's size.
"""

from __future__ import annotations

import enum
import struct
import sys
import uuid
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import google_crc32c

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = (
    "FORMAT_VERSION",
    "FRAME",
    "FRAME_HEADER_SIZE",
    "FRAME_WORDS",
    "META_VERSION",
    "MULTI",
    "MULTI_OVERHEAD",
    "SEGMENT_HEADER_SIZE",
    "SINGLE",
    "Damage",
    "FormatError",
    "Meta",
    "crc32c",
    "crc32c_extend",
    "crc32c_of",
    "decode_batch",
    "decode_meta",
    "decode_segment_header",
    "encode_batch",
    "encode_frame",
    "encode_meta",
    "encode_segment_header",
    "frame_header",
    "frame_size",
    "is_zero",
    "max_frame_length",
    "meta_size_limit",
    "multi_frame_size",
    "multi_lengths",
    "new_log_id",
    "segment_header_version",
)

#: The segment format version this code writes and reads.
FORMAT_VERSION: Final = 1
#: The META version this code writes; it reads this one and version 1.
META_VERSION: Final = 2
SEGMENT_MAGIC: Final = b"ASYNCWAL"
META_MAGIC: Final = b"AWALMETA"

#: Frame types. SINGLE: one record. MULTI: several consecutive records under one CRC.
SINGLE: Final = 1
MULTI: Final = 2

_SEG_HEADER = struct.Struct("<8sIIQI4x")
SEGMENT_HEADER_SIZE: Final = _SEG_HEADER.size  # 32
_SEG_HEADER_CRC_END: Final = 24

#: The frame header, and its part after the CRC (what the CRC covers, with the payload).
FRAME = struct.Struct("<IIQB3x")
_FRAME_TAIL = struct.Struct("<IQB3x")
_U32 = struct.Struct("<I")
#: The frame header with its type and pad as one u32 (type in the low byte): a header is
#: well-formed only if that word is SINGLE or MULTI, one compare for both checks.
FRAME_WORDS = struct.Struct("<IIQI")
FRAME_HEADER_SIZE: Final = FRAME.size  # 20
#: Bytes a MULTI frame adds to its records' data besides 4 per record: the header and the count.
MULTI_OVERHEAD: Final = FRAME_HEADER_SIZE + 4

_META = struct.Struct("<8sIIQQI")  # magic version flags low_water cp_seq rest_len
_META_HAS_CHECKPOINT: Final = 1
_LOG_ID_SIZE: Final = 16

#: The CRC32C of bytes, and of more bytes after a CRC: the one binding (hardware CRC32C).
crc32c: Final[Callable[[bytes], int]] = google_crc32c.value
crc32c_extend: Final[Callable[[int, bytes], int]] = google_crc32c.extend
_tail_pack = _FRAME_TAIL.pack
_u32_pack = _U32.pack
_BIG_ENDIAN = sys.byteorder == "big"
assert array("I").itemsize == 4, "MULTI length tables are arrays of 32-bit unsigned ints"


class Damage(enum.Enum):
    """What is wrong with bytes that are not valid in this format (the typed reason a reader
    ends with). The value is the sentence shown to people."""

    # The segment header.
    SHORT_HEADER = "segment header cut short"
    NOT_A_SEGMENT = "not an asyncwal segment (bad magic)"
    BAD_HEADER = "segment header damaged"
    NEWER_FORMAT = "segment written by a newer format (unknown version or flags)"
    MISNAMED = "segment header's first seq differs from its name"
    # Frames.
    TORN_HEADER = "frame header runs past the end of the file"
    TORN_PAYLOAD = "record runs past the end of the file"
    BAD_TYPE = "unknown frame type"
    TOO_LONG = "length field exceeds the limit"
    CHECKSUM = "checksum mismatch"
    WRONG_SEQ = "seq out of order"
    BAD_MULTI = "multi-record frame does not parse"
    NOT_ZERO_AFTER_END = "non-zero bytes after a zero frame header"
    # META.
    META_DAMAGED = "META does not validate"
    META_NEWER = "META written by a newer version"

    @property
    def torn(self) -> bool:
        """True for the damage a write cut short at the end of a file leaves."""
        return self in (Damage.TORN_HEADER, Damage.TORN_PAYLOAD)


class FormatError(Exception):
    """Bytes that are not valid in this format. Internal: mapped to CorruptLogError at the edge.

    :ivar damage: what kind of damage
    :ivar detail: more about it (may be empty)
    """

    def __init__(self, damage: Damage, detail: str = "") -> None:
        super().__init__(f"{damage.value}: {detail}" if detail else damage.value)
        self.damage = damage
        self.detail = detail


# -- sizes ------------------------------------------------------------------------------------


def max_frame_length(max_record_size: int, max_batch_bytes: int) -> int:
    """Largest payload length a reader accepts: one record, or one encoded batch."""
    return max(max_record_size, max_batch_bytes)


def frame_size(payload_length: int) -> int:
    """Bytes on disk of a frame whose payload is ``payload_length`` bytes."""
    return FRAME_HEADER_SIZE + payload_length


def multi_frame_size(count: int, data_bytes: int) -> int:
    """Bytes on disk of a MULTI frame holding ``count`` records of ``data_bytes`` in all."""
    return MULTI_OVERHEAD + 4 * count + data_bytes


#: Payloads longer than this are checksummed piece by piece (see :func:`crc32c_of`).
_CRC_PIECE: Final = 1 << 17


def crc32c_of(buf: bytes, start: int, end: int) -> int:
    """CRC32C of ``buf[start:end]``. The CRC binding takes only ``bytes``, so a range is
    copied first; a long one is copied a piece at a time, so that no allocation is larger
    than a piece (a multi-MiB one would be a fresh mmap, page faults and all, every time)."""
    if end - start <= _CRC_PIECE:
        return crc32c(buf[start:end])
    crc = crc32c(buf[start : start + _CRC_PIECE])
    for at in range(start + _CRC_PIECE, end, _CRC_PIECE):
        crc = crc32c_extend(crc, buf[at : min(at + _CRC_PIECE, end)])
    return crc


# -- segment header ---------------------------------------------------------------------------


def encode_segment_header(first_seq: int) -> bytes:
    head = _SEG_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, 0, first_seq, 0)[:_SEG_HEADER_CRC_END]
    return _SEG_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, 0, first_seq, crc32c(head))


def decode_segment_header(buf: bytes | memoryview) -> int:
    """Return the header's first seq.

    :raises FormatError: the header is cut short, not ours, damaged or from a newer format
    """
    if len(buf) < SEGMENT_HEADER_SIZE:
        if bytes(buf[: len(SEGMENT_MAGIC)]) != SEGMENT_MAGIC[: len(buf)]:
            raise FormatError(Damage.NOT_A_SEGMENT)
        raise FormatError(Damage.SHORT_HEADER, f"{len(buf)} bytes, expected {SEGMENT_HEADER_SIZE}")
    magic, version, flags, first_seq, crc = _SEG_HEADER.unpack_from(buf, 0)
    if magic != SEGMENT_MAGIC:
        raise FormatError(Damage.NOT_A_SEGMENT)
    if crc32c(bytes(buf[:_SEG_HEADER_CRC_END])) != crc:
        raise FormatError(Damage.BAD_HEADER, "checksum mismatch")
    if bytes(buf[_SEG_HEADER_CRC_END + 4 : SEGMENT_HEADER_SIZE]) != bytes(4):
        raise FormatError(Damage.BAD_HEADER, "non-zero pad")
    if version != FORMAT_VERSION or flags != 0:
        raise FormatError(
            Damage.NEWER_FORMAT, f"version {version}, flags {flags:#x} (this is version {FORMAT_VERSION})"
        )
    return int(first_seq)


def segment_header_version(buf: bytes | memoryview) -> int | None:
    """The version field of a segment header, whether or not the header is valid (None if
    the bytes are too short to hold one)."""
    return int(_U32.unpack_from(buf, 8)[0]) if len(buf) >= 12 else None


# -- frames -----------------------------------------------------------------------------------


def frame_header(seq: int, payload: bytes, rtype: int = SINGLE) -> bytes:
    """The 20-byte header that precedes ``payload`` on disk."""
    tail = _tail_pack(len(payload), seq, rtype)
    return _u32_pack(crc32c_extend(crc32c(tail), payload)) + tail


def encode_batch(payloads: Sequence[bytes]) -> bytes:
    """Payload of a MULTI frame holding ``payloads`` in order (an ``append_batch()``, or a
    group's records sharing one frame)."""
    table = array("I", (len(payloads),))
    table.extend(map(len, payloads))
    if _BIG_ENDIAN:
        table.byteswap()
    return b"".join((table.tobytes(), *payloads))


def encode_frame(seq: int, payloads: Sequence[bytes]) -> tuple[bytes, bytes]:
    """Header and payload of the frame holding ``payloads`` from ``seq`` on.

    One record is a SINGLE frame; several are a MULTI frame, so that a whole group costs one
    header and one CRC however many records it holds.
    """
    if len(payloads) == 1:
        payload = payloads[0]
        return frame_header(seq, payload), payload
    body = encode_batch(payloads)
    return frame_header(seq, body, MULTI), body


def multi_lengths(buf: bytes | memoryview, start: int, end: int) -> array[int]:
    """The record lengths of the MULTI payload ``buf[start:end]``, as an array (4 bytes a
    record, whatever the count).

    :raises FormatError: unless the payload parses exactly (``count >= 1``, and the table and
        the lengths add up to the payload)
    """
    size = end - start
    if size < 4:
        raise FormatError(Damage.BAD_MULTI, "payload shorter than its count")
    (count,) = _U32.unpack_from(buf, start)
    table_end = 4 + 4 * count
    if count == 0 or table_end > size:
        raise FormatError(Damage.BAD_MULTI, f"count {count} does not fit its payload")
    lengths = array("I")
    lengths.frombytes(buf[start + 4 : start + table_end])
    if _BIG_ENDIAN:
        lengths.byteswap()
    if table_end + sum(lengths) != size:
        raise FormatError(Damage.BAD_MULTI, "lengths do not add up to its payload")
    return lengths


def decode_batch(payload: bytes | memoryview) -> list[bytes]:
    """Split a whole MULTI payload into its records.

    :raises FormatError: unless it parses exactly
    """
    view = memoryview(payload)
    lengths = multi_lengths(view, 0, len(view))
    out = []
    pos = 4 + 4 * len(lengths)
    for n in lengths:
        out.append(bytes(view[pos : pos + n]))
        pos += n
    return out


_ZERO_STEP: Final = 1 << 16
_ZEROS: Final = bytes(_ZERO_STEP)


def is_zero(buf: bytes | memoryview, start: int = 0) -> bool:
    """True if every byte of ``buf`` from ``start`` on is zero."""
    view = memoryview(buf)[start:]
    for i in range(0, len(view), _ZERO_STEP):
        chunk = view[i : i + _ZERO_STEP]
        if chunk != _ZEROS[: len(chunk)]:
            return False
    return True


# -- META -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Meta:
    """What META holds.

    :ivar low_water: the highest seq given to ``truncate_before`` (0: never)
    :ivar checkpoint: ``(seq, data)`` of the last checkpoint, or None
    :ivar log_id: the log's identity (a UUID string); None in a version-1 META, which had none
    """

    low_water: int = 0
    checkpoint: tuple[int, bytes] | None = None
    log_id: str | None = None


def new_log_id() -> str:
    """A fresh log id: a random UUID, as a string."""
    return str(uuid.uuid4())


def encode_meta(meta: Meta) -> bytes:
    """The META file (version 2) for ``meta``, whose ``log_id`` must be set."""
    if meta.log_id is None:
        raise ValueError("a META is written with a log id")
    flags = _META_HAS_CHECKPOINT if meta.checkpoint is not None else 0
    cp_seq, cp_data = meta.checkpoint if meta.checkpoint is not None else (0, b"")
    rest = uuid.UUID(meta.log_id).bytes + cp_data
    body = _META.pack(META_MAGIC, META_VERSION, flags, meta.low_water, cp_seq, len(rest)) + rest
    return body + _u32_pack(crc32c(body))


def meta_size_limit(max_checkpoint: int) -> int:
    """The largest META file a log whose checkpoints hold at most ``max_checkpoint`` bytes
    can have: a reader reads no more than this."""
    return _META.size + _LOG_ID_SIZE + max_checkpoint + 4


def decode_meta(buf: bytes) -> Meta:
    """Decode a META file of version 2 or 1.

    :raises FormatError: it does not validate (META_DAMAGED) or has a newer version (META_NEWER)
    """
    if len(buf) < _META.size + 4:
        raise FormatError(Damage.META_DAMAGED, "too short")
    magic, version, flags, low_water, cp_seq, rest_len = _META.unpack_from(buf, 0)
    if magic != META_MAGIC:
        raise FormatError(Damage.META_DAMAGED, "bad magic")
    if len(buf) != _META.size + rest_len + 4 or _U32.unpack_from(buf, len(buf) - 4)[0] != crc32c(buf[:-4]):
        raise FormatError(Damage.META_DAMAGED, "checksum mismatch")
    if version not in (1, META_VERSION):
        raise FormatError(Damage.META_NEWER, f"version {version} (this reads 1 and {META_VERSION})")
    rest = bytes(buf[_META.size : _META.size + rest_len])
    log_id = None
    if version >= 2:
        if rest_len < _LOG_ID_SIZE:
            raise FormatError(Damage.META_DAMAGED, "no room for the log id")
        log_id = str(uuid.UUID(bytes=rest[:_LOG_ID_SIZE]))
        rest = rest[_LOG_ID_SIZE:]
    checkpoint = (int(cp_seq), rest) if flags & _META_HAS_CHECKPOINT else None
    return Meta(int(low_water), checkpoint, log_id)
