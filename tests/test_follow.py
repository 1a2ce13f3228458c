"""Live tailing with ``Log.follow()``: existing records then live ones, per-level visibility,
many independent followers, followers left behind by whole segments, truncation under a
follower, the end of the iteration at close, and the absence of polling."""

from __future__ import annotations

import asyncio
import contextlib
import errno
from typing import TYPE_CHECKING, Any, Protocol

import pytest

import asyncwal
from asyncwal import Durability, Record
from asyncwal.testing import FaultyFileOps

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from asyncwal import AsyncReader

    from .conftest import Backend

TIMEOUT = 10.0  # bound on any single wait below; never reached when the engine is right


def payload(seq: int, size: int = 100) -> bytes:
    """A record whose bytes tell which seq it should get (the log is written in order)."""
    head = b"rec-%06d|" % seq
    return head + bytes((seq + i) % 256 for i in range(size - len(head)))


class CountingOps(FaultyFileOps):
    """FaultyFileOps that also counts the reads made through the readers it hands out."""

    def open_reader(self, path: str) -> AsyncReader:
        return _CountingReader(super().open_reader(path), self)


class _CountingReader:
    def __init__(self, inner: AsyncReader, ops: CountingOps) -> None:
        self._inner = inner
        self._ops = ops

    async def read(self, size: int) -> bytes:
        self._ops.calls["read"] += 1
        return await self._inner.read(size)

    async def seek(self, offset: int) -> int:
        self._ops.calls["seek"] += 1
        return await self._inner.seek(offset)

    async def close(self) -> None:
        await self._inner.close()


async def aclose(it: AsyncIterator[Any]) -> None:
    """Close an async generator now (rather than whenever it is collected)."""
    close = getattr(it, "aclose", None)
    if close is not None:
        await close()


class Follower:
    """A task that follows ``log`` and hands each record over a queue.

    With ``maxsize=1`` it models a slow consumer: the follower reads at most one record ahead
    and then stays suspended in the loop body until the test takes records.
    """

    def __init__(
        self,
        log: asyncwal.Log,
        start: int | None = None,
        *,
        level: Durability = Durability.OS,
        maxsize: int = 0,
    ) -> None:
        self.log = log
        self.queue: asyncio.Queue[Record] = asyncio.Queue(maxsize)
        self.drained: list[Record] = []  # what finish() took
        # Per record: (seq, durable_seq, written_seq) at the moment it was yielded.
        self.seen_at: list[tuple[int, int, int]] = []
        self.task = asyncio.ensure_future(self._run(log.follow(start, durability=level)))

    async def _run(self, it: AsyncIterator[Record]) -> None:
        try:
            async for rec in it:
                self.seen_at.append((rec.seq, self.log.durable_seq, self.log.written_seq))
                await self.queue.put(rec)
        finally:
            await aclose(it)

    async def _next(self) -> Record | None:
        """The next record, or None once the iteration has ended and everything was taken."""
        if not self.queue.empty():
            return self.queue.get_nowait()
        getter = asyncio.ensure_future(self.queue.get())
        await asyncio.wait({getter, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            return getter.result()
        getter.cancel()
        return self.queue.get_nowait() if not self.queue.empty() else None

    async def take(self, n: int) -> list[Record]:
        """The next ``n`` records; fails if the iteration ends first."""
        out: list[Record] = []
        async with asyncio.timeout(TIMEOUT):
            while len(out) < n:
                rec = await self._next()
                if rec is None:
                    raise AssertionError(f"follower ended after {out[-1:]}: {self.task.exception()!r}")
                out.append(rec)
        return out

    async def finish(self) -> BaseException | None:
        """Take records until the iteration ends (into ``drained``); its exception, or None."""
        async with asyncio.timeout(TIMEOUT):
            while (rec := await self._next()) is not None:
                self.drained.append(rec)
        return self.task.exception()


class MakeFollower(Protocol):
    def __call__(
        self, log: asyncwal.Log, start: int | None = ..., *, level: Durability = ..., maxsize: int = ...
    ) -> Follower: ...


@pytest.fixture
async def follower() -> AsyncIterator[MakeFollower]:
    """Makes :class:`Follower` tasks; any still running when the test ends are cancelled."""
    made: list[Follower] = []

    def make(
        log: asyncwal.Log, start: int | None = None, *, level: Durability = Durability.OS, maxsize: int = 0
    ) -> Follower:
        f = Follower(log, start, level=level, maxsize=maxsize)
        made.append(f)
        return f

    yield make
    # Every test closes its log, which ends its followers: let them end on their own. (Cancelling
    # one while it closes its reader would drop the close: aiofiles runs it in an executor.)
    for f in made:
        with contextlib.suppress(BaseException):
            await f.finish()
        if not f.task.done():
            f.task.cancel()
            with contextlib.suppress(BaseException):
                await f.task


def check(records: list[Record], first: int, last: int) -> None:
    assert [r.seq for r in records] == list(range(first, last + 1))
    assert all(r.data == payload(r.seq) for r in records)


async def append_range(log: asyncwal.Log, first: int, last: int) -> None:
    seqs = await asyncio.gather(*(log.append(payload(s)) for s in range(first, last + 1)))
    assert seqs == list(range(first, last + 1))


# -- the basics --------------------------------------------------------------------------------


async def test_follow_yields_existing_records_then_live_ones(
    backend: Backend, follower: MakeFollower
) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        await append_range(log, 1, 3)
        f = follower(log, 1, level=Durability.DISK)
        check(await f.take(3), 1, 3)  # what was there
        await append_range(log, 4, 6)  # one group, written while the follower waits
        check(await f.take(3), 4, 6)
        for i in range(7, 12):  # one at a time: a wake-up per record
            await log.append(payload(i))
            check(await f.take(1), i, i)
    assert await f.finish() is None


async def test_follow_from_a_later_start_and_from_the_future(
    backend: Backend, follower: MakeFollower
) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        await append_range(log, 1, 5)
        middle = follower(log, 4)
        future = follower(log, 8)  # not appended yet: waits for it
        check(await middle.take(2), 4, 5)
        await append_range(log, 6, 10)
        check(await middle.take(5), 6, 10)
        check(await future.take(3), 8, 10)
        assert future.queue.empty()


async def test_follow_argument_checks(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        with pytest.raises(ValueError, match="OS or above"):
            log.follow(durability=Durability.MEMORY)
        with pytest.raises(TypeError):
            log.follow("1")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            log.follow(True)
    with pytest.raises(asyncwal.LogClosedError):
        log.follow()


async def test_follower_sees_batches_and_singles_in_order(backend: Backend, follower: MakeFollower) -> None:
    async with asyncwal.open(backend.path, **backend.options(segment_size=4096)) as log:
        f = follower(log, 1, level=Durability.DISK)
        seq = 1
        pending: list[asyncio.Future[Any]] = []
        for round_ in range(20):
            if round_ % 3 == 0:
                pending.append(log.append_batch([payload(s) for s in range(seq, seq + 7)]))
                seq += 7
            else:
                for s in range(seq, seq + 5):
                    pending.append(log.append(payload(s)))
                seq += 5
        await asyncio.gather(*pending)
        check(await f.take(seq - 1), 1, seq - 1)
        assert log.stats().segments > 3


# -- levels ------------------------------------------------------------------------------------


async def test_disk_follower_never_yields_a_record_that_is_only_at_os(
    backend: Backend, follower: MakeFollower
) -> None:
    ops = backend.faulty()
    opts = backend.options(file_ops=ops, sync_mode="batch", batch_size=10**6, batch_interval=3600)
    async with asyncwal.open(backend.path, **opts) as log:
        await append_range(log, 1, 2)
        await log.sync()
        disk = follower(log, 1, level=Durability.DISK)
        os_ = follower(log, 1, level=Durability.OS)
        check(await disk.take(2), 1, 2)
        check(await os_.take(2), 1, 2)

        gate = ops.block("sync")
        await append_range(log, 3, 5)  # batch mode: acknowledged at OS, no fsync started
        syncing = asyncio.ensure_future(log.sync())
        await gate.wait_entered()  # the fsync that would make 3..5 durable is parked
        check(await os_.take(3), 3, 5)  # the OS follower has them while the fsync is parked
        assert log.durable_seq == 2 and log.written_seq == 5
        assert disk.queue.empty()

        gate.release()
        assert await syncing == 5
        check(await disk.take(3), 3, 5)

    # Whenever a follower yielded a record, the record had reached the follower's level.
    assert all(seq <= durable for seq, durable, _ in disk.seen_at)
    assert all(seq <= written for seq, _, written in os_.seen_at)
    # And the OS follower did not wait for the fsync.
    assert [seq for seq, durable, _ in os_.seen_at if seq > durable] == [3, 4, 5]


async def test_disk_follower_in_sync_mode_sees_each_group_after_its_fsync(
    backend: Backend, follower: MakeFollower
) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        f = follower(log, 1, level=Durability.DISK)

        async def writer(w: int) -> None:
            for _ in range(25):
                await log.append(b"w%d" % w)

        await asyncio.gather(*(writer(w) for w in range(8)))
        got = await f.take(200)
        assert [r.seq for r in got] == list(range(1, 201))
        assert all(seq <= durable for seq, durable, _ in f.seen_at)


# -- many followers, followers left behind ----------------------------------------------------


async def test_many_followers_each_keep_their_own_position(backend: Backend, follower: MakeFollower) -> None:
    async with asyncwal.open(backend.path, **backend.options(segment_size=4096)) as log:
        await append_range(log, 1, 60)
        starts = [1, 2, 30, 60, 61, 90, 150]
        followers = [
            follower(log, s, level=Durability.DISK if i % 2 else Durability.OS) for i, s in enumerate(starts)
        ]
        # Live appends from several writers while the followers read.
        await asyncio.gather(*(append_range(log, lo, lo + 19) for lo in range(61, 200, 20)))
        for s, f in zip(starts, followers, strict=True):
            check(await f.take(200 - s + 1), s, 200)
        assert log.stats().segments >= 5


async def test_follower_behind_by_whole_segments_reads_them_from_disk(
    backend: Backend, follower: MakeFollower
) -> None:
    ops = CountingOps(backend.memory)
    async with asyncwal.open(backend.path, **backend.options(file_ops=ops, segment_size=4096)) as log:
        await append_range(log, 1, 5)
        slow = follower(log, 1, level=Durability.DISK, maxsize=1)
        check(await slow.take(1), 1, 1)  # then it stops consuming
        opened = ops.calls["open_reader"]
        await append_range(log, 6, 600)  # ~18 segments while the slow consumer sleeps
        segments = log.stats().segments
        assert segments >= 15
        check(await slow.take(599), 2, 600)  # all of them, in order, from the files
        assert ops.calls["open_reader"] - opened >= segments - 1
        await append_range(log, 601, 610)  # and then live again
        check(await slow.take(10), 601, 610)


# -- truncation ----------------------------------------------------------------------------------


async def test_truncate_before_past_a_follower_raises_truncated_error_in_it(
    backend: Backend, follower: MakeFollower
) -> None:
    async with asyncwal.open(backend.path, **backend.options(segment_size=4096)) as log:
        await append_range(log, 1, 300)
        behind = follower(log, 1, maxsize=1)
        check(await behind.take(1), 1, 1)  # it is inside the first segment, and stops there
        first = await log.truncate_before(250)
        assert 30 < first <= 250
        ahead = follower(log, first)  # a follower at a position that still exists is fine
        check(await ahead.take(300 - first + 1), first, 300)

        error = await behind.finish()
        assert isinstance(error, asyncwal.TruncatedError)
        got = behind.drained
        # It may finish the segment it had open, but never skips: no gap before the error.
        assert [r.seq for r in got] == list(range(2, 2 + len(got)))
        assert 2 + len(got) < first

        await append_range(log, 301, 305)
        check(await ahead.take(5), 301, 305)


@pytest.mark.parametrize("when", ["created_before_truncation", "created_after_truncation"])
async def test_follow_from_a_truncated_position_raises_instead_of_skipping(
    backend: Backend, when: str
) -> None:
    """A replication shipper resumes with ``follow(start=replica_last + 1)``; if that seq is
    gone, silently starting at ``first_seq`` would leave a gap in the replica."""
    async with asyncwal.open(backend.path, **backend.options(segment_size=4096)) as log:
        await append_range(log, 1, 300)
        it = log.follow(1) if when == "created_before_truncation" else None
        first = await log.truncate_before(250)
        assert first > 1
        if it is None:
            it = log.follow(1)
        try:
            async with asyncio.timeout(TIMEOUT):
                outcome: Record | BaseException = await anext(it)
        except asyncwal.WALError as exc:
            outcome = exc
        finally:
            await aclose(it)
        assert isinstance(outcome, asyncwal.TruncatedError), (
            f"follow(start=1) gave {outcome!r} although seqs 1..{first - 1} are gone"
        )


# -- end of the iteration -------------------------------------------------------------------------


async def test_iteration_ends_cleanly_when_the_log_is_closed(
    backend: Backend, follower: MakeFollower
) -> None:
    log = await asyncwal.open(backend.path, **backend.options())
    await append_range(log, 1, 3)
    parked = follower(log, 1, level=Durability.DISK)
    check(await parked.take(3), 1, 3)
    await log.close()
    assert await parked.finish() is None
    assert parked.drained == []


async def test_close_drains_and_followers_get_everything_before_the_end(
    backend: Backend, follower: MakeFollower
) -> None:
    log = await asyncwal.open(backend.path, **backend.options(sync_mode="none"))
    followers = [follower(log, 1, level=level) for level in (Durability.OS, Durability.DISK)]
    for s in range(1, 301):
        log.append(payload(s))  # MEMORY acks: the records may not be written yet
    await log.close()
    for f in followers:
        assert await f.finish() is None
        check(f.drained, 1, 300)


async def test_follower_raises_when_the_log_fails(backend: Backend, follower: MakeFollower) -> None:
    ops = backend.faulty()
    log = await asyncwal.open(backend.path, **backend.options(file_ops=ops))
    await append_range(log, 1, 2)
    f = follower(log, 1, level=Durability.DISK)
    check(await f.take(2), 1, 2)
    ops.inject("pwrite", errno.EIO, times=None)
    with pytest.raises(asyncwal.LogFailedError):
        await log.append(payload(3))
    assert isinstance(await f.finish(), asyncwal.LogFailedError)
    await log.close()


# -- no polling ----------------------------------------------------------------------------------


async def test_a_parked_follower_does_no_file_io(backend: Backend, follower: MakeFollower) -> None:
    ops = CountingOps(backend.memory)
    opts = backend.options(file_ops=ops, sync_mode="batch", batch_size=10**6, batch_interval=3600)
    async with asyncwal.open(backend.path, **opts) as log:
        await append_range(log, 1, 3)
        await log.sync()
        disk = follower(log, 1, level=Durability.DISK)
        check(await disk.take(3), 1, 3)
        await asyncio.sleep(0)  # let it go back to waiting after its last record
        before = dict(ops.calls)

        # Nothing happens for a while: a follower that polled would read here.
        await asyncio.sleep(0.3)
        assert dict(ops.calls) == before

        # Progress it does not care about (OS, not DISK) wakes it without any read either.
        witness = follower(log, 4, level=Durability.OS)
        await append_range(log, 4, 6)
        check(await witness.take(3), 4, 6)
        reads_by_witness = ops.calls["read"] - before.get("read", 0)
        await asyncio.sleep(0.1)
        assert disk.queue.empty()
        assert ops.calls["read"] - before.get("read", 0) == reads_by_witness

        # The counter does count: the DISK follower reads once the records are durable.
        await log.sync()
        check(await disk.take(3), 4, 6)
        assert ops.calls["read"] - before.get("read", 0) > reads_by_witness
