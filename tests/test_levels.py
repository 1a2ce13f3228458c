"""Durability levels as data: a level above DISK advanced from outside the writer (as the
replication shipper does), its bounded waits, and the durable tap that hands records over from
memory once they are on disk."""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING

import pytest

import asyncwal
from asyncwal import Durability

if TYPE_CHECKING:
    from asyncwal._engine import Engine
    from tests.conftest import Backend

REPLICATED = Durability.REPLICATED


class Late(asyncwal.ReplicationTimeoutError):
    def __init__(self, seq: int) -> None:
        super().__init__(f"record {seq} is late", seq=seq)


def engine_of(log: asyncwal.Log) -> Engine:
    return log._engine


async def test_a_level_nobody_advances_is_refused(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        with pytest.raises(ValueError, match="does not offer REPLICATED"):
            log.append(b"x", durability=REPLICATED)
        await log.append(b"x")
        with pytest.raises(ValueError, match="does not offer REPLICATED"):
            await log.wait_for(1, REPLICATED)
        with pytest.raises(ValueError, match="does not offer REPLICATED"):
            log.follow(durability=REPLICATED)
        assert log.level_of(1) is Durability.DISK


async def test_an_external_level_resolves_waits_as_it_advances(backend: Backend) -> None:
    async with asyncwal.open(backend.path, sync_mode="none", **backend.options()) as log:
        await log.append(b"before")  # seq 1: the level starts below it
        handle = engine_of(log).external_level(REPLICATED, timeout=60, timeout_error=Late, start=0)
        assert handle.seq == 0
        appended = [log.append(b"r%d" % i, durability=REPLICATED) for i in range(2, 6)]
        waited = asyncio.ensure_future(log.wait_for(1, REPLICATED))
        # A REPLICATED append needs DISK first: the writer syncs for it, as for a DISK append.
        await log.wait_for(5, Durability.DISK)
        assert not any(f.done() for f in appended) and not waited.done()
        with pytest.raises(ValueError, match="before DISK"):
            handle.advance(6)
        handle.advance(3)
        await asyncio.sleep(0)
        assert [f.done() for f in appended] == [True, True, False, False]
        assert waited.done()
        assert log.level_of(3) is REPLICATED and log.level_of(4) is Durability.DISK
        handle.advance(5)
        assert await asyncio.gather(*appended) == [2, 3, 4, 5]


async def test_a_wait_at_an_external_level_times_out_with_the_owners_error(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        engine_of(log).external_level(REPLICATED, timeout=0.05, timeout_error=Late)
        fut = log.append(b"never replicated", durability=REPLICATED)
        with pytest.raises(Late, match="record 1 is late"):
            await fut
        # The record itself is committed locally; lower levels go on.
        assert log.durable_seq == 1
        assert await log.append(b"next") == 2


async def test_follow_at_an_external_level_yields_what_it_reached(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        handle = engine_of(log).external_level(REPLICATED, timeout=60, timeout_error=Late)
        for i in range(1, 4):
            await log.append(b"%d" % i)
        follower = log.follow(durability=REPLICATED)
        first = asyncio.ensure_future(follower.__anext__())
        await log.sync()
        assert not first.done()
        handle.advance(2)
        assert (await first).seq == 1
        assert (await follower.__anext__()).seq == 2
        third = asyncio.ensure_future(follower.__anext__())
        await asyncio.sleep(0)
        assert not third.done()
        handle.advance(3)
        assert (await third).data == b"3"
        await follower.aclose()


async def test_the_durable_tap_hands_over_records_once_they_are_on_disk(backend: Backend) -> None:
    got: list[tuple[int, list[bytes] | None]] = []
    async with asyncwal.open(backend.path, sync_mode="none", **backend.options()) as log:
        engine_of(log).tap_durable(lambda first, records: got.append((first, records)), max_bytes=1 << 20)
        for i in range(1, 4):
            await log.append(b"%d" % i)
        await log.wait_for(3, Durability.OS)
        assert got == []  # written, not durable: not handed over
        await log.sync()
        seqs = await log.append_batch([b"b4", b"b5"])
        assert seqs == [4, 5]
        await log.append(b"6", durability=Durability.DISK)
    flat = [
        (first + i, data) for first, records in got if records is not None for i, data in enumerate(records)
    ]
    assert flat == [(1, b"1"), (2, b"2"), (3, b"3"), (4, b"b4"), (5, b"b5"), (6, b"6")]


async def test_the_durable_tap_drops_what_waits_too_long_and_says_so(backend: Backend) -> None:
    got: list[tuple[int, list[bytes] | None]] = []
    async with asyncwal.open(backend.path, sync_mode="none", **backend.options()) as log:
        engine_of(log).tap_durable(lambda first, records: got.append((first, records)), max_bytes=1000)
        for i in range(1, 21):
            await log.append(bytes(100))  # 2,000 bytes never synced: over the tap's limit
            await log.wait_for(i, Durability.OS)
        await log.sync()
    gaps = [first for first, records in got if records is None]
    assert gaps and gaps[0] == 1
    delivered = [(first, len(records)) for first, records in got if records is not None]
    # What is delivered after the gap is a contiguous run that ends at the last record.
    assert delivered
    assert delivered[-1][0] + delivered[-1][1] - 1 == 20
    assert all(a[0] + a[1] == b[0] for a, b in itertools.pairwise(delivered))


async def test_thousands_of_waiters_are_all_resolved_across_loop_turns(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        futures = [log.append(b"%d" % i) for i in range(1, 2001)]  # one group, 2,000 waiters
        assert await asyncio.gather(*futures) == list(range(1, 2001))
        assert log.durable_seq == 2000
