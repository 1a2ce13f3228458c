"""An append-only event service: aiohttp + asyncwal.

    POST /events                 the request body (any bytes) is one record.
                                 201 {"seq": N, "durability": "DISK"} once the record has
                                 reached the level of --mode (sync: DISK, batch: OS, none: MEMORY)
    GET  /events?start=1&limit=1000
                                 {"records": [{"seq": N, "data": "<base64>"}, ...], "next": N}:
                                 records that have reached at least OS, in seq order
    GET  /health                 {"status": "ok", "mode": ..., "last_seq": ..., "durable_seq": ...}

Run it::

    python examples/aiohttp_app.py --dir data/wal --mode sync --port 8080
    curl -X POST --data-binary 'order 17 accepted' http://127.0.0.1:8080/events

Every flag also reads an environment variable (WAL_DIR, WAL_MODE, PORT, HOST, WAL_LOOP,
WAL_GRACE). SIGTERM or Ctrl-C stops it gracefully: aiohttp stops accepting, waits up to
--grace seconds for the handlers in flight, then runs the cleanup contexts, which close the
log: close() writes and fsyncs everything accepted, in every mode. (aiohttp stops reading
from its connections when the stop begins, so a request whose body is still on its way then
waits for --grace and fails; it was never acknowledged.)
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from typing import TYPE_CHECKING

from aiohttp import web

import asyncwal
from asyncwal.integrations.aiohttp import WAL_KEY, wal_cleanup_ctx

if TYPE_CHECKING:
    import asyncio
    from collections.abc import AsyncIterator, Awaitable, Callable

MODE_LEVEL = {"sync": "DISK", "batch": "OS", "none": "MEMORY"}
MAX_LIMIT = 10_000


@web.middleware
async def wal_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except asyncwal.RecordTooLargeError as exc:
        return web.json_response({"detail": str(exc)}, status=413)
    except asyncwal.WALError as exc:  # closed (shutting down) or failed
        return web.json_response({"detail": str(exc)}, status=503)


async def append_event(request: web.Request) -> web.Response:
    log = request.app[WAL_KEY]
    seq = await log.append(await request.read())
    return web.json_response({"seq": seq, "durability": MODE_LEVEL[log.sync_mode]}, status=201)


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    try:
        value = int(request.query.get(name, default))
    except ValueError:
        raise web.HTTPUnprocessableEntity(text=f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise web.HTTPUnprocessableEntity(text=f"{name} must be in {lo}..{hi}")
    return value


async def read_events(request: web.Request) -> web.Response:
    log = request.app[WAL_KEY]
    start = _int_param(request, "start", 1, 1, 2**63)
    limit = _int_param(request, "limit", 1000, 1, MAX_LIMIT)
    items: list[dict[str, object]] = []
    nxt = max(start, log.first_seq)
    async for rec in log.replay(start):
        items.append({"seq": rec.seq, "data": base64.b64encode(rec.data).decode()})
        nxt = rec.seq + 1
        if len(items) == limit:
            break
    return web.json_response({"records": items, "next": nxt})


async def health(request: web.Request) -> web.Response:
    log = request.app[WAL_KEY]
    report = log.recovery_report
    return web.json_response(
        {
            "status": "ok",
            "mode": log.sync_mode,
            "first_seq": log.first_seq,
            "last_seq": log.last_seq,
            "durable_seq": log.durable_seq,
            "recovery": None if report is None else repr(report),
        }
    )


async def report_close(app: web.Application) -> AsyncIterator[None]:
    """Cleanup contexts exit in reverse order: this one, added first, runs after the log closed."""
    yield
    log = app[WAL_KEY]
    print(f"closed {log.path}: last_seq={log.last_seq} durable_seq={log.durable_seq}", file=sys.stderr)


def create_app(path: str, mode: str = "sync") -> web.Application:
    app = web.Application(middlewares=[wal_errors])
    app.cleanup_ctx.append(report_close)
    app.cleanup_ctx.append(wal_cleanup_ctx(path, sync_mode=mode))
    app.router.add_post("/events", append_event)
    app.router.add_get("/events", read_events)
    app.router.add_get("/health", health)
    return app


def main(argv: list[str] | None = None) -> None:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", default=env("WAL_DIR", "data/wal"), help="log directory")
    parser.add_argument("--mode", default=env("WAL_MODE", "sync"), choices=sorted(MODE_LEVEL))
    parser.add_argument("--host", default=env("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("PORT", "8080")))
    parser.add_argument("--loop", default=env("WAL_LOOP", "auto"), choices=["auto", "asyncio", "uvloop"])
    parser.add_argument(
        "--grace",
        type=float,
        default=float(env("WAL_GRACE", "10")),
        help="seconds a graceful stop waits for the requests in flight before cancelling them",
    )
    args = parser.parse_args(argv)
    loop: asyncio.AbstractEventLoop | None = None
    if args.loop != "asyncio":
        try:
            import uvloop

            loop = uvloop.new_event_loop()
        except ImportError:
            if args.loop == "uvloop":
                raise
    web.run_app(
        create_app(args.dir, args.mode),
        host=args.host,
        port=args.port,
        loop=loop,
        shutdown_timeout=args.grace,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
