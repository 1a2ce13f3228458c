"""The shipper's record source (asyncwal/replication/_source.py), on a real log and without a
cluster: records come from the durable tap while it has them and from the files otherwise,
always consecutive from the position, never before they are on DISK."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

import asyncwal
from asyncwal import Durability
from asyncwal.replication._source import TapSource

if TYPE_CHECKING:
    from tests.conftest import Backend


class Drain:
    """Takes everything a source offers, the way the shipper does (memory first, then files)."""

    def __init__(self, log: asyncwal.Log, max_bytes: int = 1 << 20) -> None:
        self.wakeups = 0
        self.source = TapSource(log, self._notify, max_bytes=max_bytes)
        self.got: list[tuple[int, bytes]] = []
        self.from_files = 0

    def _notify(self) -> None:
        self.wakeups += 1

    async def drain(self, max_records: int = 1000, max_bytes: int = 1 << 20) -> None:
        while True:
            run = self.source.take(max_records, max_bytes)
            if run is None and self.source.needs_read():
                run = await self.source.read(max_records, max_bytes)
                self.from_files += run is not None
            if run is None:
                return
            first, payloads = run
            self.got += [(first + i, p) for i, p in enumerate(payloads)]


def rec(i: int) -> bytes:
    return b"r%d" % i * (i % 5 + 1)


@pytest.mark.parametrize(
    "mode", [{"sync_mode": "none"}, {"sync_mode": "batch", "batch_interval": 60, "batch_size": 10**6}]
)
async def test_records_come_from_memory_once_durable_and_never_before(
    backend: Backend, mode: dict[str, Any]
) -> None:
    async with asyncwal.open(backend.path, **mode, **backend.options()) as log:
        d = Drain(log)
        d.source.seek(1)
        for i in range(1, 11):
            await log.append(rec(i))
        await log.wait_for(10, Durability.OS)
        await d.drain()
        assert d.got == []  # written, not durable: nothing to ship
        await log.sync()
        await d.drain()
        assert d.got == [(i, rec(i)) for i in range(1, 11)]
        assert d.from_files == 0 and d.wakeups >= 1
        await d.source.close()


async def test_records_from_before_the_tap_are_read_from_the_files(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        for i in range(1, 6):
            await log.append(rec(i))
        d = Drain(log)
        d.source.seek(2)
        seqs = await asyncio.gather(*(log.append(rec(i)) for i in range(6, 9)))
        assert seqs == [6, 7, 8]
        await d.drain()
        assert d.got == [(i, rec(i)) for i in range(2, 9)]
        assert d.from_files == 1  # 2..5 from the files, then 6..8 from memory
        await d.source.close()


async def test_a_source_that_falls_behind_forgets_and_reads_back(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        d = Drain(log, max_bytes=300)
        d.source.seek(1)
        for i in range(1, 41):
            await log.append(bytes([i]) * 30)  # 1,200 bytes in all: over the 300 kept
        await d.drain(max_records=7)
        assert d.got == [(i, bytes([i]) * 30) for i in range(1, 41)]
        assert d.from_files >= 1
        # Back to an earlier position (a resync after messages were lost): read again.
        d.got.clear()
        d.source.seek(35)
        await log.append(b"41")
        await d.drain()
        assert [s for s, _ in d.got] == list(range(35, 42))
        await d.source.close()


async def test_take_respects_its_limits_and_a_large_record_comes_alone(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        source = TapSource(log, lambda: None)
        source.seek(1)
        await log.append_batch([b"a" * 10, b"b" * 10, b"c" * 500, b"d" * 10])
        # 4 + (4 + 10) * 2 = 32 bytes: two records fit in 40, the third does not.
        assert source.take(100, 40) == (1, [b"a" * 10, b"b" * 10])
        assert source.take(100, 40) == (3, [b"c" * 500])  # alone, though over the limit
        assert source.take(1, 1000) == (4, [b"d" * 10])
        assert source.take(100, 1000) is None and not source.needs_read()
        await source.close()


async def test_records_in_flight_when_the_tap_starts_are_announced_when_durable(backend: Backend) -> None:
    async with asyncwal.open(backend.path, sync_mode="none", **backend.options()) as log:
        await log.append(b"one")
        await log.wait_for(1, Durability.OS)  # with the writer, not durable: the tap misses it
        woken = asyncio.Event()
        source = TapSource(log, woken.set)
        source.seek(1)
        assert not source.needs_read()
        await log.sync()  # nothing is delivered by the tap; the source must still say so
        await asyncio.wait_for(woken.wait(), 10)
        assert source.needs_read()
        assert await source.read(10, 1000) == (1, [b"one"])
        await source.close()
