"""Helpers of the replication tests: read a stream back record by record, read a log, and a
writer child process for the SIGKILL tests (``python -m tests.replication_support ...``)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING

import pytest

import asyncwal
from asyncwal.replication import NatsReplication, replicator_of
from asyncwal.replication._jetstream import StreamLink
from asyncwal.replication._wire import decode

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Sequence

    from .nats_cluster import NatsCluster


async def stream_records(
    urls: Sequence[str], log_id: str, stream: str | None = None
) -> list[tuple[int, bytes]]:
    """Every record the log's stream holds, as ``(seq, payload)``, in stream order (fences
    skipped).

    Each message is checked by the codec (log id, checksum, packed body); the caller checks
    the seqs (a gap or a duplicate shows as a seq out of place).
    """
    link = StreamLink(NatsReplication(servers=tuple(urls), stream=stream, request_timeout=5.0), log_id)
    await link.connect()
    try:
        pos = await link.position(create_at=None)
        out: list[tuple[int, bytes]] = []
        if not pos.log_last:
            return out
        async for sseq, headers, body in link.read(pos.stream_first, pos.data_seq):
            _, first, payloads = decode(log_id, headers, body, f"seq {sseq}")
            out += [(first + i, p) for i, p in enumerate(payloads)]
        return out
    finally:
        await link.close()


async def log_records(path: str | os.PathLike[str]) -> list[tuple[int, bytes]]:
    """Every record of the (closed) log in ``path``, as ``(seq, payload)``."""
    async with asyncwal.open(path) as log:
        return [(r.seq, r.data) for r in [rec async for rec in log.replay()]]


def settings(cluster: NatsCluster, **kw: object) -> NatsReplication:
    """Replication settings for ``cluster`` (keywords: any other NatsReplication field)."""
    return NatsReplication(servers=tuple(cluster.urls), **kw)  # type: ignore[arg-type]


async def until(predicate: Callable[[], bool], what: str, within: float = 60.0) -> None:
    """Wait for a condition that a background task makes true (the shipper catching up). No
    event tells a test when another task's state changes, so this polls, bounded."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def require_campaign(request: pytest.FixtureRequest) -> None:
    """Skip a long campaign unless the run asked for it (``-m campaign``)."""
    markexpr = str(request.config.getoption("markexpr") or "")
    if "campaign" not in markexpr or "not campaign" in markexpr:
        pytest.skip("a long campaign: run with -m campaign")


def payload(i: int) -> bytes:
    """A record whose bytes tell which one it is (sizes vary, some are empty)."""
    body = f"record {i} ".encode()
    return body * (i % 7) + bytes([i % 251])


async def _child(path: str, urls: list[str], layout: str, workers: int) -> None:
    """Append at REPLICATED from ``workers`` tasks; print each acknowledged seq."""
    opts = NatsReplication(servers=tuple(urls), layout=layout, timeout=30.0)  # type: ignore[arg-type]
    async with asyncwal.open(path, replicate=opts) as log:
        rep = replicator_of(log)
        assert rep is not None
        out = sys.stdout
        n = 0

        async def worker() -> None:
            nonlocal n
            while True:
                n += 1
                seq = await log.append(payload(n), durability=asyncwal.Durability.REPLICATED)
                out.write(f"{seq}\n")
                out.flush()

        print(json.dumps({"log_id": rep.log_id}), flush=True)
        await asyncio.gather(*(worker() for _ in range(workers)))


if __name__ == "__main__":
    asyncio.run(_child(sys.argv[1], sys.argv[2].split(","), sys.argv[3], int(sys.argv[4])))
