"""The engine's contract: seqs, levels per mode, group commit, batches, checkpoints,
replay, truncation, reopen, backpressure and cancellation."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import TYPE_CHECKING

import pytest

import asyncwal
from asyncwal import Durability

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import Backend


async def test_empty_log_state(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        assert (log.first_seq, log.last_seq, log.written_seq, log.durable_seq) == (1, 0, 0, 0)
        assert log.last_checkpoint is None
        assert log.recovery_report is None
        assert log.sync_mode == "sync"
        assert not log.closed and not log.failed
        assert [r async for r in log.replay()] == []


async def test_seqs_are_dense_and_durable_in_sync_mode(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        seqs = [await log.append(b"r%d" % i) for i in range(5)]
        assert seqs == [1, 2, 3, 4, 5]
        assert log.durable_seq == 5 and log.written_seq == 5 and log.last_seq == 5
        assert log.level_of(5) is Durability.DISK and log.level_of(6) is None
    async with asyncwal.open(backend.path, **backend.options()) as log:
        assert [(r.seq, r.data) async for r in log.replay()] == [(i + 1, b"r%d" % i) for i in range(5)]
        assert await log.append(b"next") == 6


async def test_bytes_like_payloads_are_copied(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        buf = bytearray(b"mutable")
        fut = log.append(buf)
        buf[:] = b"changed"
        await fut
        await log.append(memoryview(b"view"))
        assert [r.data async for r in log.replay()] == [b"mutable", b"view"]


async def test_group_commit_shares_fsyncs(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        before = log.stats().fsyncs
        seqs = await asyncio.gather(*(log.append(b"x" * 128) for _ in range(256)))
        stats = log.stats()
        assert sorted(seqs) == list(range(1, 257))
        fsyncs = stats.fsyncs - before
        assert 1 <= fsyncs <= 8, fsyncs  # 256 appends, a handful of fsyncs
        assert stats.appends == 256 and stats.mean_group_size >= 32


async def test_many_appenders_share_fsyncs_over_time(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:

        async def worker() -> None:
            for _ in range(20):
                await log.append(b"y" * 64)

        await asyncio.gather(*(worker() for _ in range(256)))
        stats = log.stats()
        assert stats.appends == 256 * 20
        assert stats.fsyncs * 10 < stats.appends, stats


async def test_none_mode_resolves_before_any_write(backend: Backend) -> None:
    ops = backend.faulty()
    # The gate parks the writing thread: keep the writes on the I/O thread (loop_writes=False).
    opts = backend.options(file_ops=ops, sync_mode="none", loop_writes=False)
    async with asyncwal.open(backend.path, **opts) as log:
        gate = ops.block("pwrite")
        fut = log.append(b"mem")
        assert fut.done() and await fut == 1  # MEMORY: resolved at once
        await gate.wait_entered()  # the writer is now inside the write
        assert log.written_seq == 0 and log.durable_seq == 0
        gate.release()
        await log.wait_for(1, Durability.OS)
        assert log.written_seq == 1


async def test_batch_mode_resolves_after_write_before_fsync(backend: Backend) -> None:
    ops = backend.faulty()
    opts = backend.options(file_ops=ops, sync_mode="batch", batch_size=1000, batch_interval=3600)
    async with asyncwal.open(backend.path, **opts) as log:
        gate = ops.block("sync")
        assert await log.append(b"os-level") == 1
        assert log.written_seq == 1 and log.durable_seq == 0
        assert gate.entered == 0  # no fsync has even started
        syncing = asyncio.ensure_future(log.sync())
        await gate.wait_entered()
        assert not syncing.done()
        gate.release()
        assert await syncing == 1


async def test_sync_mode_waits_for_the_fsync(backend: Backend) -> None:
    ops = backend.faulty()
    async with asyncwal.open(backend.path, **backend.options(file_ops=ops)) as log:
        gate = ops.block("sync")
        fut = log.append(b"disk-level")
        await gate.wait_entered()
        await asyncio.sleep(0)  # let any (wrong) early resolution happen
        assert not fut.done()
        assert log.durable_seq == 0
        gate.release()
        assert await fut == 1
        assert log.durable_seq == 1


async def test_batch_interval_flushes_a_single_record(backend: Backend) -> None:
    ops = backend.faulty()
    opts = backend.options(file_ops=ops, sync_mode="batch", batch_size=1000, batch_interval=0.01)
    async with asyncwal.open(backend.path, **opts) as log:
        gate = ops.block("sync")
        await log.append(b"lonely")
        assert log.durable_seq == 0
        await gate.wait_entered()  # the timer started an fsync nobody asked for
        gate.release()
        await log.wait_for(1, Durability.DISK)
        assert log.durable_seq == 1


async def test_batch_size_forces_an_fsync(backend: Backend) -> None:
    opts = backend.options(sync_mode="batch", batch_size=3, batch_interval=3600)
    async with asyncwal.open(backend.path, **opts) as log:
        for seq in range(1, 31):
            await log.append(b"%d" % seq)
            # Never batch_size acknowledged records without an fsync (one may start earlier).
            assert log.last_seq - log.durable_seq < 3
        assert log.stats().fsyncs >= 30 // 3
    # The same bound with every write on the I/O thread.
    opts = backend.options(sync_mode="batch", batch_size=3, batch_interval=3600, loop_writes=False)
    async with asyncwal.open(backend.path, **opts) as log:
        await log.append(b"1")
        await log.append(b"2")
        assert log.last_seq - log.durable_seq < 3
        await log.append(b"3")
        assert log.last_seq - log.durable_seq < 3


async def test_durability_override_per_call(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options(sync_mode="none")) as log:
        assert await log.append(b"a") == 1
        assert await log.append(b"b", durability=Durability.DISK) == 2
        assert log.durable_seq >= 2
        assert await log.append(b"c", durability=Durability.OS) == 3
        assert log.written_seq >= 3
    async with asyncwal.open(backend.path, **backend.options()) as log:
        seq = await log.append(b"m", durability=Durability.MEMORY)
        await log.wait_for(seq, Durability.DISK)
        assert log.durable_seq >= seq


async def test_append_batch_is_consecutive_and_durable(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options(sync_mode="none")) as log:

        async def noise() -> None:
            for _ in range(50):
                await log.append(b"n")
                await asyncio.sleep(0)

        tasks = [asyncio.ensure_future(noise()) for _ in range(4)]
        batches = []
        for i in range(10):
            batches.append((await log.append_batch([b"b%d-%d" % (i, j) for j in range(5)]), i))
            assert log.durable_seq >= batches[-1][0][-1]
        await asyncio.gather(*tasks)
        for seqs, _ in batches:
            assert list(seqs) == list(range(seqs[0], seqs[0] + 5))
        assert await log.append_batch([]) == []
    async with asyncwal.open(backend.path, **backend.options()) as log:
        records = {r.seq: r.data async for r in log.replay()}
        for seqs, i in batches:
            assert [records[s] for s in seqs] == [b"b%d-%d" % (i, j) for j in range(5)]
        assert sorted(records) == list(range(1, len(records) + 1))


async def test_checkpoint_replay_truncate_across_reopen(backend: Backend) -> None:
    opts = backend.options(segment_size=4096, sync_mode="batch")
    async with asyncwal.open(backend.path, **opts) as log:
        for i in range(200):
            await log.append(b"%04d" % i + b"." * 60)
        cp = await log.checkpoint(data=b"snapshot-17")
        assert cp == asyncwal.Checkpoint(seq=200, data=b"snapshot-17")
        assert log.durable_seq >= 200
        assert log.last_checkpoint == cp
        for i in range(200, 230):
            await log.append(b"%04d" % i)
        after = [r.seq async for r in log.replay(from_checkpoint=True)]
        assert after == list(range(201, 231))
        segments_before = len(backend.segments())
        first = await log.truncate_before(cp.seq + 1)
        assert first == log.first_seq and 1 < first <= 201
        assert len(backend.segments()) < segments_before
        assert [r.seq async for r in log.replay()][0] == first  # noqa: RUF015
        assert [r.seq async for r in log.replay(start=1)][0] == first  # noqa: RUF015 (below first_seq)
    async with asyncwal.open(backend.path, **opts) as log:
        assert log.last_checkpoint == cp
        assert log.first_seq == first and log.last_seq == 230
        assert [r.seq async for r in log.replay(from_checkpoint=True)] == list(range(201, 231))
        # A checkpoint stays the last one even when every segment it was taken in is gone.
        for _ in range(200):
            await log.append(b"z" * 100)
        await log.truncate_before(log.last_seq + 1)
    async with asyncwal.open(backend.path, **opts) as log:
        assert log.last_checkpoint == cp
        assert log.recovery_report is None


async def test_checkpoint_without_data_and_on_empty_log(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        cp = await log.checkpoint()
        assert cp == (0, b"")
        assert [r async for r in log.replay(from_checkpoint=True)] == []


async def test_replay_ends_at_os_level_and_does_not_wait(backend: Backend) -> None:
    ops = backend.faulty()
    opts = backend.options(file_ops=ops, sync_mode="none", loop_writes=False)  # the gate parks the writer
    async with asyncwal.open(backend.path, **opts) as log:
        await log.append(b"1")
        await log.sync()
        gate = ops.block("pwrite")
        await log.append(b"2")  # MEMORY only: its write is parked
        await gate.wait_entered()
        assert [r.seq async for r in log.replay()] == [1]
        gate.release()
        await log.sync()
        assert [r.seq async for r in log.replay()] == [1, 2]


async def test_replay_from_start_and_across_segments(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options(segment_size=4096, sync_mode="none")) as log:
        payloads = [bytes([i % 251]) * (i % 300) for i in range(500)]
        for p in payloads:
            await log.append(p)
        await log.append_batch([b"x", b"y"])
        await log.sync()
        assert len(backend.segments()) > 5
        got = [(r.seq, r.data) async for r in log.replay(start=123)]
        assert got == [(i + 1, payloads[i]) for i in range(122, 500)] + [(501, b"x"), (502, b"y")]
        assert [r.seq async for r in log.replay(start=502)] == [502]
        assert [r async for r in log.replay(start=503)] == []


async def test_record_larger_than_a_segment_gets_its_own(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options(segment_size=4096)) as log:
        await log.append(b"small")
        await log.append(b"B" * 10000)
        await log.append(b"after")
        assert len(backend.segments()) == 3
    async with asyncwal.open(backend.path, **backend.options(segment_size=4096)) as log:
        assert [len(r.data) async for r in log.replay()] == [5, 10000, 5]


async def test_close_drains_and_fsyncs_in_every_mode(backend: Backend) -> None:
    for mode in ("sync", "batch", "none"):
        path = f"{backend.path}-{mode}"
        log = await asyncwal.open(
            path, **backend.options(sync_mode=mode, batch_interval=3600, batch_size=10**6)
        )
        futs = [log.append(b"%d" % i) for i in range(100)]
        closing = asyncio.ensure_future(log.close())
        await asyncio.sleep(0)
        assert log.closed
        with pytest.raises(asyncwal.LogClosedError):
            log.append(b"late")
        await closing
        assert [await f for f in futs] == list(range(1, 101))
        assert log.durable_seq == 100
        await log.close()  # idempotent
        async with asyncwal.open(path, **backend.options()) as again:
            assert again.last_seq == 100


async def test_cancelling_a_waiter_cancels_only_its_own_wait(backend: Backend) -> None:
    ops = backend.faulty()
    async with asyncwal.open(backend.path, **backend.options(file_ops=ops)) as log:
        gate = ops.block("sync")
        victim = asyncio.ensure_future(log.append(b"cancelled-wait"))
        others = [asyncio.ensure_future(log.append(b"other")) for _ in range(10)]
        await gate.wait_entered()
        victim.cancel()
        await asyncio.sleep(0)
        gate.release()
        assert sorted(await asyncio.gather(*others)) == list(range(2, 12))
        with pytest.raises(asyncio.CancelledError):
            await victim
        await log.sync()
        assert [r.data async for r in log.replay()][0] == b"cancelled-wait"  # noqa: RUF015


async def test_cancelled_task_awaiting_append(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:

        async def writer(i: int) -> int:
            return await log.append(b"w%d" % i)

        tasks = [asyncio.ensure_future(writer(i)) for i in range(50)]
        await asyncio.sleep(0)  # every task has appended and waits
        for t in tasks[::2]:
            t.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(d, asyncio.CancelledError) for d in done[::2])
        assert all(isinstance(d, int) for d in done[1::2])
        await log.sync()
        assert len([r async for r in log.replay()]) == 50


async def test_backpressure_bounds_the_queue(backend: Backend) -> None:
    ops = backend.faulty()
    opts = backend.options(
        file_ops=ops, sync_mode="none", max_pending_bytes=1000, preallocate=False, loop_writes=False
    )
    async with asyncwal.open(backend.path, **opts) as log:
        gate = ops.block("pwrite")
        futs = [log.append(b"p" * 100) for _ in range(30)]
        await gate.wait_entered()
        accepted = [f for f in futs if f.done()]
        # Accepted records stop once more than max_pending_bytes are queued.
        assert 0 < len(accepted) < 30
        assert log.stats().queued_bytes <= 1000 + 120
        assert log.last_seq == len(accepted)
        # A waiter cancelled while waiting for space is never appended.
        futs[-1].cancel()
        gate.release()
        seqs = [await f for f in futs[:-1]]
        assert seqs == list(range(1, 30))
        await log.sync()
        assert log.last_seq == 29


async def test_stats_snapshot(backend: Backend) -> None:
    async with asyncwal.open(backend.path, **backend.options()) as log:
        await asyncio.gather(*(log.append(b"s" * 10) for _ in range(10)))
        await log.append_batch([b"a", b"b"])
        st = log.stats()
        assert st.appends == 12 and st.batches == 1 and st.bytes >= 102
        assert st.groups >= 2 and st.fsyncs >= 2 and st.fsync_max >= st.fsync_p50 > 0
        assert st.queue_depth == 0
        with pytest.raises(AttributeError):
            st.appends = 0  # type: ignore[misc]


async def test_reopen_after_truncate_of_everything_but_active(backend: Backend) -> None:
    opts = backend.options(segment_size=4096)
    async with asyncwal.open(backend.path, **opts) as log:
        for _ in range(100):
            await log.append(b"q" * 100)
        first = await log.truncate_before(log.last_seq + 1)
        assert first == log.first_seq
        if log.first_seq == log.last_seq + 1:
            assert [r async for r in log.replay()] == []
    async with asyncwal.open(backend.path, **opts) as log:
        assert log.first_seq == first and log.last_seq == 100
        assert await log.append(b"more") == 101


async def test_replay_while_the_log_grows_reads_fresh_bytes(backend: Backend) -> None:
    # The reader's buffer holds the zero fill ahead of the records it read; records written
    # after that read must be read again from the file, not parsed from the stale zeros.
    async with asyncwal.open(backend.path, **backend.options(sync_mode="batch", segment_size=8192)) as log:
        await log.append(b"first")
        seen: list[tuple[int, bytes]] = []
        async for rec in log.replay():
            seen.append((rec.seq, rec.data))
            if rec.seq < 200:
                # the next record, written after the reader's last read
                await log.append(b"rec-%d." % (rec.seq + 1) + b"." * 100)
        assert [s for s, _ in seen] == list(range(1, 201))
        assert all(data == b"rec-%d." % s + b"." * 100 for s, data in seen[1:])
        assert len(backend.segments()) > 1  # it also crossed rotations while reading


async def test_slow_fsync_is_logged_as_a_warning(backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="asyncwal"):
        async with asyncwal.open(backend.path, **backend.options(slow_fsync_seconds=3600)) as log:
            await log.append(b"fast enough")
        assert "fsync took" not in caplog.text
        # A threshold no fsync can beat: every fsync is reported, with its directory.
        async with asyncwal.open(backend.path, **backend.options(slow_fsync_seconds=1e-9)) as log:
            await log.append(b"slow")
    warnings = [r for r in caplog.records if "fsync took" in r.getMessage()]
    assert warnings and all(r.levelno == logging.WARNING for r in warnings)
    assert backend.path in warnings[0].getMessage()


async def test_none_mode_moves_records_to_the_os_while_appenders_never_wait(backend: Backend) -> None:
    # An appender that never awaits anything but MEMORY-level appends must not starve the
    # writer: the records reach the OS promptly, long before max_pending_bytes fills up.
    async with asyncwal.open(backend.path, **backend.options(sync_mode="none")) as log:
        for i in range(20_000):
            await log.append(b"%05d" % i + b"." * 123)
        assert log.written_seq > 0  # the writer ran while the loop above was going
        assert log.stats().queued_bytes < 2 * 1024 * 1024  # not 20,000 x 148 bytes


@pytest.mark.filterwarnings("ignore:unclosed asyncwal log:ResourceWarning")
def test_a_log_left_open_at_asyncio_run_exit_fails_quietly(tmp_path: Path) -> None:
    # asyncio.run() cancels the writer of a log that was never closed: its waiters get
    # LogClosedError, and nothing is reported as an unhandled error during shutdown.
    errors: list[dict[str, object]] = []
    pending: list[asyncio.Future[int]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        log = await asyncwal.open(str(tmp_path / "wal"), sync_mode="sync")
        await log.append(b"kept")
        pending.append(log.append(b"in flight at exit"))

    asyncio.run(main())
    assert errors == []
    assert pending[0].done()
    pending.clear()
    gc.collect()  # the unclosed log warns now, under this test's filter, not in a later test


async def test_memory_acks_past_1024_waiting_records_wait_for_the_writer(backend: Backend) -> None:
    # Once 1,024 records wait for the writer, a MEMORY ack waits until the writer has taken
    # its record, which is what lets the writer run under appenders that await nothing else.
    async with asyncwal.open(backend.path, **backend.options(sync_mode="none")) as log:
        futures = [log.append(b"r%d" % i) for i in range(1500)]  # no await: the writer waits
        assert all(f.done() for f in futures[:1023])
        assert not any(f.done() for f in futures[1023:])  # from the 1,024th waiting record on
        assert log.written_seq == 0
        assert await asyncio.gather(*futures) == list(range(1, 1501))
        assert await log.sync() == 1500
    async with asyncwal.open(backend.path, **backend.options()) as log:
        assert [r.data async for r in log.replay()] == [b"r%d" % i for i in range(1500)]
