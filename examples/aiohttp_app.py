"""An append-only event service: aiohttp + asyncwal.

    POST /events                 the request body (any bytes) is one record.
                                 201 {"seq": N, "durability": "DISK"} once the record has
                                 reached the level of --mode (sync: DISK, batch: OS, none: MEMORY)
    GET  /events?start=1&limit=1000
                                 {"records": [{"seq": N, "data": "<base64>"}, ...], "next": N}:
                                 records that have reached at least OS, in seq order
                                 (sharded: ?shard=K&start=1&limit=1000, from any worker)
    GET  /health                 {"status": "ok", "mode": ..., "last_seq": ..., "durable_seq": ...}

Run it::

    python examples/aiohttp_app.py --dir data/wal --mode sync --port 8080
    curl -X POST --data-binary 'order 17 accepted' http://127.0.0.1:8080/events

With several worker processes behind gunicorn, each worker appends to its own shard of one
sharded log, and a record is addressed by (shard, seq): POST answers {"shard": K, "seq": N,
...}, and GET /events takes ?shard=K::

    WAL_SHARDED=1 gunicorn -w 4 -k aiohttp.GunicornWebWorker --chdir examples aiohttp_app:runner_from_env

(runner_from_env, not the app: it gives aiohttp's graceful stop its own WAL_GRACE seconds, so
that the worker closes its shard well before gunicorn's --graceful-timeout runs out.)

Every flag also reads an environment variable (WAL_DIR, WAL_MODE, WAL_SHARDED,
WAL_MAX_SHARDS, PORT, HOST, WAL_LOOP, WAL_GRACE); app_from_env() reads the WAL_* ones.
SIGTERM or Ctrl-C stops it gracefully: aiohttp stops accepting, waits up to --grace seconds
for the handlers in flight, then runs the cleanup contexts, which close the log: close()
writes and fsyncs everything accepted, in every mode. (aiohttp stops reading from its
connections when the stop begins, so a request whose body is still on its way then waits for
--grace and fails; it was never acknowledged.)
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from typing import TYPE_CHECKING, Final

from aiohttp import web

import asyncwal
from asyncwal.integrations.aiohttp import SHARDED_WAL_KEY, WAL_KEY, wal_cleanup_ctx

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


async def append_sharded(request: web.Request) -> web.Response:
    wal = request.app[SHARDED_WAL_KEY]
    seq = await wal.append(await request.read())
    level = MODE_LEVEL[wal.log.sync_mode]
    return web.json_response({"shard": wal.shard, "seq": seq, "durability": level}, status=201)


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    try:
        value = int(request.query.get(name, default))
    except ValueError:
        raise web.HTTPUnprocessableEntity(text=f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise web.HTTPUnprocessableEntity(text=f"{name} must be in {lo}..{hi}")
    return value


async def page(records: AsyncIterator[asyncwal.Record], start: int, limit: int) -> web.Response:
    """Up to ``limit`` records, and where the next page starts."""
    items: list[dict[str, object]] = []
    nxt = start
    async for rec in records:
        items.append({"seq": rec.seq, "data": base64.b64encode(rec.data).decode()})
        nxt = rec.seq + 1
        if len(items) == limit:
            break
    return web.json_response({"records": items, "next": nxt})


async def read_events(request: web.Request) -> web.Response:
    log = request.app[WAL_KEY]
    start = _int_param(request, "start", 1, 1, 2**63)
    limit = _int_param(request, "limit", 1000, 1, MAX_LIMIT)
    return await page(log.replay(start), max(start, log.first_seq), limit)


#: Sharded: any worker may be asked for any shard, so it reads the shards' files.
READER_KEY: Final = web.AppKey("reader", asyncwal.ShardedReader)


async def read_shard(request: web.Request) -> web.Response:
    if "shard" not in request.query:
        raise web.HTTPUnprocessableEntity(text="shard is required")
    shard = _int_param(request, "shard", 0, 0, 9999)
    start = _int_param(request, "start", 1, 1, 2**63)
    limit = _int_param(request, "limit", 1000, 1, MAX_LIMIT)
    return await page(request.app[READER_KEY].replay(shard, start), start, limit)


async def health(request: web.Request) -> web.Response:
    log = request.app[WAL_KEY]
    report = log.recovery_report
    sharded = request.app.get(SHARDED_WAL_KEY)
    return web.json_response(
        {
            "status": "ok",
            "mode": log.sync_mode,
            "pid": os.getpid(),
            "shard": None if sharded is None else sharded.shard,
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


def create_app(
    path: str, mode: str = "sync", *, sharded: bool = False, max_shards: int | None = None
) -> web.Application:
    app = web.Application(middlewares=[wal_errors])
    app.cleanup_ctx.append(report_close)
    app.cleanup_ctx.append(wal_cleanup_ctx(path, sharded=sharded, max_shards=max_shards, sync_mode=mode))
    app.router.add_post("/events", append_sharded if sharded else append_event)
    if sharded:
        app[READER_KEY] = asyncwal.ShardedReader(path)
    app.router.add_get("/events", read_shard if sharded else read_events)
    app.router.add_get("/health", health)
    return app


def app_from_env() -> web.Application:
    """The app configured by WAL_DIR, WAL_MODE, WAL_SHARDED and WAL_MAX_SHARDS: the factory
    gunicorn calls in each worker (``gunicorn 'aiohttp_app:app_from_env()'``)."""
    env = os.environ.get
    max_shards = env("WAL_MAX_SHARDS")
    return create_app(
        env("WAL_DIR", "data/wal"),
        env("WAL_MODE", "sync"),
        sharded=env("WAL_SHARDED", "") not in ("", "0"),
        max_shards=int(max_shards) if max_shards else None,
    )


async def runner_from_env() -> web.AppRunner:
    """app_from_env() in a runner whose graceful stop waits WAL_GRACE seconds (default 10) for
    the handlers in flight: the entry point for gunicorn (``aiohttp_app:runner_from_env``).

    Given an app, aiohttp's gunicorn worker waits 95% of gunicorn's --graceful-timeout for
    them, and gunicorn kills the worker when that timeout ends, so closing the log gets the
    last 5%. Keep WAL_GRACE a few seconds below --graceful-timeout (default 30)."""
    grace = float(os.environ.get("WAL_GRACE", "10"))
    return web.AppRunner(app_from_env(), shutdown_timeout=grace, access_log=None)


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
        help="open a shard of a sharded log (as each gunicorn worker does)",
    )
    parser.add_argument("--max-shards", type=int, default=env("WAL_MAX_SHARDS"), help="sharded: most shards")
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
        create_app(args.dir, args.mode, sharded=args.sharded, max_shards=args.max_shards),
        host=args.host,
        port=args.port,
        loop=loop,
        shutdown_timeout=args.grace,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
