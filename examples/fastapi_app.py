"""An append-only event service: FastAPI + asyncwal.

    POST /events                 the request body (any bytes) is one record.
                                 201 {"seq": N, "durability": "DISK"} once the record has
                                 reached the level of --mode (sync: DISK, batch: OS, none: MEMORY)
    GET  /events?start=1&limit=1000
                                 {"records": [{"seq": N, "data": "<base64>"}, ...], "next": N}:
                                 records that have reached at least OS, in seq order
                                 (sharded: ?shard=K&start=1&limit=1000, from any worker)
    GET  /health                 {"status": "ok", "mode": ..., "last_seq": ..., "durable_seq": ...}

Run it::

    python examples/fastapi_app.py --dir data/wal --mode sync --port 8000
    curl -X POST --data-binary 'order 17 accepted' http://127.0.0.1:8000/events

With several worker processes, each worker appends to its own shard of one sharded log
(--sharded), and a record is addressed by (shard, seq): POST answers
{"shard": K, "seq": N, ...}, and GET /events takes ?shard=K::

    python examples/fastapi_app.py --dir data/wal --sharded --workers 4
    uvicorn --app-dir examples --factory fastapi_app:app_from_env --workers 4   # WAL_SHARDED=1
    gunicorn -w 4 -k uvicorn_worker.UvicornWorker --chdir examples 'fastapi_app:app_from_env()'

With --nats, the log (each shard's, when sharded) is replicated to a NATS JetStream cluster
(pip install 'asyncwal[nats]'), and POST answers once the record is on local DISK *and*
stored on a quorum of the cluster: {"seq": N, "durability": "REPLICATED"}. A record that
the cluster did not acknowledge in time gets 503 (it stays in the local log)::

    python examples/fastapi_app.py --dir data/wal --nats nats://10.0.0.1:4222 --nats nats://10.0.0.2:4222

Every flag also reads an environment variable (WAL_DIR, WAL_MODE, WAL_SHARDED,
WAL_MAX_SHARDS, WAL_NATS (comma-separated URLs), PORT, HOST, WAL_LOOP, WAL_GRACE,
WEB_CONCURRENCY); app_from_env() reads the WAL_* ones. SIGTERM or Ctrl-C stops it
gracefully: uvicorn stops accepting, finishes the requests in flight (for up to --grace
seconds), then the lifespan closes the log, which writes and fsyncs everything accepted, in
every mode (and, with --nats, ships what is durable before it lets go).
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

import asyncwal
from asyncwal.integrations.fastapi import ShardedWalDep, WalDep, WalState, wal_lifespan

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

MODE_LEVEL = {"sync": "DISK", "batch": "OS", "none": "MEMORY"}


class Appended(BaseModel):
    shard: int | None = None  # sharded mode: the shard the record is in
    seq: int
    durability: str  # the level the record has reached (at least) when the response is sent


class Item(BaseModel):
    seq: int
    data: str  # base64 of the record's bytes


class Page(BaseModel):
    records: list[Item]
    next: int  # the start of the next page


class Health(BaseModel):
    status: str
    mode: str
    pid: int
    shard: int | None  # sharded mode: this worker's shard
    first_seq: int
    last_seq: int
    durable_seq: int
    replicated_seq: int | None  # --nats: every seq up to this one is on a quorum of the cluster
    recovery: str | None  # what recovery cut at startup, if anything


async def page(records: AsyncIterator[asyncwal.Record], start: int, limit: int) -> Page:
    """Up to ``limit`` records, and where the next page starts."""
    items: list[Item] = []
    nxt = start
    async for rec in records:
        items.append(Item(seq=rec.seq, data=base64.b64encode(rec.data).decode()))
        nxt = rec.seq + 1
        if len(items) == limit:
            break
    return Page(records=items, next=nxt)


def create_app(
    path: str,
    mode: str = "sync",
    *,
    sharded: bool = False,
    max_shards: int | None = None,
    nats: list[str] | None = None,
) -> FastAPI:
    options: dict[str, Any] = {"sync_mode": mode}
    level: asyncwal.Durability | None = None  # the mode's
    acked = MODE_LEVEL[mode]
    if nats:
        from asyncwal.replication import NatsReplication

        options["replicate"] = NatsReplication(servers=nats)
        level, acked = asyncwal.Durability.REPLICATED, "REPLICATED"
    wal = wal_lifespan(path, sharded=sharded, max_shards=max_shards, **options)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[WalState]:
        # wal_lifespan alone would do; wrapping it shows how to add your own startup and
        # shutdown steps around it.
        async with wal(app) as state:
            yield state
        log = state["wal"]
        print(f"closed {log.path}: last_seq={log.last_seq} durable_seq={log.durable_seq}", file=sys.stderr)

    app = FastAPI(title="asyncwal events", lifespan=lifespan)

    @app.exception_handler(asyncwal.WALError)
    async def wal_error(request: Request, exc: asyncwal.WALError) -> JSONResponse:
        status = 413 if isinstance(exc, asyncwal.RecordTooLargeError) else 503
        return JSONResponse({"detail": str(exc)}, status_code=status)

    if sharded:

        @app.post("/events", status_code=201, response_model_exclude_none=True)
        async def append_sharded(request: Request, wal: ShardedWalDep) -> Appended:
            seq = await wal.append(await request.body(), level)
            return Appended(shard=wal.shard, seq=seq, durability=acked)

    else:

        @app.post("/events", status_code=201, response_model_exclude_none=True)
        async def append_event(request: Request, log: WalDep) -> Appended:
            seq = await log.append(await request.body(), level)
            return Appended(seq=seq, durability=acked)

    if sharded:
        # Any worker may be asked for any shard: read the shards' files, held or not.
        reader = asyncwal.ShardedReader(path)

        @app.get("/events")
        async def read_shard(
            shard: Annotated[int, Query(ge=0)],
            start: Annotated[int, Query(ge=1)] = 1,
            limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        ) -> Page:
            return await page(reader.replay(shard, start), start, limit)

    else:

        @app.get("/events")
        async def read_events(
            log: WalDep,
            start: Annotated[int, Query(ge=1)] = 1,
            limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        ) -> Page:
            return await page(log.replay(start), max(start, log.first_seq), limit)

    @app.get("/health")
    async def health(request: Request, log: WalDep) -> Health:
        report = log.recovery_report
        return Health(
            status="ok",
            mode=log.sync_mode,
            pid=os.getpid(),
            shard=request.state.wal_sharded.shard if sharded else None,
            first_seq=log.first_seq,
            last_seq=log.last_seq,
            durable_seq=log.durable_seq,
            replicated_seq=log.replicated_seq,
            recovery=None if report is None else repr(report),
        )

    return app


def app_from_env() -> FastAPI:
    """The app configured by WAL_DIR, WAL_MODE, WAL_SHARDED and WAL_MAX_SHARDS: the factory a
    multi-worker server imports in each worker (``uvicorn --factory fastapi_app:app_from_env``,
    ``gunicorn 'fastapi_app:app_from_env()'``)."""
    env = os.environ.get
    max_shards = env("WAL_MAX_SHARDS")
    return create_app(
        env("WAL_DIR", "data/wal"),
        env("WAL_MODE", "sync"),
        sharded=env("WAL_SHARDED", "") not in ("", "0"),
        max_shards=int(max_shards) if max_shards else None,
        nats=[u for u in env("WAL_NATS", "").split(",") if u] or None,
    )


def main(argv: list[str] | None = None) -> None:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", default=env("WAL_DIR", "data/wal"), help="log directory")
    parser.add_argument("--mode", default=env("WAL_MODE", "sync"), choices=sorted(MODE_LEVEL))
    parser.add_argument(
        "--sharded",
        action="store_true",
        default=env("WAL_SHARDED", "") not in ("", "0"),
        help="one shard of a sharded log per worker process (needed for --workers > 1)",
    )
    parser.add_argument("--max-shards", type=int, default=env("WAL_MAX_SHARDS"), help="sharded: most shards")
    parser.add_argument(
        "--nats",
        action="append",
        default=[u for u in env("WAL_NATS", "").split(",") if u],
        metavar="URL",
        help="replicate to this NATS JetStream cluster and answer at REPLICATED (repeat for several URLs)",
    )
    parser.add_argument("--workers", type=int, default=int(env("WEB_CONCURRENCY", "1")))
    parser.add_argument("--host", default=env("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("PORT", "8000")))
    parser.add_argument("--loop", default=env("WAL_LOOP", "auto"), choices=["auto", "asyncio", "uvloop"])
    parser.add_argument(
        "--grace",
        type=float,
        default=float(env("WAL_GRACE", "10")),
        help="seconds a graceful stop waits for the requests in flight before cancelling them",
    )
    args = parser.parse_args(argv)
    if args.workers > 1 and not args.sharded:
        parser.error("several workers cannot share one log: add --sharded")
    options = {
        "host": args.host,
        "port": args.port,
        "loop": args.loop,
        "log_level": "warning",
        "timeout_graceful_shutdown": args.grace,
    }
    if args.workers == 1:
        app = create_app(
            args.dir, args.mode, sharded=args.sharded, max_shards=args.max_shards, nats=args.nats
        )
        uvicorn.run(app, **options)
        return
    # Each worker process imports this module and builds its own app, so the settings go
    # through the environment.
    os.environ.update(WAL_DIR=args.dir, WAL_MODE=args.mode, WAL_SHARDED="1", WAL_NATS=",".join(args.nats))
    if args.max_shards is not None:
        os.environ["WAL_MAX_SHARDS"] = str(args.max_shards)
    uvicorn.run(
        "fastapi_app:app_from_env",
        factory=True,
        workers=args.workers,
        app_dir=os.path.dirname(os.path.abspath(__file__)),
        **options,
    )


if __name__ == "__main__":
    main()
