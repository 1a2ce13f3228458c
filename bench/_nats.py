"""``python -m bench nats``: asyncwal at ``REPLICATED`` against what a user would write instead.

One run starts a real three-node JetStream cluster on 127.0.0.1 (tests/nats_cluster.py) for
each server setting (``sync_interval: always``, then JetStream's default) and measures, in the
same run and the same process (uvloop), with 128-byte records and W concurrent appenders:

* ``asyncwal-disk``: asyncwal, ``sync_mode="sync"``, each appender awaiting ``DISK``;
* ``replicated-packed`` / ``replicated-record``: the same log opened with ``replicate=``, each
  appender awaiting ``append(..., durability=REPLICATED)`` (both wire layouts, default
  settings); the row also has the stream's own acknowledgement latency for the shipper's
  messages (``ack_p50_ms``), the local log's fsync latency meanwhile (``fsync_p50_ms``) and
  the records per message;
* ``direct-publish``: each appender publishing its record straight to a JetStream stream with
  ``nats-py`` and awaiting the acknowledgement (W=1: one at a time; W: W in flight).

Each cell: a fresh log and stream, ``warmup`` unmeasured seconds, then ``seconds`` measured;
records/s and the latency of every acknowledged record (p50, p99). The machine is shared and
noisy, and three servers plus the client share its cores: read the ratios within one run.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from asyncwal.replication._wire import Layout

__all__ = ("render_nats_markdown", "run_nats")

SUBJECTS = ("asyncwal-disk", "replicated-packed", "replicated-record", "direct-publish")
RECORD = b"x" * 128


async def _measure(
    op: Callable[[], Awaitable[object]], workers: int, seconds: float, warmup: float
) -> dict[str, float]:
    lat: list[float] = []
    clock = time.perf_counter
    measuring = False
    stop = False

    async def worker() -> None:
        while not stop:
            t0 = clock()
            await op()
            if measuring:
                lat.append(clock() - t0)

    tasks = [asyncio.ensure_future(worker()) for _ in range(workers)]
    await asyncio.sleep(warmup)
    measuring = True
    start = clock()
    await asyncio.sleep(seconds)
    measuring = False
    elapsed = clock() - start
    stop = True
    await asyncio.gather(*tasks)
    lat.sort()
    if len(lat) > 1:
        q = statistics.quantiles(lat, n=100, method="inclusive")
    else:
        q = [lat[0] if lat else 0.0] * 99
    return {"rate": len(lat) / elapsed, "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000, "n": len(lat)}


async def _cell(
    subject: str, urls: list[str], workdir: Path, workers: int, seconds: float, warmup: float
) -> Any:
    import asyncwal
    from asyncwal.replication import NatsReplication, replicator_of

    if subject == "direct-publish":
        import nats
        from nats.js.api import StorageType, StreamConfig

        nc = await nats.connect(urls)
        js = nc.jetstream(timeout=30.0)
        name = f"direct-{workers}-{time.monotonic_ns()}"
        config = StreamConfig(name=name, subjects=[name], num_replicas=3, storage=StorageType.FILE)
        await js.add_stream(config)
        try:
            return await _measure(lambda: js.publish(name, RECORD), workers, seconds, warmup)
        finally:
            await js.delete_stream(name)
            await nc.close()
    path = Path(tempfile.mkdtemp(dir=workdir, prefix=f"{subject}-{workers}-"))
    if subject == "asyncwal-disk":
        async with asyncwal.open(path) as log:
            return await _measure(lambda: log.append(RECORD), workers, seconds, warmup)
    layout: Layout = "packed" if subject == "replicated-packed" else "record"
    settings = NatsReplication(servers=tuple(urls), layout=layout, timeout=60.0)
    async with asyncwal.open(path, replicate=settings) as log:
        rep = replicator_of(log)
        assert rep is not None
        append, level = log.append, asyncwal.Durability.REPLICATED
        result = await _measure(lambda: append(RECORD, level), workers, seconds, warmup)
        status = rep.status()
        result["ack_p50_ms"] = status.ack_p50 * 1000
        result["ack_p99_ms"] = status.ack_p99 * 1000
        result["records_per_message"] = status.records / max(1, status.messages)
        result["fsync_p50_ms"] = log.stats().fsync_p50 * 1000  # the local log's, in this cell
        return result


def run_nats(
    workers: list[int], seconds: float, warmup: float, workdir: Path, settings: list[str]
) -> dict[str, Any]:
    """Run every subject at every W under each server setting; the results document."""
    import uvloop

    from tests.nats_cluster import NatsCluster

    rows: list[dict[str, Any]] = []
    workdir.mkdir(parents=True, exist_ok=True)
    for setting in settings:
        with tempfile.TemporaryDirectory(dir=workdir, prefix="nats-") as tmp:
            cluster = NatsCluster(Path(tmp) / "cluster", sync_always=setting == "always")
            cluster.start()
            try:
                for w in workers:
                    for subject in SUBJECTS:
                        result = uvloop.run(_cell(subject, cluster.urls, Path(tmp), w, seconds, warmup))
                        row = {"setting": setting, "subject": subject, "workers": w, **result}
                        print(
                            f"{setting:>7} W={w:<4} {subject:<18} {row['rate']:>10,.0f} rec/s  "
                            f"p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:7.2f} ms",
                            flush=True,
                        )
                        rows.append(row)
            finally:
                cluster.stop()
    return {
        "kind": "nats",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": seconds,
        "record_bytes": len(RECORD),
        "rows": rows,
    }


def render_nats_markdown(doc: dict[str, Any]) -> str:
    """The results as Markdown: one table per server setting, then the ratios the targets use."""
    out: list[str] = []
    rows = doc["rows"]
    for setting in dict.fromkeys(r["setting"] for r in rows):
        label = "`sync_interval: always`" if setting == "always" else "JetStream's default sync"
        out += [
            f"**{label}**",
            "",
            "| W | subject | records/s | p50 ms | p99 ms | local fsync p50 ms | stream ack p50 ms "
            "| records/message |",
        ]
        out.append("|---:|---|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            if r["setting"] == setting:
                rate, p50, p99 = f"{r['rate']:,.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}"
                ack = f"{r['ack_p50_ms']:.2f}" if "ack_p50_ms" in r else ""
                fsync = f"{r['fsync_p50_ms']:.2f}" if "fsync_p50_ms" in r else ""
                per = f"{r['records_per_message']:.1f}" if "records_per_message" in r else ""
                cells = [str(r["workers"]), r["subject"], rate, p50, p99, fsync, ack, per]
                out.append("| " + " | ".join(cells) + " |")
        out.append("")
        by = {(r["workers"], r["subject"]): r for r in rows if r["setting"] == setting}
        for w in sorted({r["workers"] for r in rows}):
            packed, disk, direct = (
                by.get((w, "replicated-packed")),
                by.get((w, "asyncwal-disk")),
                by.get((w, "direct-publish")),
            )
            if not (packed and disk and direct):
                continue
            line = (
                f"W={w}: replicated-packed = {packed['rate'] / direct['rate']:.1f}x direct publish, "
                f"{packed['rate'] / disk['rate']:.2f}x asyncwal DISK"
            )
            if w == 1:
                ref = direct["p50_ms"] + disk["p50_ms"]
                line += f"; p50 {packed['p50_ms'] / ref:.2f}x (direct p50 + DISK p50)"
            elif packed.get("ack_p50_ms"):
                # Each appender waits at least for its record's local fsync and then for the
                # acknowledgement of a message that holds it: W records per (fsync + ack) is as
                # fast as a closed loop of W appenders can go; W per ack alone, with a free disk.
                ack = packed["ack_p50_ms"] / 1000
                both = ack + packed.get("fsync_p50_ms", 0.0) / 1000
                line += (
                    f"; bounds: W / (local fsync p50 + stream ack p50) = {w / both:,.0f} records/s, "
                    f"W / stream ack p50 = {w / ack:,.0f} records/s"
                )
            out += [f"- {line}"]
        out.append("")
    return "\n".join(out)


def save(doc: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "latest-nats.json"
    path.write_text(json.dumps(doc, indent=1))
    return path
