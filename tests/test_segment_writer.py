"""SegmentWriter driven directly, with no event loop: framing, rotation, zero fill, META and
fail-stop, on real files and on MemoryFileOps. What it writes is read back with the frame
reader, so the two directions are checked against each other."""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

import pytest

from asyncwal._filenames import META_NAME, segment_name
from asyncwal._fileops import OsFileOps
from asyncwal._format import MULTI, SEGMENT_HEADER_SIZE, SINGLE, Meta, decode_meta, encode_batch, is_zero
from asyncwal._reader import End, Record, SegmentFrames
from asyncwal._segment import MAX_GROUP_FRAME, PREALLOCATE_STEP, Batch, SegmentWriter
from asyncwal.testing import FaultyFileOps, MemoryFileOps

if TYPE_CHECKING:
    from pathlib import Path

    from asyncwal._fileops import FileOps
    from asyncwal._reader import Frame

MAX_FRAME = 1 << 20
LOG_ID = "8c8c56c6-6f2b-4c8e-9d7a-1e0f4c3b2a19"


@pytest.fixture(params=["os", "memory"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[FileOps, str]:
    if request.param == "memory":
        ops = MemoryFileOps()
        ops.makedirs("/m/wal")
        return ops, "/m/wal"
    directory = str(tmp_path / "wal")
    os.makedirs(directory)
    return OsFileOps(), directory


def _writer(
    ops: FileOps,
    directory: str,
    *,
    segment_size: int = 1 << 20,
    preallocate: bool = False,
    max_frame: int = MAX_FRAME,
) -> SegmentWriter:
    return SegmentWriter(ops, directory, segment_size, preallocate, max_frame, log_id=LOG_ID)


def _read(ops: FileOps, directory: str, first_seq: int) -> tuple[list[Frame], End, int]:
    fd = ops.open_readonly(os.path.join(directory, segment_name(first_seq)))
    try:
        reader = SegmentFrames(ops, fd, first_seq, MAX_FRAME)
        frames = list(reader)
        return frames, reader.end.end, reader.end.offset
    finally:
        ops.close(fd)


def _segments(ops: FileOps, directory: str) -> list[str]:
    return sorted(n for n in ops.listdir(directory) if n.endswith(".wal"))


def test_a_group_shares_one_frame_and_reads_back(place: tuple[FileOps, str]) -> None:
    ops, directory = place
    w = _writer(ops, directory)
    w.create(1)
    created, durable = w.write_group([b"a", b"bb", b"ccc"], 1, 3, sync=True, batches=False)
    assert (created, durable) == ([], 3)
    created, durable = w.write_group([b"solo"], 4, 4, sync=False, batches=False)
    assert (created, durable) == ([], 0)  # not synced: nothing more is known durable
    w.close(sync=True)
    frames, end, offset = _read(ops, directory, 1)
    assert [(f.seq, f.count, f.type) for f in frames] == [(1, 3, MULTI), (4, 1, SINGLE)]
    assert [r for f in frames for r in f.records()] == [
        Record(1, b"a"),
        Record(2, b"bb"),
        Record(3, b"ccc"),
        Record(4, b"solo"),
    ]
    assert end is End.CLEAN and offset == w.offset
    assert not any(n.endswith(".tmp") for n in ops.listdir(directory))


def test_append_batch_keeps_a_frame_of_its_own(place: tuple[FileOps, str]) -> None:
    ops, directory = place
    w = _writer(ops, directory)
    w.create(1)
    items: list[bytes | Batch] = [b"x", Batch(encode_batch([b"p", b"q"]), 2), b"y", b"z"]
    w.write_group(items, 1, 5, sync=True, batches=True)
    w.close(sync=False)
    frames, _, _ = _read(ops, directory, 1)
    assert [(f.seq, f.count) for f in frames] == [(1, 1), (2, 2), (4, 2)]


def test_rotation_when_a_segment_fills(place: tuple[FileOps, str]) -> None:
    ops, directory = place
    w = _writer(ops, directory, segment_size=4096)
    w.create(1)
    payload = b"r" * 1000
    created, durable = w.write_group([payload] * 10, 1, 10, sync=False, batches=False)
    assert created and durable == created[-1] - 1  # what rotation synced is durable
    w.close(sync=True)
    names = _segments(ops, directory)
    assert names == [segment_name(1)] + [segment_name(s) for s in created]
    seq = 1
    for name in names:
        frames, end, offset = _read(ops, directory, int(name[:20]))
        assert end is End.CLEAN and offset <= 4096
        for frame in frames:
            assert frame.seq == seq
            seq += frame.count
    assert seq == 11


def test_shared_frames_are_capped(place: tuple[FileOps, str]) -> None:
    ops, directory = place
    w = _writer(ops, directory, segment_size=8 << 20, max_frame=4096)
    w.create(1)
    w.write_group([b"s" * 100] * 200, 1, 200, sync=True, batches=False)
    w.close(sync=False)
    frames, _, _ = _read(ops, directory, 1)
    assert sum(f.count for f in frames) == 200
    assert max(f.end - f.start for f in frames) <= 4096 and len(frames) > 1
    assert MAX_GROUP_FRAME == 1 << 20


def test_zero_fill_in_steps_never_past_the_segment_size(place: tuple[FileOps, str]) -> None:
    ops, directory = place
    size = 3 * PREALLOCATE_STEP + 1000
    w = _writer(ops, directory, segment_size=size, preallocate=True)
    w.create(1)
    path = os.path.join(directory, segment_name(1))

    def file_size() -> int:
        fd = ops.open_readonly(path)
        try:
            return ops.size(fd)
        finally:
            ops.close(fd)

    assert file_size() == PREALLOCATE_STEP
    seq = 1
    while w.offset < size - 20_000:
        w.write_group([b"z" * 10_000], seq, seq, sync=True, batches=False)
        seq += 1
        assert file_size() in (PREALLOCATE_STEP, 2 * PREALLOCATE_STEP, 3 * PREALLOCATE_STEP, size)
        assert file_size() >= w.offset
    w.close(sync=True)
    fd = ops.open_readonly(path)
    try:
        tail = ops.pread(fd, file_size() - w.offset, w.offset)
    finally:
        ops.close(fd)
    assert is_zero(tail)  # records are only ever written over zeros
    _, end, offset = _read(ops, directory, 1)
    assert end is End.CLEAN and offset == w.offset


def test_meta_carries_the_log_id(place: tuple[FileOps, str]) -> None:
    ops, directory = place
    w = _writer(ops, directory)
    w.create(1)
    w.write_meta(7, (6, b"cp"))
    fd = ops.open_readonly(os.path.join(directory, META_NAME))
    try:
        raw = ops.pread(fd, 4096, 0)
    finally:
        ops.close(fd)
    assert decode_meta(raw) == Meta(7, (6, b"cp"), LOG_ID)
    w.close(sync=False)


def test_continue_an_existing_segment(place: tuple[FileOps, str]) -> None:
    ops, directory = place
    w = _writer(ops, directory)
    w.create(1)
    w.write_group([b"one"], 1, 1, sync=True, batches=False)
    end = w.offset
    w.close(sync=True)
    again = _writer(ops, directory)
    again.open_existing(1, end)
    again.write_group([b"two"], 2, 2, sync=True, batches=False)
    again.close(sync=True)
    frames, _, _ = _read(ops, directory, 1)
    assert [r.data for f in frames for r in f.records()] == [b"one", b"two"]
    with pytest.raises(AssertionError, match="active segment"):
        again.remove_segments([1])


def test_a_failed_write_stops_the_writer_for_good() -> None:
    memory = MemoryFileOps()
    memory.makedirs("/m")
    ops = FaultyFileOps(memory)
    w = SegmentWriter(ops, "/m", 1 << 20, False, MAX_FRAME, log_id=LOG_ID)
    w.create(1)
    ops.inject("pwrite", errno.EIO)
    with pytest.raises(OSError, match="Input/output"):
        w.write_group([b"lost?"], 1, 1, sync=True, batches=False)
    # The fault is gone, but the writer never writes again: the outcome of the group is unknown.
    with pytest.raises(OSError, match="an earlier write or fsync of this log failed"):
        w.write_group([b"later"], 2, 2, sync=True, batches=False)
    assert SEGMENT_HEADER_SIZE == w.offset
