"""A log opened with ``replicate=``: the REPLICATED level through the log's own methods, its
stats, retention that keeps what the stream lacks, and close() draining the shipper. Real
three-node cluster (tests/nats_cluster.py), one log and stream per test."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

import asyncwal
from asyncwal import Durability, ReplicationError, ReplicationTimeoutError, StreamMismatchError
from asyncwal.replication import NatsReplication, Replicator, replicator_of

from .replication_support import log_records, payload, settings, stream_records, until

if TYPE_CHECKING:
    from pathlib import Path

    from .nats_cluster import NatsCluster

REPLICATED = Durability.REPLICATED


async def test_the_replicated_level_through_the_logs_own_methods(
    cluster: NatsCluster, tmp_path: Path
) -> None:
    path = tmp_path / "wal"
    async with asyncwal.open(path, replicate=settings(cluster)) as log:
        assert log.replicated_seq == 0 and log.stats().replicated_seq == 0
        first = await log.append(b"one", durability=REPLICATED)
        assert log.replicated_seq >= first and log.level_of(first) is REPLICATED
        seqs = await asyncio.gather(*(log.append(payload(i)) for i in range(2, 40)))
        follower = log.follow(durability=REPLICATED)
        await log.wait_for(max(seqs), REPLICATED)
        assert [(await follower.__anext__()).seq for _ in range(3)] == [1, 2, 3]
        await follower.aclose()
        stats = log.stats()
        assert stats.replicated_seq == log.replicated_seq == 39 and stats.replication_lag == 0
        rep = replicator_of(log)
        assert rep is not None and rep.status().shipped_seq == 39
        log_id = rep.log_id
        # Not waited for: close() ships what is durable before it lets go of the log.
        await log.append_batch([payload(i) for i in range(40, 60)])
    assert await stream_records(cluster.urls, log_id) == await log_records(path)
    assert len(await log_records(path)) == 59
    # Reopened with replication, the level starts where the stream is.
    async with asyncwal.open(path, replicate=settings(cluster)) as log:
        assert log.replicated_seq == 59 and log.level_of(59) is REPLICATED


@pytest.mark.one_loop
async def test_a_log_without_replication_does_not_offer_it(tmp_path: Path) -> None:
    async with asyncwal.open(tmp_path / "wal") as log:
        assert log.replicated_seq is None
        stats = log.stats()
        assert stats.replicated_seq is None and stats.replication_lag == 0
        assert replicator_of(log) is None
    with pytest.raises(TypeError, match="replicate must be replication settings"):
        asyncwal.open(tmp_path / "x", replicate="nats://127.0.0.1:4222")


@pytest.mark.one_loop
async def test_open_fails_on_another_logs_stream_and_lets_go_of_the_log(
    cluster: NatsCluster, tmp_path: Path
) -> None:
    async with asyncwal.open(tmp_path / "a", replicate=settings(cluster)) as a:
        await a.append(b"a", durability=REPLICATED)
        rep = replicator_of(a)
        assert rep is not None
        stream = rep.stream
    with pytest.raises(StreamMismatchError, match="belongs to log"):
        await asyncwal.open(tmp_path / "b", replicate=settings(cluster, stream=stream))
    async with asyncwal.open(tmp_path / "b") as b:  # closed again: the lock is free
        assert b.last_seq == 0


@pytest.mark.one_loop
async def test_two_of_three_down_replicated_fails_disk_goes_on_and_nothing_unshipped_is_truncated(
    cluster: NatsCluster, tmp_path: Path
) -> None:
    path = tmp_path / "wal"
    opts = settings(cluster, timeout=1.0, request_timeout=1.0)
    async with asyncwal.open(path, segment_size=4096, replicate=opts) as log:
        for i in range(1, 41):
            await log.append(payload(i) * 20, durability=REPLICATED)
        rep = replicator_of(log)
        assert rep is not None
        leader = cluster.stream_leader(rep.stream)
        assert leader is not None
        cluster.kill(leader)
        cluster.kill(next(n for n in cluster.nodes if n.running))
        for i in range(41, 81):
            await log.append(payload(i) * 20)  # DISK goes on; the stream has none of these
        assert log.durable_seq == 80
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(ReplicationTimeoutError) as info:
            await log.wait_for(80, REPLICATED)
        assert info.value.seq == 80
        assert loop.time() - t0 < 5.0  # the configured 1 s, with room for a loaded machine
        shipped = log.replicated_seq
        assert shipped is not None and shipped < 41
        first = await log.truncate_before(log.last_seq + 1)
        assert log.first_seq == first <= shipped + 1  # clamped: nothing unshipped removed
        assert log.stats().replication_lag == 80 - shipped
        cluster.restart_all_down()
        await cluster.wait_healthy_async()
        await until(lambda: log.replicated_seq == 80, "shipping to catch up")
        assert await log.truncate_before(80) > first  # shipped now: free to go
        log_id = rep.log_id
    records = await stream_records(cluster.urls, log_id)
    assert [s for s, _ in records] == list(range(1, 81))
    assert records[-1] == (80, payload(80) * 20)


@pytest.mark.one_loop
async def test_an_unreachable_stream_fails_replicated_waits_not_the_log(tmp_path: Path) -> None:
    opts = NatsReplication(servers="nats://127.0.0.1:1", timeout=0.5, request_timeout=0.3, drain_timeout=0.5)
    async with asyncwal.open(tmp_path / "wal", replicate=opts) as log:
        seq = await log.append(b"local only")  # DISK works without the cluster
        with pytest.raises(ReplicationTimeoutError, match="cannot reach") as info:
            await log.append(b"waits", durability=REPLICATED)
        assert info.value.seq == seq + 1
        assert log.durable_seq == seq + 1 and log.replicated_seq == 0


@pytest.mark.one_loop
async def test_a_closed_replicator_fails_waits_and_the_level_goes(tmp_path: Path) -> None:
    opts = NatsReplication(servers="nats://127.0.0.1:1", timeout=60, request_timeout=0.3, drain_timeout=0.3)
    async with asyncwal.open(tmp_path / "wal") as log:
        rep = Replicator(log, opts)
        await rep.start()
        waiting = log.append(b"never shipped", durability=REPLICATED)
        await rep.close()
        with pytest.raises(ReplicationError, match="not known to be replicated"):
            await waiting
        await log.sync()  # the record itself is the log's as any other
        assert log.replicated_seq is None and log.level_of(1) is Durability.DISK
        with pytest.raises(ValueError, match="does not offer REPLICATED"):
            log.append(b"x", durability=REPLICATED)
        with pytest.raises(ReplicationError, match="not running"):
            await rep.wait_replicated(1)


@pytest.mark.one_loop
async def test_the_example_service_answers_at_replicated(cluster: NatsCluster, tmp_path: Path) -> None:
    """examples/fastapi_app.py --nats: a 201 means the record is on a quorum of the cluster."""
    import httpx

    from .test_integrations import Server, running

    path = tmp_path / "wal"
    nats = tuple(f"--nats={u}" for u in cluster.urls)
    server = Server("fastapi", path, "sync", "asyncio", tmp_path / "out.txt", extra=nats)
    async with running(server), httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        answers = [(await client.post("/events", content=payload(i))).json() for i in range(1, 21)]
        assert answers == [{"seq": i, "durability": "REPLICATED"} for i in range(1, 21)]
        health = (await client.get("/health")).json()
        assert health["replicated_seq"] == 20
    # A graceful stop (uvicorn re-raises the SIGTERM once it has shut down).
    assert "closed " in server.output(), server.output()
    async with asyncwal.open(path) as log:
        log_id = log.log_id
    assert await stream_records(cluster.urls, log_id) == await log_records(path)


@pytest.mark.one_loop
async def test_the_web_helpers_take_replication_settings(cluster: NatsCluster, tmp_path: Path) -> None:
    from aiohttp import web

    from asyncwal.integrations.aiohttp import WAL_KEY, wal_cleanup_ctx
    from asyncwal.integrations.fastapi import wal_lifespan

    lifespan = wal_lifespan(tmp_path / "fastapi", replicate=settings(cluster))
    async with lifespan(object()) as state:
        assert await state["wal"].append(b"fastapi", durability=REPLICATED) == 1
    app = web.Application()
    ctx = wal_cleanup_ctx(tmp_path / "aiohttp", replicate=settings(cluster))(app)
    await ctx.__anext__()
    assert await app[WAL_KEY].append(b"aiohttp", durability=REPLICATED) == 1
    with pytest.raises(StopAsyncIteration):
        await ctx.__anext__()
    assert app[WAL_KEY].closed
    with pytest.raises(TypeError, match="replicate must be replication settings"):
        wal_lifespan(tmp_path / "x", replicate="nats://127.0.0.1:4222")
