"""The one frame reader: recovery, replay, follow and the command line all read segments here.

The shape of LevelDB's ``log_reader``: one direction, over the pure codec in _format.py.

* :class:`FrameDecoder` is the core. It does no I/O: the caller reads the bytes of one
  segment in file order (any chunking) for it and pulls the valid frames; it says where to
  read and how much, and once the segment's records end it holds a typed :class:`SegmentEnd`
  (clean, torn, or corrupt with a :class:`~asyncwal._format.Damage` reason). It is
  resumable: a decoder can start at any frame boundary ``(offset, seq)``.
* :class:`SegmentFrames` drives it synchronously over ``FileOps.pread`` (recovery, the
  command line); :func:`read_segment` drives it asynchronously over an :class:`AsyncReader`
  (``replay()`` and ``follow()``).

Invariants:

* Memory is one read chunk plus one frame: the decoder holds one read (of a chunk, or of
  a frame when that is longer), a frame's length is trusted only up to ``max_length``
  (checked before anything is read for it), and a MULTI frame's records are cut from the
  buffer one at a time, never all at once (its length table is an array of 4 bytes a record).
* The validity rule is _format.py's, applied here only: a frame is yielded only if it is
  wholly valid, and the first position that does not hold one ends the segment.

Why it is longer than the other modules (~670 lines): it is the only place that reads
frames, for every reader there is (recovery's scan and its budgeted count after damage, the
command line, replay and follow), and the review's point was to have exactly one; the
sans-I/O decoder and its two drivers share its state and are read together.
"""

from __future__ import annotations

import enum
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NamedTuple

from ._errors import CorruptLogError
from ._filenames import MAX_SEQ
from ._format import (
    FRAME,
    FRAME_HEADER_SIZE,
    FRAME_WORDS,
    MULTI,
    SEGMENT_HEADER_SIZE,
    SINGLE,
    Damage,
    FormatError,
    crc32c,
    crc32c_of,
    decode_segment_header,
    is_zero,
    multi_lengths,
    segment_header_version,
)

if TYPE_CHECKING:
    from array import array
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

    from ._fileops import AsyncReader, FileOps

__all__ = (
    "READ_CHUNK",
    "End",
    "Frame",
    "FrameDecoder",
    "Record",
    "SegmentEnd",
    "SegmentFrames",
    "count_valid_after",
    "nonzero_end",
    "read_segment",
)

#: Bytes read at a time (a frame longer than that is read whole, once).
READ_CHUNK: Final = 1 << 20
#: A tailing reader re-reads this much after a wait (it usually needs little).
STALE_READ: Final = 1 << 16
#: Replay hands records over in lists of at most this many (bounds memory for a huge batch).
_MAX_LIST: Final = 4096

_unpack_frame = FRAME.unpack_from
_unpack_words = FRAME_WORDS.unpack_from
_CRC_PIECE: Final = 1 << 17  # longer payloads go through crc32c_of, a piece at a time
#: ``Record(seq, data)`` without the Python-level ``__new__`` a NamedTuple has (on replay's
#: per-record path): ``new_record(Record, (seq, data))``.
new_record = tuple.__new__


class Record(NamedTuple):
    """One record of the log."""

    #: its sequence number
    seq: int
    #: its payload
    data: bytes


class End(enum.Enum):
    """How the records of a segment end."""

    #: the last valid frame is followed by zeros only, or by nothing
    CLEAN = "clean"
    #: the file ends inside a frame: a write cut short
    TORN = "torn"
    #: bytes that are neither a valid frame, zeros, nor a frame cut short by the end of the file
    CORRUPT = "corrupt"


@dataclass(frozen=True, slots=True)
class SegmentEnd:
    """Where and how the records of one segment end.

    :ivar end: clean, torn or corrupt
    :ivar offset: just past the last valid frame (0 when the header is not valid)
    :ivar next_seq: the seq after the last valid record
    :ivar damage: what is wrong at ``offset`` (None for a clean end)
    :ivar detail: more about it, for people (may be empty)
    """

    end: End
    offset: int
    next_seq: int
    damage: Damage | None = None
    detail: str = ""

    @property
    def reason(self) -> str | None:
        """The damage as a sentence, or None for a clean end."""
        if self.damage is None:
            return None
        return f"{self.damage.value}: {self.detail}" if self.detail else self.damage.value


@dataclass(frozen=True, slots=True)
class Frame:
    """One valid frame, as the decoder found it in its buffer.

    ``buf[start:end]`` is the payload; ``lengths`` is the record length table of a MULTI
    frame (None for SINGLE). The frame holds the records ``seq .. seq+count-1``.
    """

    offset: int  #: file offset of the frame header
    seq: int
    count: int
    type: int  #: SINGLE or MULTI
    buf: bytes
    start: int
    end: int
    lengths: array[int] | None

    @property
    def payload(self) -> bytes:
        return self.buf[self.start : self.end]

    @property
    def size(self) -> int:
        """Bytes of the frame on disk, header included."""
        return self.end - self.start + FRAME_HEADER_SIZE

    def records(self, start: int = 0) -> Iterator[Record]:
        """The frame's records whose seq is ``>= start``, one at a time."""
        buf = self.buf
        if self.lengths is None:
            if self.seq >= start:
                yield Record(self.seq, buf[self.start : self.end])
            return
        seq = self.seq
        pos = self.start + 4 + 4 * self.count
        for n in self.lengths:
            if seq >= start:
                yield Record(seq, buf[pos : pos + n])
            pos += n
            seq += 1


class FrameDecoder:
    """The frames of one segment, from bytes the caller reads for it. No I/O.

    Use: read the file from :attr:`offset`, at least :attr:`need` bytes (more is better: a
    chunk), hand them over with :meth:`refill` (saying whether the file ended before what
    was asked for), and pull with :meth:`frames` (or :meth:`scan`) until it stops; repeat
    while :attr:`end` is None (and, for a reader with a limit, the next seq is within it).
    Each refill replaces the bytes held: the unparsed rest of the last read is read again
    rather than copied, so the decoder never holds more than one read.

    :param first_seq: the seq in the segment's name (its header must say the same)
    :param max_length: the longest payload length trusted (longer is damage)
    :param offset: start at this frame boundary instead of at the header (then ``seq`` is
        the seq of the frame there)
    """

    __slots__ = (
        "_base",
        "_buf",
        "_eof",
        "_header",
        "_pos",
        "_zero_at",
        "end",
        "max_length",
        "next_seq",
        "version",
    )

    def __init__(self, first_seq: int, max_length: int, *, offset: int = 0, seq: int | None = None) -> None:
        self.max_length = max_length
        self._header: int | None = first_seq if offset == 0 else None
        self.next_seq = first_seq if seq is None else seq
        self._buf = b""
        self._base = offset  # file offset of _buf[0]
        self._pos = 0  # next unparsed byte in _buf
        self._eof = False  # _buf ends where the file ends
        # Offset of an all-zero frame header: from there on every byte must be zero.
        self._zero_at: int | None = None
        #: How the segment's records end; None until that is known.
        self.end: SegmentEnd | None = None
        #: The version field of the segment header, once read (valid or not).
        self.version: int | None = None

    @property
    def offset(self) -> int:
        """File offset of the next byte to parse (after a clean or damaged end: where the
        segment's records end)."""
        return self._base + self._pos

    @property
    def need(self) -> int:
        """How many bytes from :attr:`offset` a refill must hold (unless the file ends
        first) for :meth:`frames` to make progress: trusted only up to ``max_length``."""
        if self._zero_at is not None:
            return 1  # any amount: the rest of the file is checked for zeros
        buf, pos = self._buf, self._pos
        if self._header is not None:
            return SEGMENT_HEADER_SIZE
        if len(buf) - pos < FRAME_HEADER_SIZE:
            return FRAME_HEADER_SIZE
        length: int = min(_unpack_frame(buf, pos)[1], self.max_length)
        return FRAME_HEADER_SIZE + length

    def refill(self, data: bytes, *, eof: bool) -> None:
        """Replace the bytes held with ``data``, the file's bytes from :attr:`offset` on;
        ``eof``: the file ends right after them (fewer bytes came than were asked for)."""
        self._base += self._pos
        self._pos = 0
        if self._zero_at is not None:
            self._base += len(data)
            if not is_zero(data):
                self._finish(End.CORRUPT, self._zero_at, Damage.NOT_ZERO_AFTER_END)
            elif eof:
                self._finish(End.CLEAN, self._zero_at)
            return
        self._buf = data
        self._eof = eof

    @property
    def needs_header(self) -> bool:
        """True until the segment header has been read and found valid."""
        return self._header is not None

    @property
    def zeros_at(self) -> int | None:
        """Offset of an all-zero frame header once one was found (the rest of the file is
        then being checked for zeros), else None."""
        return self._zero_at

    @property
    def buffer(self) -> bytes:
        """The bytes the tuples of :meth:`scan` point into (valid until the next refill)."""
        return self._buf

    def frames(self, stop: int = MAX_SEQ) -> Iterator[Frame]:
        """Yield the valid frames the bytes held contain, while their seq is at most
        ``stop``; stop early when more bytes are needed, or set :attr:`end` and stop."""
        for frame_at, seq, count, ftype, start, end, lengths in self.scan(stop):
            yield Frame(self._base + frame_at, seq, count, ftype, self._buf, start, end, lengths)

    def scan(self, stop: int = MAX_SEQ) -> Iterator[tuple[int, int, int, int, int, int, array[int] | None]]:
        """:meth:`frames` as plain tuples ``(position, seq, count, type, start, end, lengths)``
        of positions in :attr:`buffer`, for the readers that need speed (replay, recovery)."""
        if self.end is not None or self._zero_at is not None:
            return
        if self._header is not None and not self._check_header():
            return
        buf = self._buf
        size = len(buf)
        pos = self._pos
        seq = self.next_seq
        max_length = self.max_length
        crc32 = crc32c
        unpack = _unpack_words
        piece = _CRC_PIECE
        while seq <= stop:
            if pos + FRAME_HEADER_SIZE > size:
                if self._eof:
                    if is_zero(buf, pos):
                        self._finish(End.CLEAN, self._base + pos)
                    else:
                        self._finish(End.TORN, self._base + pos, Damage.TORN_HEADER)
                return
            crc, length, fseq, tag = unpack(buf, pos)
            # ``tag`` is the type byte and the three pad bytes: valid only as 1 or 2.
            if tag != SINGLE and tag != MULTI:
                if tag == 0 and crc == 0 and length == 0 and fseq == 0:
                    self._at_zero_header(pos)
                else:
                    detail = f"type {tag & 0xFF}" if tag < 256 else "non-zero pad"
                    self._finish(End.CORRUPT, self._base + pos, Damage.BAD_TYPE, detail)
                return
            if length > max_length:
                self._finish(End.CORRUPT, self._base + pos, Damage.TOO_LONG, f"{length} > {max_length}")
                return
            start = pos + FRAME_HEADER_SIZE
            end = start + length
            if end > size:
                if self._eof:
                    self._finish(End.TORN, self._base + pos, Damage.TORN_PAYLOAD)
                return
            if (crc32(buf[pos + 4 : end]) if length < piece else crc32c_of(buf, pos + 4, end)) != crc:
                self._finish(End.CORRUPT, self._base + pos, Damage.CHECKSUM)
                return
            if fseq != seq:
                detail = f"seq {fseq} where {seq} was expected"
                self._finish(End.CORRUPT, self._base + pos, Damage.WRONG_SEQ, detail)
                return
            if tag == SINGLE:
                self._pos = end
                self.next_seq = seq + 1
                yield (pos, seq, 1, SINGLE, start, end, None)
                seq += 1
            else:
                try:
                    lengths = multi_lengths(buf, start, end)
                except FormatError as exc:
                    self._finish(End.CORRUPT, self._base + pos, exc.damage, exc.detail)
                    return
                count = len(lengths)
                self._pos = end
                self.next_seq = seq + count
                yield (pos, seq, count, MULTI, start, end, lengths)
                seq += count
            pos = end

    def _check_header(self) -> bool:
        """Check the segment header once its bytes are in; False until then or if it is bad."""
        expected = self._header
        assert expected is not None
        if len(self._buf) < SEGMENT_HEADER_SIZE and not self._eof:
            return False
        self.version = segment_header_version(self._buf)
        try:
            first = decode_segment_header(self._buf[:SEGMENT_HEADER_SIZE])
        except FormatError as exc:
            self._finish(End.CORRUPT, 0, exc.damage, exc.detail)
            return False
        if first != expected:
            self._finish(End.CORRUPT, 0, Damage.MISNAMED, f"header says {first}, name says {expected}")
            return False
        self._header = None
        self._pos = SEGMENT_HEADER_SIZE
        return True

    def _at_zero_header(self, pos: int) -> None:
        """An all-zero frame header at ``pos``: the segment ends there if the rest is zero."""
        buf = self._buf
        if not is_zero(buf, pos):
            self._finish(End.CORRUPT, self._base + pos, Damage.NOT_ZERO_AFTER_END)
            return
        self._zero_at = self._base + pos
        self._base += len(buf)
        self._buf = b""
        self._pos = 0
        if self._eof:
            self._finish(End.CLEAN, self._zero_at)

    def _finish(self, end: End, offset: int, damage: Damage | None = None, detail: str = "") -> None:
        self.end = SegmentEnd(end, offset, self.next_seq, damage, detail)
        self._buf = b""  # nothing more is parsed: let the read go
        self._base = offset
        self._pos = 0


class SegmentFrames:
    """The valid frames of one open segment file, read with ``FileOps.pread`` in chunks.

    Iterate once; afterwards :attr:`end` says how the segment's records end. Memory: one
    chunk plus one frame.

    :param ops: the file operations
    :param fd: the segment, open for reading
    :param first_seq: the seq in its name
    :param max_length: the longest payload length trusted
    :param resume: ``(offset, seq)`` of a frame boundary to start at instead of the header
    :param chunk_size: bytes per read
    :param on_bytes: called with the size of every read, for a progress display
    :param retries: when the records end in damage (not at the header), read on from there
        this many more times, ``retry_delay`` seconds apart: in a log open for writing, a
        frame being written looks torn for an instant (the command line's reading of a live
        log; recovery, which holds the lock, never retries)
    """

    def __init__(
        self,
        ops: FileOps,
        fd: int,
        first_seq: int,
        max_length: int,
        *,
        resume: tuple[int, int] | None = None,
        chunk_size: int = READ_CHUNK,
        on_bytes: Callable[[int], None] | None = None,
        retries: int = 0,
        retry_delay: float = 0.05,
    ) -> None:
        offset, seq = resume if resume is not None else (0, None)
        self.decoder = FrameDecoder(first_seq, max_length, offset=offset, seq=seq)
        self._first_seq = first_seq
        self._ops = ops
        self._fd = fd
        self._chunk = chunk_size
        self._on_bytes = on_bytes
        self._retries = retries
        self._retry_delay = retry_delay
        self.frames = 0  #: valid frames so far
        self.records = 0  #: records in them

    @property
    def end(self) -> SegmentEnd:
        """How the segment ends (only after the iteration is over)."""
        end = self.decoder.end
        if end is None:
            raise RuntimeError("the segment has not been read to its end")
        return end

    def __iter__(self) -> Iterator[Frame]:
        while True:
            decoder = self.decoder
            for frame in decoder.frames():
                self.frames += 1
                self.records += frame.count
                yield frame
            if decoder.end is None:
                self._read()
            elif not self._retry(decoder.end):
                return

    def skim(self) -> SegmentEnd:
        """Read to the end without making Frame objects (as fast as recovery needs); return it."""
        while True:
            decoder = self.decoder
            for frame in decoder.scan():
                self.frames += 1
                self.records += frame[2]
            if decoder.end is None:
                self._read()
            elif not self._retry(decoder.end):
                return decoder.end

    def _retry(self, end: SegmentEnd) -> bool:
        """After a damaged end, wait and start reading again from it, if retries are left."""
        if end.end is End.CLEAN or self._retries <= 0 or end.offset < SEGMENT_HEADER_SIZE:
            return False
        self._retries -= 1
        time.sleep(self._retry_delay)
        max_length = self.decoder.max_length
        self.decoder = FrameDecoder(self._first_seq, max_length, offset=end.offset, seq=end.next_seq)
        return True

    def check_header(self) -> SegmentEnd | None:
        """Read and check only the segment header: the damaged end if it is bad, else None."""
        decoder = self.decoder
        while decoder.end is None and decoder.needs_header:
            for _ in decoder.scan(stop=0):
                pass
            if decoder.end is None and decoder.needs_header:
                self._read()
        return decoder.end

    def _read(self) -> None:
        decoder = self.decoder
        size = max(self._chunk, decoder.need)
        data = self._ops.pread(self._fd, size, decoder.offset)
        if data and self._on_bytes is not None:
            self._on_bytes(len(data))
        decoder.refill(data, eof=len(data) < size)


#: The budget of :func:`count_valid_after`, whatever a damaged file holds: at most this many
#: candidate frame headers are looked at, and no more payload bytes are checksummed than
#: the rest of the file holds plus one read chunk (one pass over it).
COUNT_AFTER_CANDIDATES: Final = 10_000
_MARKER = re.compile(rb"[\x01\x02]\x00\x00\x00")  # a frame's type and pad, at its byte 16
_TYPE_AT: Final = 16


def count_valid_after(
    ops: FileOps, fd: int, offset: int, min_seq: int, max_length: int, size: int
) -> tuple[int, bool]:
    """Count the records of frames that validate somewhere after ``offset`` (where a
    segment's records end in damage) with a seq ``>= min_seq``: records a cut there drops.

    Candidates are found by their type and pad bytes (a regular expression, at C speed), in
    chunks, and each is checked by the frame decoder with its own seq, so zero fill and
    random bytes cost little. The work is bounded whatever the file holds (see
    :data:`COUNT_AFTER_CANDIDATES`); memory is one chunk plus one frame.

    :return: ``(records, capped)``: ``capped`` is True when the budget ran out first, so
        that ``records`` is a lower bound
    """
    count = 0
    candidates = 0
    crc_budget = max(0, size - offset) + READ_CHUNK
    pos = offset + 1  # the first position a frame after the damage can start at
    buf = b""
    base = pos  # file offset of buf[0]
    while pos + FRAME_HEADER_SIZE <= size:
        at = pos - base
        if at < 0 or at + FRAME_HEADER_SIZE > len(buf):
            buf = ops.pread(fd, READ_CHUNK, pos)
            base, at = pos, 0
            if len(buf) < FRAME_HEADER_SIZE:
                break
        found = _MARKER.search(buf, at + _TYPE_AT)
        if found is None:
            pos = base + len(buf) - FRAME_HEADER_SIZE + 1  # a header may straddle the chunk end
            continue
        start = found.start() - _TYPE_AT
        frame_at = base + start
        candidates += 1
        if candidates > COUNT_AFTER_CANDIDATES:
            return count, True
        _crc, length, seq, _type = _unpack_frame(buf, start)
        frame_end = frame_at + FRAME_HEADER_SIZE + length
        if seq < min_seq or length > max_length or frame_end > size:
            pos = frame_at + 1
            continue
        if length > crc_budget:
            return count, True
        crc_budget -= length
        decoder = FrameDecoder(seq, max_length, offset=frame_at, seq=seq)
        whole = start + FRAME_HEADER_SIZE + length <= len(buf)
        frame = buf[start:] if whole else ops.pread(fd, FRAME_HEADER_SIZE + length, frame_at)
        decoder.refill(frame, eof=False)
        valid = next(decoder.scan(stop=seq), None)
        if valid is None:
            pos = frame_at + 1
            continue
        count += valid[2]
        pos = frame_end
    return count, False


def nonzero_end(ops: FileOps, fd: int, offset: int, size: int) -> int:
    """Offset just past the last non-zero byte at or after ``offset`` (``offset`` if none):
    read backwards from the end in chunks, since the zero fill is at the end."""
    end = size
    while end > offset:
        start = max(offset, end - READ_CHUNK)
        chunk = ops.pread(fd, end - start, start)
        stripped = len(chunk.rstrip(b"\0"))
        if stripped:
            return start + stripped
        end = start
    return offset


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

    Each list holds records parsed from the buffer in one go (no await in between, at most
    a few thousand), so the caller's per-record work is one plain ``for`` step. Stops before
    the first record whose seq is above ``limit()`` (called again for every list, so a
    growing log is read as far as it has reached the OS). With ``wait``, it instead awaits
    ``wait(seq)`` there and goes on if that returns True (live tailing).

    :raises CorruptLogError: a frame inside the readable range does not validate
    """
    # Invariant: the bytes held by ``decoder`` are those of the file when they were read, so
    # they can be trusted only for records with seq <= ``known`` (limit() just before that
    # read: those were wholly written by then). A later record may sit where the buffer
    # still holds the zero fill, so for it the file is read again. The end of the file is
    # never final here (the log may grow): the decoder is never told that it was reached.
    known = limit()
    decoder = FrameDecoder(first_seq, max_length)
    data = await _read_at(reader, 0, READ_CHUNK)
    if len(data) < SEGMENT_HEADER_SIZE:  # a segment gets its name only once its header is durable
        raise CorruptLogError(Damage.SHORT_HEADER.value, segment=path, offset=0)
    decoder.refill(data, eof=False)
    for _ in decoder.scan(stop=0):  # checks the header (a bad one is damage at any limit)
        pass
    while True:
        end = decoder.end
        if end is not None and end.offset == 0:
            raise CorruptLogError(end.reason or "bad segment header", segment=path, offset=0)
        out: list[Record] = []
        append = out.append
        stop = min(limit(), known)
        buf = decoder.buffer
        for _, seq, count, ftype, fstart, fend, lengths in decoder.scan(stop):
            if seq + count <= start:
                continue
            if ftype == SINGLE:
                append(new_record(Record, (seq, buf[fstart:fend])))
                continue
            assert lengths is not None
            # The records of a MULTI frame, from ``start`` on, in blocks that fill the list
            # up to _MAX_LIST (the list is handed over whenever it is full).
            k = max(0, start - seq)
            pos = fstart + 4 + 4 * count + (sum(lengths[:k]) if k else 0)
            seq += k
            while k < count:
                room = _MAX_LIST - len(out)
                block = lengths if k == 0 and count <= room else lengths[k : k + room]
                for n in block:
                    append(new_record(Record, (seq, buf[pos : pos + n])))
                    pos += n
                    seq += 1
                k += len(block)
                if len(out) >= _MAX_LIST:
                    yield out
                    out = []
                    append = out.append
        if out:
            yield out
        seq = decoder.next_seq
        end = decoder.end
        if end is not None:  # only ever at a seq <= stop: no end of file is fed here
            raise CorruptLogError(
                f"record {seq} does not validate ({end.reason})", segment=path, offset=end.offset
            )
        zeros_at = decoder.zeros_at
        if zeros_at is not None and seq <= stop:
            raise CorruptLogError(
                f"record {seq} is missing (zeros where it should be)", segment=path, offset=zeros_at
            )
        if seq > limit():
            if wait is None or not await wait(seq):
                return
            continue
        # seq <= limit(): its frame is wholly in the file. Read it (again, if the buffer is
        # stale or ends too early); a tailing reader that waited usually needs little, so less.
        stale = seq > known
        known = limit()
        need = decoder.need
        size = STALE_READ if stale and need <= STALE_READ else max(need, READ_CHUNK)
        data = await _read_at(reader, decoder.offset, size)
        if len(data) < need:
            raise CorruptLogError(
                f"record {seq} is missing or cut short", segment=path, offset=decoder.offset
            )
        decoder.refill(data, eof=False)


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
