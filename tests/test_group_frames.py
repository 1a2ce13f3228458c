"""Records written together share frames: one header and one CRC per frame, not per record.

Checked on the bytes in the segment files: the writer packs a group's records into MULTI
frames that fit the segment and the readers' length limit, keeps every ``append_batch()`` in
a frame of its own, and everything reads back record by record, from any seq.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import asyncwal
from asyncwal._format import FRAME_HEADER_SIZE, MULTI, SEGMENT_HEADER_SIZE, SINGLE, max_frame_length
from asyncwal._reader import End, FrameDecoder

if TYPE_CHECKING:
    from .conftest import Backend


def frames(backend: Backend, max_length: int = 1 << 30) -> list[tuple[str, int, int, int, int]]:
    """``(segment, seq, count, type, frame bytes)`` of every valid frame, in log order."""
    out = []
    for name in backend.segments():
        decoder = FrameDecoder(int(name[:20]), max_length)
        decoder.refill(backend.read(name), eof=True)
        out += [(name, f.seq, f.count, f.type, f.size) for f in decoder.frames()]
        assert decoder.end is not None and decoder.end.end is End.CLEAN, decoder.end
    return out


def payload(i: int) -> bytes:
    return b"%06d" % i + bytes([i % 251]) * 90


async def test_concurrent_appends_share_frames(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        seqs = await asyncio.gather(*(log.append(payload(i)) for i in range(512)))
        assert seqs == list(range(1, 513))
        stats = log.stats()
    found = frames(backend)
    assert sum(f[2] for f in found) == 512
    assert [f[1] for f in found] == sorted(f[1] for f in found)
    shared = [f for f in found if f[3] == MULTI]
    assert shared and len(found) <= stats.groups  # no more frames than writes: none per record
    # On disk a shared record costs its payload plus a 4-byte length, not a 20-byte header.
    assert sum(f[4] for f in found) < 512 * (96 + FRAME_HEADER_SIZE)
    async with asyncwal.open(backend.path, **backend.options()) as log:
        assert [(r.seq, r.data) async for r in log.replay()] == [(i + 1, payload(i)) for i in range(512)]
        # From the middle of a shared frame.
        start = shared[0][1] + shared[0][2] // 2
        got = [r.seq async for r in log.replay(start)]
        assert got == list(range(start, 513))


async def test_a_lone_record_keeps_a_data_frame(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        for i in range(3):
            await log.append(payload(i))
    assert [(f[1], f[2], f[3]) for f in frames(backend)] == [(1, 1, SINGLE), (2, 1, SINGLE), (3, 1, SINGLE)]


async def test_shared_frames_fit_the_segment(backend: Backend) -> None:
    size = 4096
    async with asyncwal.open(backend.path, **backend.options(segment_size=size, preallocate=False)) as log:
        await asyncio.gather(*(log.append(payload(i)) for i in range(300)))
        for _ in range(3):  # and with groups of every size
            await asyncio.gather(*(log.append(payload(i)) for i in range(300, 400)))
        assert log.stats().mean_group_size > 10
    found = frames(backend)
    assert sum(f[2] for f in found) == 600
    per_segment: dict[str, int] = {}
    for name, _, _, _, nbytes in found:
        per_segment[name] = per_segment.get(name, SEGMENT_HEADER_SIZE) + nbytes
    assert len(per_segment) > 10
    assert max(per_segment.values()) <= size
    # Segments are filled: every one but the last holds more than half a segment of frames.
    assert min(list(per_segment.values())[:-1]) > size // 2
    async with asyncwal.open(backend.path, **backend.options(segment_size=size)) as log:
        data = [r.data async for r in log.replay()]
    assert data == [payload(i) for i in range(300)] + [payload(i) for i in range(300, 400)] * 3


async def test_shared_frames_respect_the_readers_length_limit(backend: Backend) -> None:
    opts = backend.options(max_record_size=256, max_batch_bytes=1024)
    limit = max_frame_length(256, 1024)
    async with asyncwal.open(backend.path, **opts) as log:
        await asyncio.gather(*(log.append(payload(i)) for i in range(200)))
    found = frames(backend, max_length=limit)  # the reader rejects a longer frame
    assert sum(f[2] for f in found) == 200
    assert max(f[4] for f in found) <= FRAME_HEADER_SIZE + limit
    assert sum(f[3] == MULTI for f in found) >= 10
    async with asyncwal.open(backend.path, **opts) as log:
        assert log.recovery_report is None
        assert [r.data async for r in log.replay()] == [payload(i) for i in range(200)]


async def test_append_batch_keeps_its_own_frame_among_shared_ones(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options(sync_mode="batch")) as log:
        before = [log.append(payload(i)) for i in range(50)]
        batch = log.append_batch([b"b%d" % i for i in range(7)])
        after = [log.append(payload(i)) for i in range(50, 100)]
        await asyncio.gather(*before, *after)
        batch_seqs = await batch
        assert batch_seqs == list(range(51, 58))
    found = frames(backend)
    assert (51, 7, MULTI) in [(f[1], f[2], f[3]) for f in found]  # exactly its records
    assert len(found) == 3  # the records before it, the batch, the records after it
    async with asyncwal.open(backend.path, **backend.options()) as log:
        data = [r.data async for r in log.replay()]
    expected = [payload(i) for i in range(50)] + [b"b%d" % i for i in range(7)]
    assert data == expected + [payload(i) for i in range(50, 100)]
