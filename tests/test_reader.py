"""The one frame reader, in the style of LevelDB's log_test: a segment is built from the codec,
then cut at every length, changed at every byte, and changed with its checksum fixed so that
only the semantic checks can catch it. The decoder is fed in chunks of every size; the
synchronous driver runs over real files and MemoryFileOps, the async one over both too.
"""

from __future__ import annotations

import asyncio
import struct
import tracemalloc
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import asyncwal
from asyncwal._errors import CorruptLogError
from asyncwal._fileops import OsFileOps
from asyncwal._format import (
    FRAME_HEADER_SIZE,
    MULTI,
    SEGMENT_HEADER_SIZE,
    SINGLE,
    Damage,
    crc32c,
    encode_batch,
    encode_segment_header,
    frame_header,
)
from asyncwal._reader import (
    COUNT_AFTER_CANDIDATES,
    End,
    FrameDecoder,
    Record,
    SegmentEnd,
    SegmentFrames,
    count_valid_after,
    nonzero_end,
    read_segment,
)
from asyncwal.testing import MemoryFileOps

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from asyncwal._fileops import FileOps

MAX = 1 << 16  # the reader's length limit in these tests


class Built:
    """A segment made of frames, with where each frame is and which seqs it holds."""

    def __init__(self, first_seq: int, groups: Sequence[Sequence[bytes]], zeros: int = 0) -> None:
        self.first_seq = first_seq
        self.data = bytearray(encode_segment_header(first_seq))
        self.frames: list[tuple[int, int, int]] = []  # (offset, end, count)
        self.records: list[Record] = []
        seq = first_seq
        for group in groups:
            if len(group) == 1:
                payload, ftype = group[0], SINGLE
            else:
                payload, ftype = encode_batch(group), MULTI
            at = len(self.data)
            self.data += frame_header(seq, payload, ftype) + payload
            self.frames.append((at, len(self.data), len(group)))
            self.records += [Record(seq + i, r) for i, r in enumerate(group)]
            seq += len(group)
        self.end = len(self.data)
        self.next_seq = seq
        self.data += bytes(zeros)

    def records_before(self, offset: int) -> list[Record]:
        """The records of the frames that end at or before ``offset``."""
        n = sum(count for _, end, count in self.frames if end <= offset)
        return self.records[:n]

    def frame_at(self, offset: int) -> int:
        """The offset of the frame holding byte ``offset`` (the header for bytes before frames)."""
        for at, end, _ in self.frames:
            if at <= offset < end:
                return at
        return 0 if offset < SEGMENT_HEADER_SIZE else self.end


def decode(data: bytes, first_seq: int, chunk: int, max_length: int = MAX) -> tuple[list[Record], SegmentEnd]:
    """Feed ``data`` in pieces of ``chunk`` bytes (as a driver would, never more than asked
    plus a chunk), then the end of the file; return the records and the end."""
    decoder = FrameDecoder(first_seq, max_length)
    records: list[Record] = []
    while True:
        for frame in decoder.frames():
            records += frame.records()
        if decoder.end is not None:
            return records, decoder.end
        size = max(chunk, decoder.need)
        assert size <= max(chunk, FRAME_HEADER_SIZE + max_length)  # one chunk, or one frame
        piece = bytes(data[decoder.offset : decoder.offset + size])
        decoder.refill(piece, eof=len(piece) < size)


def sample() -> Built:
    return Built(
        5,
        [[b"alpha"], [b"b" * 300], [b"c1", b"c2", b"", b"c4"], [b""], [bytes(range(256)) * 2], [b"z", b"zz"]],
        zeros=700,
    )


CHUNKS = (1, 3, 20, 64, 1 << 20)


@pytest.mark.parametrize("chunk", CHUNKS)
def test_every_record_at_every_chunk_size(chunk: int) -> None:
    seg = sample()
    records, end = decode(bytes(seg.data), seg.first_seq, chunk)
    assert records == seg.records
    assert end == SegmentEnd(End.CLEAN, seg.end, seg.next_seq)


def test_shrink_at_every_length() -> None:
    """A file cut anywhere gives the whole frames before the cut and a torn (or, at a frame
    boundary, clean) end: never a record that was not wholly there."""
    seg = sample()
    for length in range(len(seg.data) + 1):
        records, end = decode(bytes(seg.data[:length]), seg.first_seq, 64)
        if length < SEGMENT_HEADER_SIZE:
            assert records == [] and end.offset == 0 and end.damage is Damage.SHORT_HEADER, length
            continue
        assert records == seg.records_before(length), length
        boundary = length in (SEGMENT_HEADER_SIZE, *(e for _, e, _ in seg.frames)) or length >= seg.end
        if boundary:
            assert end.end is End.CLEAN and end.offset == min(length, seg.end), length
        else:
            assert end.end is End.TORN and end.offset == seg.frame_at(length - 1), length
            assert end.damage in (Damage.TORN_HEADER, Damage.TORN_PAYLOAD)


def test_increment_a_byte_at_every_offset() -> None:
    """One changed byte anywhere ends the segment at the frame that holds it (at the header,
    for a header byte; at the zero fill, for a byte after the records), never later."""
    seg = sample()
    for offset in range(len(seg.data)):
        data = bytearray(seg.data)
        data[offset] = (data[offset] + 1) % 256
        records, end = decode(bytes(data), seg.first_seq, 64)
        at = seg.frame_at(offset)
        assert end.end is not End.CLEAN, offset
        assert end.offset == at, (offset, end)
        assert records == seg.records_before(at), offset
        if offset < SEGMENT_HEADER_SIZE:
            assert end.damage in (Damage.NOT_A_SEGMENT, Damage.BAD_HEADER, Damage.NEWER_FORMAT), offset
        elif offset >= seg.end + FRAME_HEADER_SIZE:  # (within 20 bytes: a frame header, type 0)
            assert end.damage is Damage.NOT_ZERO_AFTER_END


def _patched(frame: bytes, at: int, data: bytes) -> bytes:
    """``frame`` with ``data`` written at ``at`` and its checksum recomputed, so that only
    the semantic checks can catch the change."""
    changed = frame[:at] + data + frame[at + len(data) :]
    return struct.pack("<I", crc32c(changed[4:])) + changed[4:]


def _frame(seq: int, payload: bytes, ftype: int = SINGLE) -> bytes:
    return frame_header(seq, payload, ftype) + payload


@pytest.mark.parametrize(
    ("label", "frame", "damage"),
    [
        ("a seq gap", _frame(3, b"x"), Damage.WRONG_SEQ),
        ("a seq from the past", _frame(1, b"x"), Damage.WRONG_SEQ),
        ("type 0", _patched(_frame(2, b"x"), 16, b"\x00"), Damage.BAD_TYPE),
        ("type 3", _patched(_frame(2, b"x"), 16, b"\x03"), Damage.BAD_TYPE),
        ("a non-zero pad", _patched(_frame(2, b"x"), 18, b"\x01"), Damage.BAD_TYPE),
        ("a multi count of 0", _frame(2, struct.pack("<I", 0), MULTI), Damage.BAD_MULTI),
        (
            "a multi table over its payload",
            _frame(2, struct.pack("<III", 5, 1, 1) + b"ab", MULTI),
            Damage.BAD_MULTI,
        ),
        (
            "a multi that does not add up",
            _frame(2, struct.pack("<III", 2, 1, 1) + b"abc", MULTI),
            Damage.BAD_MULTI,
        ),
        ("a multi cut short", _frame(2, struct.pack("<III", 2, 2, 2) + b"abc", MULTI), Damage.BAD_MULTI),
    ],
)
def test_fix_the_checksum_and_the_semantic_check_still_catches_it(
    label: str, frame: bytes, damage: Damage
) -> None:
    first = _frame(1, b"first")
    data = encode_segment_header(1) + first + frame + bytes(64)
    for chunk in CHUNKS:
        records, end = decode(data, 1, chunk)
        assert records == [Record(1, b"first")], label
        assert (end.end, end.damage, end.offset) == (End.CORRUPT, damage, SEGMENT_HEADER_SIZE + len(first)), (
            label
        )


def test_a_huge_length_is_refused_before_anything_is_read_for_it() -> None:
    bad = bytearray(_frame(1, b"x" * 10))
    bad[4:8] = struct.pack("<I", 0xFFFFFFF0)
    data = encode_segment_header(1) + bytes(bad)
    decoder = FrameDecoder(1, MAX)
    decoder.refill(data, eof=True)
    assert decoder.need <= FRAME_HEADER_SIZE + MAX  # never asks for what the length claims
    assert list(decoder.frames()) == []
    assert decoder.end is not None and decoder.end.damage is Damage.TOO_LONG
    # A length just over the limit, checksum fixed: still refused (the limit is the rule).
    payload = b"y" * (MAX + 1)
    records, end = decode(encode_segment_header(1) + _frame(1, payload), 1, 1 << 20)
    assert records == [] and end.damage is Damage.TOO_LONG
    records, end = decode(encode_segment_header(1) + _frame(1, payload), 1, 1 << 20, max_length=MAX + 1)
    assert records == [Record(1, payload)] and end.end is End.CLEAN


@pytest.mark.parametrize(
    ("header", "damage"),
    [
        (encode_segment_header(2), Damage.MISNAMED),
        (b"ASYNCWAX" + encode_segment_header(1)[8:], Damage.NOT_A_SEGMENT),
        (b"ASYNCWAL", Damage.SHORT_HEADER),  # and the frame after it: 29 bytes in all
        (b"\x00" * 32, Damage.NOT_A_SEGMENT),
    ],
)
def test_the_header_is_checked_first(header: bytes, damage: Damage) -> None:
    records, end = decode(header + _frame(1, b"x"), 1, 7)
    assert records == [] and (end.end, end.offset, end.damage) == (End.CORRUPT, 0, damage)


def test_zero_fill_then_anything_else_is_damage() -> None:
    data = encode_segment_header(1) + _frame(1, b"a")
    for tail, clean in (
        (bytes(5), True),
        (bytes(40), True),
        (bytes(40) + b"\x01", False),
        (bytes(19) + b"\x02", False),
    ):
        for chunk in CHUNKS:
            records, end = decode(data + tail, 1, chunk)
            assert records == [Record(1, b"a")]
            assert end.offset == len(data)
            assert (end.end is End.CLEAN) == clean, (tail, chunk)
            if not clean:
                assert end.damage in (Damage.NOT_ZERO_AFTER_END, Damage.TORN_HEADER, Damage.BAD_TYPE)


def test_resume_at_every_frame_boundary() -> None:
    seg = sample()
    for at, _end, _count in seg.frames:
        seq = seg.records_before(at)[-1].seq + 1 if seg.records_before(at) else seg.first_seq
        decoder = FrameDecoder(seg.first_seq, MAX, offset=at, seq=seq)
        decoder.refill(bytes(seg.data[at:]), eof=True)
        got = [r for f in decoder.frames() for r in f.records()]
        assert got == [r for r in seg.records if r.seq >= seq]
        assert decoder.end == SegmentEnd(End.CLEAN, seg.end, seg.next_seq)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=6), max_size=25),
    st.integers(min_value=1, max_value=2**40),
    st.integers(min_value=1, max_value=300),
    st.integers(min_value=0, max_value=100),
)
def test_round_trip_whatever_the_records_and_the_chunks(
    groups: list[list[bytes]], first_seq: int, chunk: int, zeros: int
) -> None:
    seg = Built(first_seq, groups, zeros)
    records, end = decode(bytes(seg.data), first_seq, chunk)
    assert records == seg.records
    assert end == SegmentEnd(End.CLEAN, seg.end, seg.next_seq)


def test_a_frame_lazily_cuts_its_records() -> None:
    seg = Built(1, [[b"r%d" % i for i in range(1000)]])
    decoder = FrameDecoder(1, MAX)
    decoder.refill(bytes(seg.data), eof=True)
    (frame,) = decoder.frames()
    assert frame.count == 1000 and frame.type == MULTI and frame.size == seg.end - SEGMENT_HEADER_SIZE
    it = frame.records(start=998)
    assert next(it) == Record(998, b"r997")  # seqs start at 1
    assert list(it) == [Record(999, b"r998"), Record(1000, b"r999")]


# -- the synchronous driver, on both file systems ----------------------------------------------


def _ops_with(kind: str, tmp_path: Path, data: bytes) -> tuple[FileOps, str]:
    if kind == "memory":
        memory = MemoryFileOps()
        memory.makedirs("/m")
        memory.write_bytes("/m/seg", data)
        return memory, "/m/seg"
    path = tmp_path / "seg"
    path.write_bytes(data)
    return OsFileOps(), str(path)


@pytest.mark.parametrize("kind", ["os", "memory"])
def test_segment_frames_reads_in_chunks(kind: str, tmp_path: Path) -> None:
    seg = Built(1, [[b"x" * 1000] for _ in range(200)], zeros=5000)
    ops, path = _ops_with(kind, tmp_path, bytes(seg.data))
    reads: list[int] = []
    fd = ops.open_readonly(path)
    try:
        frames = SegmentFrames(ops, fd, 1, MAX, chunk_size=4096, on_bytes=reads.append)
        got = [r for f in frames for r in f.records()]
        assert frames.end == SegmentEnd(End.CLEAN, seg.end, seg.next_seq)
        again = SegmentFrames(ops, fd, 1, MAX, chunk_size=4096)
        assert again.skim() == frames.end and again.records == 200
    finally:
        ops.close(fd)
    assert got == seg.records
    # Each read is a chunk (or one frame); what is read twice is at most a frame per read.
    assert max(reads) <= 4096
    assert len(seg.data) <= sum(reads) <= len(seg.data) + len(reads) * (FRAME_HEADER_SIZE + 1000)


@pytest.mark.parametrize("kind", ["os", "memory"])
def test_count_valid_after_damage_and_its_budget(kind: str, tmp_path: Path) -> None:
    seg = Built(1, [[b"rec%03d" % i] for i in range(50)] + [[b"a", b"b", b"c"]], zeros=300)
    data = bytearray(seg.data)
    hole = seg.frames[10][0]
    data[hole : seg.frames[11][0]] = bytes(seg.frames[11][0] - hole)  # one record lost
    ops, path = _ops_with(kind, tmp_path, bytes(data))
    fd = ops.open_readonly(path)
    try:
        _records, end = decode(bytes(data), 1, 1 << 20)
        assert end.offset == hole and end.damage is Damage.NOT_ZERO_AFTER_END
        assert count_valid_after(ops, fd, hole, end.next_seq, MAX, len(data)) == (39 + 3, False)
        assert nonzero_end(ops, fd, hole, len(data)) == seg.end
        assert nonzero_end(ops, fd, seg.end, len(data)) == seg.end
    finally:
        ops.close(fd)
    # A file crafted to be all candidates: the count stops at its budget, reports it, and
    # costs one pass at most.
    frame = _frame(100, b"")
    crafted = encode_segment_header(1) + frame * (COUNT_AFTER_CANDIDATES + 500)
    ops, path = _ops_with(kind, tmp_path, crafted)
    fd = ops.open_readonly(path)
    try:
        count, capped = count_valid_after(ops, fd, SEGMENT_HEADER_SIZE - 1, 1, MAX, len(crafted))
    finally:
        ops.close(fd)
    assert capped and 0 < count <= COUNT_AFTER_CANDIDATES


# -- the async driver (replay and follow) -------------------------------------------------------


class _BytesReader:
    """An AsyncReader over bytes that can grow, counting what it serves."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.served: list[int] = []

    async def seek(self, offset: int) -> int:
        self.pos = offset
        return offset

    async def read(self, size: int) -> bytes:
        out = self.data[self.pos : self.pos + size]
        self.pos += len(out)
        self.served.append(len(out))
        return out

    async def close(self) -> None:
        pass


async def _replay(
    reader: _BytesReader, first_seq: int, start: int, limit: int, max_length: int = MAX
) -> list[list[Record]]:
    return [lst async for lst in read_segment(reader, "seg", first_seq, start, lambda: limit, max_length)]


async def test_replay_from_any_seq() -> None:
    seg = sample()
    for start in range(1, seg.next_seq + 1):
        lists = await _replay(_BytesReader(bytes(seg.data)), seg.first_seq, start, seg.next_seq - 1)
        assert [r for lst in lists for r in lst] == [r for r in seg.records if r.seq >= start]


async def test_replay_of_one_huge_batch_hands_records_over_in_bounded_lists() -> None:
    n = 20_000
    seg = Built(1, [[b""] * n])
    lists = await _replay(_BytesReader(bytes(seg.data)), 1, 1, n, max_length=1 << 20)
    assert sum(map(len, lists)) == n
    assert max(map(len, lists)) <= 4096
    assert [r.seq for r in lists[-1]][-1] == n


async def test_replay_refuses_damage_within_the_limit_and_ignores_what_is_beyond() -> None:
    seg = sample()
    data = bytearray(seg.data)
    third = seg.frames[2][0]
    data[third + FRAME_HEADER_SIZE + 1] ^= 1
    first = seg.first_seq
    with pytest.raises(CorruptLogError, match="does not validate") as exc_info:
        await _replay(_BytesReader(bytes(data)), first, first, seg.next_seq - 1)
    assert exc_info.value.offset == third
    # Below the damage the limit stops the reader first: nothing is wrong there.
    below = seg.records_before(third)
    lists = await _replay(_BytesReader(bytes(data)), first, first, below[-1].seq)
    assert [r for lst in lists for r in lst] == below
    # Zeros where a record within the limit should be: refused too, not read as the end.
    cut = bytes(seg.data[:third]) + bytes(len(seg.data) - third)
    with pytest.raises(CorruptLogError, match="missing") as exc_info:
        await _replay(_BytesReader(cut), first, first, seg.next_seq - 1)
    assert exc_info.value.offset == third
    with pytest.raises(CorruptLogError, match="segment header"):
        await _replay(_BytesReader(b"ASYNC"), first, first, 0)


async def test_follow_reads_a_growing_segment_again_where_it_was_stale() -> None:
    """Bytes read before a record was written hold zeros: a tailing reader reads again."""
    full = sample()
    first_frames_end = full.frames[1][1]
    reader = _BytesReader(bytes(full.data[:first_frames_end]) + bytes(4096))
    written = [full.records_before(first_frames_end)[-1].seq]
    got: list[Record] = []

    async def wait(seq: int) -> bool:
        if written[0] >= full.next_seq - 1:
            return False
        reader.data = bytes(full.data)  # the writer caught up
        written[0] = full.next_seq - 1
        await asyncio.sleep(0)
        return True

    async for lst in read_segment(reader, "seg", 5, 5, lambda: written[0], MAX, wait):
        got += lst
    assert got == full.records


# -- memory with one huge legal batch ------------------------------------------------------------


def test_replay_of_one_huge_batch_keeps_memory_to_the_frame(tmp_path: Path) -> None:
    """``append_batch([b""] * 1_500_000)`` is one legal 6 MB frame: replaying its first record
    holds that frame and its length table, not a million records (it grew by ~136 MiB)."""
    path = tmp_path / "wal"
    n = 1_500_000

    async def write() -> None:
        async with asyncwal.open(path) as log:
            await log.append_batch([b""] * n)

    async def first_and_count() -> tuple[Record, int]:
        async with asyncwal.open(path) as log:
            replay = log.replay()
            first = await anext(replay)
            peak.append(tracemalloc.get_traced_memory()[1] - base[0])
            await replay.aclose()
            return first, log.last_seq

    asyncio.run(write())
    peak: list[int] = []
    base = [0]
    tracemalloc.start()
    try:
        base[0] = tracemalloc.get_traced_memory()[0]
        first, count = asyncio.run(first_and_count())
    finally:
        tracemalloc.stop()
    assert first == Record(1, b"") and count == n
    assert peak[0] < 40 << 20, f"{peak[0] / 2**20:.1f} MiB before the first record"
