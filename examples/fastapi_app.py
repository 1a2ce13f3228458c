"""An append-only event service: FastAPI + asyncwal.

    POST /events                 the request body (any bytes) is one record.
                                 201 {"seq": N, "durability": "DISK"} once the record has
                                 reached the level of --mode (sync: DISK, batch: OS, none: MEMORY)
    GET  /events?start=1&limit=1000
                                 {"records": [{"seq": N, "data": "<base64>"}, ...], "next": N}:
                                 records that have reached at least OS, in seq order
    GET  /health                 {"status": "ok", "mode": ..., "last_seq": ..., "durable_seq": ...}

Run it::

    python examples/fastapi_app.py --dir data/wal --mode sync --port 8000
    curl -X POST --data-binary 'order 17 accepted' http://127.0.0.1:8000/events

Every flag also reads an environment variable (WAL_DIR, WAL_MODE, PORT, HOST, WAL_LOOP,
WAL_GRACE). SIGTERM or Ctrl-C stops it gracefully: uvicorn stops accepting, finishes the
requests in flight (for up to --grace seconds), then the lifespan closes the log, which
writes and fsyncs everything accepted, in every mode.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated

import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

import asyncwal
from asyncwal.integrations.fastapi import WalDep, WalState, wal_lifespan

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

MODE_LEVEL = {"sync": "DISK", "batch": "OS", "none": "MEMORY"}


class Appended(BaseModel):
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
    first_seq: int
    last_seq: int
    durable_seq: int
    recovery: str | None  # what recovery cut at startup, if anything


def create_app(path: str, mode: str = "sync") -> FastAPI:
    wal = wal_lifespan(path, sync_mode=mode)

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

    @app.post("/events", status_code=201)
    async def append_event(request: Request, log: WalDep) -> Appended:
        seq = await log.append(await request.body())
        return Appended(seq=seq, durability=MODE_LEVEL[log.sync_mode])

    @app.get("/events")
    async def read_events(
        log: WalDep,
        start: Annotated[int, Query(ge=1)] = 1,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> Page:
        items: list[Item] = []
        nxt = max(start, log.first_seq)
        async for rec in log.replay(start):
            items.append(Item(seq=rec.seq, data=base64.b64encode(rec.data).decode()))
            nxt = rec.seq + 1
            if len(items) == limit:
                break
        return Page(records=items, next=nxt)

    @app.get("/health")
    async def health(log: WalDep) -> Health:
        report = log.recovery_report
        return Health(
            status="ok",
            mode=log.sync_mode,
            first_seq=log.first_seq,
            last_seq=log.last_seq,
            durable_seq=log.durable_seq,
            recovery=None if report is None else repr(report),
        )

    return app


def main(argv: list[str] | None = None) -> None:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", default=env("WAL_DIR", "data/wal"), help="log directory")
    parser.add_argument("--mode", default=env("WAL_MODE", "sync"), choices=sorted(MODE_LEVEL))
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
    app = create_app(args.dir, args.mode)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop=args.loop,
        log_level="warning",
        timeout_graceful_shutdown=args.grace,
    )


if __name__ == "__main__":
    main()
