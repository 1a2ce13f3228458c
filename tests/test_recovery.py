"""Recovery at open: torn tails, damage in the middle, each recovery mode, leftovers."""

from __future__ import annotations

import asyncio
import logging
import tracemalloc
from typing import TYPE_CHECKING

import pytest

import asyncwal
from asyncwal._filenames import segment_name
from asyncwal._format import FRAME_HEADER_SIZE, SEGMENT_HEADER_SIZE, encode_segment_header, frame_header

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from .conftest import Backend

RECORD = 100  # payload bytes of each record written by _fill
FRAME = FRAME_HEADER_SIZE + RECORD


async def _fill(backend: Backend, n: int, **options: object) -> None:
    async with asyncwal.open(backend.path, **backend.options(**options)) as log:
        for i in range(n):
            await log.append(b"%03d" % i + b"." * (RECORD - 3))


def _record_offset(i: int) -> int:
    """File offset of the i-th (0-based) record of the first segment."""
    return SEGMENT_HEADER_SIZE + i * FRAME


async def _seqs(log: asyncwal.Log) -> list[int]:
    return [r.seq async for r in log.replay()]


@pytest.mark.parametrize("cut", [1, FRAME_HEADER_SIZE - 1, FRAME_HEADER_SIZE + 10, FRAME - 1])
async def test_torn_tail_is_cut_and_reported(backend: Backend, cut: int) -> None:
    await _fill(backend, 10, preallocate=False)
    name = segment_name(1)
    data = backend.read(name)
    backend.write(name, data[: _record_offset(9) + cut])  # the 10th record is torn
    async with asyncwal.open(backend.path, **backend.options()) as log:
        assert await _seqs(log) == list(range(1, 10))
        report = log.recovery_report
        assert report is not None
        assert report.segment.endswith(name) and report.offset == _record_offset(9)
        torn = data[_record_offset(9) : _record_offset(9) + cut]
        assert report.bytes_cut == len(torn.rstrip(b"\0"))  # up to the last non-zero byte
        assert report.records_dropped == 0 and report.last_seq == 9
        # New records never sit behind garbage: the torn bytes are gone.
        assert await log.append(b"new") == 10
    async with asyncwal.open(backend.path, **backend.options()) as log:
        assert log.recovery_report is None
        assert [r.data async for r in log.replay(start=10)] == [b"new"]


async def test_zero_filled_tail_is_a_clean_end(backend: Backend) -> None:
    await _fill(backend, 5, preallocate=True)
    assert len(backend.read(segment_name(1))) >= 4096  # the margin of zeros
    async with asyncwal.open(backend.path, **backend.options()) as log:
        assert log.recovery_report is None and log.last_seq == 5


async def test_torn_sector_with_later_records_counts_them(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    await _fill(backend, 10)
    name = segment_name(1)
    data = bytearray(backend.read(name))
    start = _record_offset(4)
    data[start : start + FRAME] = bytes(FRAME)  # record 5 lost, records 6..10 intact after it
    backend.write(name, bytes(data))
    with caplog.at_level(logging.WARNING, logger="asyncwal"):
        async with asyncwal.open(backend.path, **backend.options()) as log:
            assert await _seqs(log) == [1, 2, 3, 4]
            report = log.recovery_report
            assert report is not None and report.records_dropped == 5 and report.offset == start
    assert "5 valid-looking records" in caplog.text


async def test_bit_flip_in_last_segment(backend: Backend) -> None:
    await _fill(backend, 10)
    name = segment_name(1)
    data = bytearray(backend.read(name))
    data[_record_offset(7) + FRAME_HEADER_SIZE + 5] ^= 0x10
    backend.write(name, bytes(data))
    with pytest.raises(asyncwal.CorruptLogError) as exc_info:
        await asyncwal.open(backend.path, **backend.options(recovery="strict"))
    assert exc_info.value.segment.endswith(name) and exc_info.value.offset == _record_offset(7)
    async with asyncwal.open(backend.path, **backend.options()) as log:
        assert await _seqs(log) == list(range(1, 8))
        assert log.recovery_report is not None and log.recovery_report.records_dropped == 2


async def test_damage_before_the_last_segment(backend: Backend) -> None:
    await _fill(backend, 120, segment_size=4096)
    names = backend.segments()
    assert len(names) >= 3
    victim = names[1]
    data = bytearray(backend.read(victim))
    data[SEGMENT_HEADER_SIZE + FRAME + 30] ^= 0xFF  # second record of the second segment
    backend.write(victim, bytes(data))
    with pytest.raises(asyncwal.CorruptLogError) as exc_info:
        await asyncwal.open(backend.path, **backend.options())  # tolerate_tail
    assert exc_info.value.segment.endswith(victim)
    assert exc_info.value.offset == SEGMENT_HEADER_SIZE + FRAME
    first_of_victim = int(victim[:20])
    async with asyncwal.open(backend.path, **backend.options(recovery="point_in_time")) as log:
        assert log.last_seq == first_of_victim  # kept the first record of that segment
        report = log.recovery_report
        assert report is not None and len(report.segments_removed) == len(names) - 2
        assert await log.append(b"resume") == first_of_victim + 1
    assert len(backend.segments()) == 2


async def test_missing_middle_segment(backend: Backend) -> None:
    await _fill(backend, 120, segment_size=4096)
    names = backend.segments()
    if backend.memory is not None:
        backend.memory.unlink(f"{backend.path}/{names[1]}")
    else:
        import os

        os.unlink(os.path.join(backend.path, names[1]))
    with pytest.raises(asyncwal.CorruptLogError, match="gap"):
        await asyncwal.open(backend.path, **backend.options())
    async with asyncwal.open(backend.path, **backend.options(recovery="point_in_time")) as log:
        assert log.last_seq == int(names[1][:20]) - 1


async def test_damaged_header_of_last_segment(backend: Backend) -> None:
    """A header is durable before its segment gets its name, so a bad header checksum is not
    a torn write: only point_in_time removes the segment (and the records it held)."""
    await _fill(backend, 60, segment_size=4096)
    names = backend.segments()
    last = names[-1]
    data = bytearray(backend.read(last))
    data[20] ^= 1  # in the first seq: the magic is intact, the checksum fails
    backend.write(last, bytes(data))
    for mode in ("tolerate_tail", "strict"):
        with pytest.raises(asyncwal.CorruptLogError, match="checksum mismatch") as exc_info:
            await asyncwal.open(backend.path, **backend.options(recovery=mode))
        assert exc_info.value.segment.endswith(last) and exc_info.value.offset == 0
    assert backend.read(last) == bytes(data)
    options = backend.options(segment_size=4096, recovery="point_in_time")
    async with asyncwal.open(backend.path, **options) as log:
        assert log.last_seq == int(last[:20]) - 1
        report = log.recovery_report
        assert report is not None and report.segment.endswith(last) and report.offset == 0
        assert await log.append(b"again") == int(last[:20])


async def test_huge_length_field_is_not_trusted(backend: Backend) -> None:
    await _fill(backend, 3)
    name = segment_name(1)
    data = bytearray(backend.read(name))
    data[_record_offset(2) + 4 : _record_offset(2) + 8] = (0xFFFFFFF0).to_bytes(4, "little")
    backend.write(name, bytes(data))
    with pytest.raises(asyncwal.CorruptLogError, match="exceeds"):
        await asyncwal.open(backend.path, **backend.options(recovery="strict"))
    async with asyncwal.open(backend.path, **backend.options()) as log:
        assert log.last_seq == 2


async def test_leftover_tmp_files_and_interrupted_truncation(backend: Backend) -> None:
    await _fill(backend, 120, segment_size=4096)
    backend.write(segment_name(999) + ".tmp", b"partial")
    backend.write("META.tmp", b"partial")
    async with asyncwal.open(backend.path, **backend.options(segment_size=4096)) as log:
        assert log.recovery_report is None
        assert not any(n.endswith(".tmp") for n in backend.names())
        await log.truncate_before(60)
        first = log.first_seq
    # A crash after META was written but before the unlinks: put a removed segment back.
    async with asyncwal.open(backend.path, **backend.options()) as log:
        assert log.first_seq == first and log.last_seq == 120


async def test_batch_is_all_or_nothing_after_a_torn_write(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options(preallocate=False)) as log:
        await log.append(b"solo")
        await log.append_batch([b"b1" * 50, b"b2" * 50, b"b3" * 50])
    name = segment_name(1)
    data = backend.read(name)
    for cut in range(len(data) - 1, len(data) - 150, -17):
        backend.write(name, data[:cut])
        async with asyncwal.open(backend.path, **backend.options()) as log:
            assert await _seqs(log) == [1]
        backend.write(name, data)


async def test_not_a_log_segment(backend: Backend) -> None:
    await _fill(backend, 2)
    backend.write(segment_name(1), b"this is not a segment at all" * 10)
    with pytest.raises(asyncwal.CorruptLogError, match="magic"):
        await asyncwal.open(backend.path, **backend.options(recovery="strict"))


async def test_corrupt_meta_is_reported(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        await log.checkpoint(b"cp")
    meta = bytearray(backend.read("META"))
    meta[-1] ^= 1
    backend.write("META", bytes(meta))
    with pytest.raises(asyncwal.CorruptLogError, match="META"):
        await asyncwal.open(backend.path, **backend.options())


async def test_checkpoint_covering_lost_records(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        for i in range(10):
            await log.append(b"%03d" % i + b"." * (RECORD - 3))
        await log.checkpoint(b"cp-at-10")
    name = segment_name(1)
    data = bytearray(backend.read(name))
    data[_record_offset(4) + FRAME_HEADER_SIZE] ^= 0xFF  # record 5: durable, yet damaged
    backend.write(name, bytes(data))
    before = backend.read(name)
    # Cutting it would leave a checkpoint that covers seqs new records would reuse: refused,
    # and nothing is modified.
    with pytest.raises(asyncwal.CorruptLogError, match="checkpoint covers seq 10"):
        await asyncwal.open(backend.path, **backend.options())
    assert backend.read(name) == before
    async with asyncwal.open(backend.path, **backend.options(recovery="point_in_time")) as log:
        assert log.last_seq == 4 and log.last_checkpoint is None
        report = log.recovery_report
        assert report is not None and report.checkpoint_dropped == (10, b"cp-at-10")
    async with asyncwal.open(backend.path, **backend.options()) as log:
        assert log.recovery_report is None and log.last_checkpoint is None


def _peak_of(call: Callable[[], object]) -> int:
    """Peak of Python allocations (all threads) while ``call`` runs, above what was there."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        call()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_recovery_of_a_full_64_mib_segment_holds_a_few_reads_not_the_segment(tmp_path: Path) -> None:
    """Recovery streams each segment: memory is a read chunk plus a frame, not the file (it
    was about twice the segment)."""
    path = tmp_path / "wal"
    path.mkdir()
    record = b"r" * 1000
    frames = [frame_header(seq, record) + record for seq in range(1, 1 + (64 << 20) // 1020)]
    (path / segment_name(1)).write_bytes(encode_segment_header(1) + b"".join(frames))
    del frames

    async def open_close() -> int:
        async with asyncwal.open(path, segment_size=64 << 20) as log:
            return log.last_seq

    peak = _peak_of(lambda: asyncio.run(open_close()))
    assert peak < 12 << 20, f"{peak / 2**20:.1f} MiB"
    assert asyncio.run(open_close()) == (64 << 20) // 1020
