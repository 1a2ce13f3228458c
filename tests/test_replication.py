"""Replication to a real three-node NATS JetStream cluster (tests/nats_cluster.py).

Each test uses its own log (so its own log id and stream) on the session's cluster. Every
check compares the stream, read back message by message, with the local log, seq for seq
and byte for byte.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from typing import TYPE_CHECKING

import nats.js.errors
import pytest

import asyncwal
from asyncwal import DivergedError, ReplicationError, ReplicationTimeoutError, StreamMismatchError, cli
from asyncwal.replication import NatsReplication, Replicator, restore
from asyncwal.replication._jetstream import StreamLink
from asyncwal.replication._wire import encode, order_headers

from .replication_support import log_records, payload, require_campaign, settings, stream_records, until

if TYPE_CHECKING:
    from pathlib import Path

    from .nats_cluster import NatsCluster

#: The loop is not what these test (the shipper is loop-agnostic; test_replication_open runs
#: its main test under both): one loop keeps the suite short.
pytestmark = pytest.mark.one_loop

LAYOUTS = ("packed", "record")
REPLICATED = asyncwal.Durability.REPLICATED


async def back_from_an_old_backup(cluster: NatsCluster, tmp_path: Path, kept: int, lost: int) -> Path:
    """Ship records 1..kept+lost at REPLICATED, then bring the log back from a backup taken
    after seq ``kept`` (a lost disk restored from an old backup): it is behind its stream."""
    path, backup = tmp_path / "wal", tmp_path / "backup"
    async with asyncwal.open(path, replicate=settings(cluster)) as log:
        for i in range(1, kept + 1):
            await log.append(payload(i), durability=REPLICATED)
    shutil.copytree(path, backup)
    async with asyncwal.open(path, replicate=settings(cluster)) as log:
        for i in range(kept + 1, kept + lost + 1):
            await log.append(payload(i), durability=REPLICATED)
    shutil.rmtree(path)
    shutil.copytree(backup, path)
    return path


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_records_reach_the_stream_byte_for_byte(
    cluster: NatsCluster, tmp_path: Path, layout: str
) -> None:
    async with (
        asyncwal.open(tmp_path / "wal") as log,
        Replicator(log, settings(cluster, layout=layout)) as rep,
    ):
        seqs = await asyncio.gather(*(log.append(payload(i)) for i in range(1, 201)))
        seqs += await log.append_batch([payload(i) for i in range(201, 221)])
        seqs.append(await log.append(b""))
        await rep.wait_replicated(max(seqs))
        assert rep.replicated_seq == log.last_seq == 221
        status = rep.status()
        assert status.shipped_seq == 221 and status.lag == 0 and status.problem is None
        log_id = rep.log_id
    assert await stream_records(cluster.urls, log_id) == await log_records(tmp_path / "wal")


async def test_only_durable_records_are_shipped(cluster: NatsCluster, tmp_path: Path) -> None:
    """In none mode records wait in memory; the shipper must not publish them before DISK."""
    async with (
        asyncwal.open(tmp_path / "wal", sync_mode="none") as log,
        Replicator(log, settings(cluster)) as rep,
    ):
        for i in range(1, 51):
            await log.append(payload(i))
        assert log.durable_seq < 50
        # (A wait at REPLICATED would force the fsync, as a wait at DISK does: watch instead.)
        await asyncio.sleep(0.3)  # give a wrong shipper time to publish what is not durable
        assert rep.replicated_seq <= log.durable_seq < 50
        await log.sync()
        await rep.wait_replicated(50)
        assert rep.replicated_seq == 50


async def test_a_restarted_shipper_resumes_from_the_stream(cluster: NatsCluster, tmp_path: Path) -> None:
    path = tmp_path / "wal"
    for round_ in range(3):
        async with asyncwal.open(path) as log:
            for i in range(20):
                await log.append(payload(round_ * 100 + i))  # shipped later, by the next replicator
            async with Replicator(log, settings(cluster)) as rep:
                more = [await log.append(payload(i)) for i in range(10)]
                await rep.wait_replicated(more[-1])
                log_id = rep.log_id
    assert await stream_records(cluster.urls, log_id) == await log_records(path)


async def test_a_stale_record_message_cannot_land_twice(cluster: NatsCluster, tmp_path: Path) -> None:
    """Record layout: a message from an earlier run for seq 2 (built to follow seq 1) arrives
    after the shipper stored seq 2 and more: the server must refuse it (or, inside the
    duplicate window, answer that seq 2 is already there), or the stream would hold seq 2
    twice. Built with the shipper's own ordering headers."""
    path = tmp_path / "wal"
    opts = settings(cluster, layout="record")
    async with asyncwal.open(path) as log, Replicator(log, opts) as rep:
        await rep.wait_replicated(max(await log.append_batch([b"one", b"two", b"three"])))
        stale = encode(rep.log_id, 2, [b"stale two"], "record")
        link = StreamLink(opts, rep.log_id)
        await link.connect()
        try:
            headers = stale.headers | order_headers(1)
            outcome: tuple[object, ...]
            try:
                ack = await link._js.publish(link.subject, stale.body, headers=headers)
                outcome = ("stored", ack.seq, ack.duplicate)
            except nats.js.errors.BadRequestError as exc:
                outcome = ("refused", exc.err_code)
            assert outcome in [("refused", 10071), ("stored", 2, True)]
        finally:
            await link.close()
        await rep.wait_replicated(await log.append(b"four"))
    records = await stream_records(cluster.urls, rep.log_id)
    assert records == await log_records(path) == [(1, b"one"), (2, b"two"), (3, b"three"), (4, b"four")]


async def test_fences_refuse_a_message_of_an_earlier_run(cluster: NatsCluster, tmp_path: Path) -> None:
    """Packed layout: a message left in flight by an earlier shipping run arrives after a
    new run began, exactly where the stream ends now. Position alone would let it in (and
    its records would not follow the stream's); the new run's fences must refuse it. The
    stale message carries the ordering headers the earlier run really used (JetStream
    stores a message's headers), so this fails if the shipper does not fence its messages."""
    path = tmp_path / "wal"
    opts = settings(cluster, layout="packed", max_in_flight=4)
    async with asyncwal.open(path, replicate=opts) as log:
        await log.wait_for(max(await log.append_batch([b"one", b"two"])), REPLICATED)
    async with asyncwal.open(path, replicate=opts) as log:  # a new run: new fences
        link = StreamLink(opts, log.log_id)
        await link.connect()
        try:
            pos = await link.position(create_at=None)
            shipped = await link.get(pos.data_seq)  # the earlier run's message
            assert shipped is not None
            fence = {k: v for k, v in shipped.headers.items() if k.startswith("Nats-Expected-Last-Subject")}
            assert fence, "the shipper's messages must name a fence"
            stale = encode(log.log_id, 5, [b"stale five"], "packed")  # 3 and 4 never shipped
            order = order_headers(pos.stream_last) | fence
            with pytest.raises(nats.js.errors.BadRequestError) as refused:
                await link._js.publish(link.subject, stale.body, headers=stale.headers | order)
            assert refused.value.err_code == 10071
        finally:
            await link.close()
        await log.wait_for(max(await log.append_batch([b"three", b"four"])), REPLICATED)
        log_id = log.log_id
    assert (
        await stream_records(cluster.urls, log_id)
        == await log_records(path)
        == [(1, b"one"), (2, b"two"), (3, b"three"), (4, b"four")]
    )


async def _kill_servers(cluster: NatsCluster, path: Path, victim: str, kills: int, layout: str) -> None:
    """8 appenders at REPLICATED; ``kills`` times: SIGKILL the stream's leader (or a follower)
    mid-load, wait for publishing to resume on its own, bring the server back. Then every
    acknowledged record is in the stream, byte for byte, and the stream has no gap and no
    duplicate."""
    acked: list[int] = []
    opts = settings(cluster, timeout=30.0, layout=layout)
    async with asyncwal.open(path, replicate=opts) as log:
        stop = asyncio.Event()

        async def writer(k: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                acked.append(await log.append(payload(k * 100000 + i), durability=REPLICATED))

        tasks = [asyncio.ensure_future(writer(k)) for k in range(8)]
        stream = f"asyncwal-{log.log_id}"

        async def hundred_more(what: str) -> None:
            want = len(acked) + 100
            await until(lambda: len(acked) >= want, what, within=60.0)

        for _ in range(kills):
            await hundred_more("some replicated records")
            leader = cluster.stream_leader(stream)
            assert leader is not None
            node = leader if victim == "leader" else next(n for n in cluster.nodes if n is not leader)
            cluster.kill(node)
            await hundred_more("publishing to resume on its own")
            cluster.restart(node)
            await cluster.wait_healthy_async()
        stop.set()
        await asyncio.gather(*tasks)
        log_id = log.log_id
    records = await stream_records(cluster.urls, log_id)
    assert [s for s, _ in records] == list(range(1, len(records) + 1)), "a gap or a duplicate"
    local = dict(await log_records(path))
    assert all(local[s] == data for s, data in records)
    assert max(acked) <= len(records)


@pytest.mark.parametrize("victim", ["leader", "follower"])
async def test_killing_a_server_loses_no_replicated_record(
    cluster: NatsCluster, tmp_path: Path, victim: str
) -> None:
    await _kill_servers(cluster, tmp_path / "wal", victim, kills=1, layout="packed")


@pytest.mark.campaign
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("victim", ["leader", "follower"])
async def test_server_kill_campaign(
    request: pytest.FixtureRequest, cluster: NatsCluster, tmp_path: Path, victim: str, layout: str
) -> None:
    require_campaign(request)
    await _kill_servers(cluster, tmp_path / "wal", victim, kills=5, layout=layout)


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_restore_brings_back_every_replicated_record(
    cluster: NatsCluster, tmp_path: Path, layout: str
) -> None:
    path = tmp_path / "wal"
    async with asyncwal.open(path) as log, Replicator(log, settings(cluster, layout=layout)) as rep:
        seqs = await asyncio.gather(*(log.append(payload(i)) for i in range(1, 301)))
        await rep.wait_replicated(max(seqs))
        log_id = rep.log_id
    before = await log_records(path)
    shutil.rmtree(path)
    report = await restore(path, settings(cluster), log_id=log_id)
    assert (report.local_before, report.last_seq, report.records) == (0, 300, 300)
    assert await log_records(path) == before
    # A second restore has nothing to add, and a log with a lost tail is extended.
    assert (await restore(path, settings(cluster), log_id=log_id)).records == 0


async def test_a_log_behind_its_stream_is_reported_then_restored(
    cluster: NatsCluster, tmp_path: Path
) -> None:
    path = await back_from_an_old_backup(cluster, tmp_path, kept=20, lost=20)
    with pytest.raises(DivergedError, match="behind"):
        await asyncwal.open(path, replicate=settings(cluster))
    report = await restore(path, settings(cluster))  # the local log says which stream
    assert (report.created, report.local_before, report.records, report.last_seq) == (False, 20, 20, 40)
    async with asyncwal.open(path, replicate=settings(cluster)) as log:
        assert await log.append(b"after restore", durability=REPLICATED) == 41
        log_id = log.log_id
    assert await stream_records(cluster.urls, log_id) == await log_records(path)


async def test_a_rewritten_log_is_reported(cluster: NatsCluster, tmp_path: Path) -> None:
    path = await back_from_an_old_backup(cluster, tmp_path, kept=10, lost=5)
    async with asyncwal.open(path) as log:  # other records under seqs 11..15 (and more)
        for i in range(11, 26):
            await log.append(b"other " + payload(i))
    with pytest.raises(DivergedError, match="different records"):
        await asyncwal.open(path, replicate=settings(cluster))
    with pytest.raises(DivergedError, match="differs"):
        await restore(path, settings(cluster))


async def test_restore_makes_a_log_with_the_streams_id_and_seqs(cluster: NatsCluster, tmp_path: Path) -> None:
    """A log that was truncated before it was first replicated ships from its first seq: the
    stream starts after seq 1, and a restored log must start there too, with the same id."""
    path = tmp_path / "wal"
    async with asyncwal.open(path, segment_size=4096) as log:
        for i in range(1, 101):
            await log.append(payload(i) * 10)
        first = await log.truncate_before(60)
        assert first > 1
        log_id = log.log_id
    async with asyncwal.open(path, segment_size=4096, replicate=settings(cluster)) as log:
        await log.wait_for(100, REPLICATED)
    before = await log_records(path)
    shutil.rmtree(path)
    with pytest.raises(ValueError, match="holds no log"):
        await restore(path, settings(cluster))
    report = await restore(path, settings(cluster), log_id=log_id)
    assert (report.created, report.records, report.last_seq) == (True, 100 - first + 1, 100)
    assert await log_records(path) == before
    async with asyncwal.open(path, replicate=settings(cluster)) as log:
        assert log.log_id == log_id and log.first_seq == first
        assert await log.append(b"more", durability=REPLICATED) == 101
    assert await stream_records(cluster.urls, log_id) == await log_records(path)
    # A directory holding another log is not taken over.
    async with asyncwal.open(tmp_path / "other") as other:
        await other.append(b"mine")
    with pytest.raises(StreamMismatchError, match="restore into an empty directory"):
        await restore(tmp_path / "other", settings(cluster), log_id=log_id)
    assert await log_records(tmp_path / "other") == [(1, b"mine")]


async def test_a_stream_of_another_log_is_refused(cluster: NatsCluster, tmp_path: Path) -> None:
    async with asyncwal.open(tmp_path / "a") as a, Replicator(a, settings(cluster)) as rep_a:
        await rep_a.wait_replicated(await a.append(b"a's record"))
        stream = rep_a.stream
    async with asyncwal.open(tmp_path / "b") as b:
        await b.append(b"b's record")
        with pytest.raises(StreamMismatchError, match="belongs to log"):
            await Replicator(b, settings(cluster, stream=stream)).start()
    # Nothing of b reached a's stream.
    assert await stream_records(cluster.urls, rep_a.log_id) == [(1, b"a's record")]


async def test_an_unreachable_server_times_out_replicated_waits(tmp_path: Path) -> None:
    opts = NatsReplication(servers="nats://127.0.0.1:1", timeout=0.5, request_timeout=0.3)
    async with asyncwal.open(tmp_path / "wal") as log, Replicator(log, opts) as rep:
        seq = await log.append(b"local only")  # DISK works without the cluster
        with pytest.raises(ReplicationTimeoutError, match="cannot reach"):
            await rep.wait_replicated(seq)
        assert not rep.status().connected
    with pytest.raises(ReplicationError, match="cannot reach"):
        await restore(tmp_path / "restored", opts, log_id=rep.log_id)


async def test_a_malformed_message_stops_restore_and_damages_nothing(
    cluster: NatsCluster, tmp_path: Path
) -> None:
    path = tmp_path / "wal"
    async with asyncwal.open(path) as log, Replicator(log, settings(cluster)) as rep:
        for i in range(1, 11):
            await log.append(payload(i))
        await rep.wait_replicated(10)
        log_id, stream = rep.log_id, rep.stream
    # Someone else publishes garbage on the log's subject (headers claim seq 11, body lies).
    link = StreamLink(settings(cluster), log_id)
    await link.connect()
    good = encode(log_id, 11, [b"eleven"], "record")
    await link._js.publish(link.subject, b"not eleven", headers=good.headers)
    await link.close()
    shutil.rmtree(path)
    with pytest.raises(StreamMismatchError, match="checksum"):
        await restore(path, settings(cluster), log_id=log_id)
    # What was restored is the stream's valid prefix, and the log opens cleanly.
    assert await log_records(path) == [(i, payload(i)) for i in range(1, 11)]
    assert stream


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="servers"):
        NatsReplication(servers=[])
    with pytest.raises(ValueError, match="stream name"):
        NatsReplication(servers="nats://x:4222", stream="a.b")
    with pytest.raises(ValueError, match="layout"):
        NatsReplication(servers="nats://x:4222", layout="zip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        NatsReplication(servers="nats://x:4222", timeout=0)
    assert NatsReplication(servers="nats://x:4222").servers == ("nats://x:4222",)


async def test_the_restore_command(
    cluster: NatsCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "wal"
    async with asyncwal.open(path) as log, Replicator(log, settings(cluster)) as rep:
        await rep.wait_replicated(max(await log.append_batch([payload(i) for i in range(1, 31)])))
        log_id = rep.log_id
    before = await log_records(path)
    shutil.rmtree(path)
    argv = ["restore", str(path), "--log-id", log_id] + [f"--server={u}" for u in cluster.urls]
    status = await asyncio.to_thread(cli.main, argv)
    assert status == 0, capsys.readouterr().err
    assert "30 records" in capsys.readouterr().out
    assert await log_records(path) == before
    status = await asyncio.to_thread(
        cli.main,
        [
            "restore",
            str(tmp_path / "x"),
            "--server",
            "nats://127.0.0.1:1",
            "--log-id",
            log_id,
            "--timeout",
            "0.5",
        ],
    )
    assert status == 2
    assert "cannot reach" in capsys.readouterr().err
    status = await asyncio.to_thread(cli.main, ["restore", str(tmp_path / "y"), "--server", cluster.urls[0]])
    assert status == 2
    assert "holds no log: give the log id" in capsys.readouterr().err


@pytest.mark.parametrize("subject", ["replicated-packed", "direct-publish"])
async def test_the_nats_benchmark_cells_run(cluster: NatsCluster, tmp_path: Path, subject: str) -> None:
    from bench._nats import _cell, render_nats_markdown

    row = await _cell(subject, cluster.urls, tmp_path, 4, 0.3, 0.05)
    assert row["rate"] > 0 and row["n"] > 0 and row["p99_ms"] >= row["p50_ms"] > 0
    rows = [
        {"setting": "always", "subject": s, "workers": 1, **row}
        for s in ("asyncwal-disk", "replicated-packed", "direct-publish")
    ]
    text = render_nats_markdown({"rows": rows})
    assert "replicated-packed = 1.0x direct publish" in text


async def test_info_shows_what_the_stream_holds(
    cluster: NatsCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "wal"
    async with asyncwal.open(path, replicate=settings(cluster)) as log:
        await log.wait_for(max(await log.append_batch([payload(i) for i in range(1, 31)])), REPLICATED)
    async with asyncwal.open(path) as log:
        await log.append(b"not shipped")
        stream = f"asyncwal-{log.log_id}"
    status = await asyncio.to_thread(cli.main, ["info", str(path), "--server", cluster.urls[1]])
    out = capsys.readouterr().out
    assert status == 0
    assert re.search(rf"stream +{stream} \(packed layout", out), out
    assert re.search(r"shipped +up to seq 30 \(1 not yet shipped\)", out), out
    # An unreachable server: said so, within the timeout, and info still succeeds.
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    argv = ["info", str(path), "--server", "nats://127.0.0.1:1", "--timeout", "0.5"]
    assert await asyncio.to_thread(cli.main, argv) == 0
    assert loop.time() - t0 < 10
    assert re.search(
        r"stream +unknown: (cannot reach|no answer from) nats://127.0.0.1:1", capsys.readouterr().out
    )
