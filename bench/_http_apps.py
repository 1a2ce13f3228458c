"""The applications ``python -m bench http`` serves: one POST endpoint per store, written as a
user writes it, under FastAPI (served by uvicorn) and aiohttp.

Each server process serves one store, chosen by the environment (so that ``uvicorn
--workers N --factory`` can build the app in every worker):

* ``BENCH_HTTP_STORE``: ``nothing`` (reads the body, stores nothing), ``asyncwal-dep`` (takes
  the log through the dependency, reads the body, stores nothing), ``asyncwal-sync``,
  ``asyncwal-batch``, ``asyncwal-none``, ``sqlite`` (aiosqlite, one shared connection, WAL
  journal, ``synchronous=FULL``), ``redis`` (``redis.asyncio``, RPUSH to a redis-server with
  ``appendfsync always``);
* ``BENCH_HTTP_DIR``: where the store keeps its files; ``BENCH_HTTP_REDIS_PORT``;
* ``BENCH_HTTP_SHARDED``: ``1`` for a sharded log (several workers).

``POST /e`` stores the request body and answers ``{"seq": N}`` once it is stored (asyncwal:
at the mode's level). Every store is reached through an ``async`` dependency (FastAPI) or
the application's state (aiohttp), the way each library's documentation shows.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations, and
# they name objects imported inside the factory, so they must be evaluated where written.
import json
import os
import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import aiosqlite
    import redis.asyncio
    from aiohttp import web
    from fastapi import FastAPI

    import asyncwal

__all__ = ("STORES", "aiohttp_app", "fastapi_app")

STORES = ("nothing", "asyncwal-dep", "asyncwal-sync", "asyncwal-batch", "asyncwal-none", "sqlite", "redis")


def _store() -> str:
    store = os.environ.get("BENCH_HTTP_STORE", "nothing")
    if store not in STORES:
        raise ValueError(f"BENCH_HTTP_STORE must be one of {', '.join(STORES)}, not {store!r}")
    return store


def _wal_options() -> tuple[str, bool, dict[str, Any]]:
    """Where the log goes, whether it is sharded, and its sync mode."""
    mode = _store().removeprefix("asyncwal-").replace("dep", "sync")
    directory = os.path.join(os.environ["BENCH_HTTP_DIR"], "wal")
    return directory, os.environ.get("BENCH_HTTP_SHARDED") == "1", {"sync_mode": mode}


async def _open_sqlite() -> "aiosqlite.Connection":
    import aiosqlite

    db = await aiosqlite.connect(os.path.join(os.environ["BENCH_HTTP_DIR"], "bench.sqlite"))
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=FULL")
    await db.execute("CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    await db.commit()
    return db


def _open_redis() -> "redis.asyncio.Redis":
    import redis.asyncio

    port = int(os.environ["BENCH_HTTP_REDIS_PORT"])
    return redis.asyncio.Redis(host="127.0.0.1", port=port, max_connections=256)


def _save_stats(log: "asyncwal.Log") -> None:
    """Write the log's group-commit figures (warm-up included) for the benchmark's report."""
    st = log.stats()
    figures = {
        "appends": st.appends, "fsyncs": st.fsyncs, "mean_group_size": st.mean_group_size,
        "fsync_p50_s": st.fsync_p50, "fsync_p99_s": st.fsync_p99,
    }  # fmt: skip
    path = os.path.join(os.environ["BENCH_HTTP_DIR"], f"stats-{os.getpid()}.json")
    with open(path, "w") as f:
        json.dump(figures, f)


# -- FastAPI -----------------------------------------------------------------------------------


def fastapi_app() -> "FastAPI":
    """The FastAPI application for ``BENCH_HTTP_STORE`` (``uvicorn --factory``)."""
    from fastapi import Depends, FastAPI, Request

    store = _store()
    if store.startswith("asyncwal-"):
        from asyncwal.integrations.fastapi import WalDep, WalState, wal_lifespan

        directory, sharded, options = _wal_options()
        wal = wal_lifespan(directory, sharded=sharded, **options)

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> "AsyncIterator[WalState]":
            async with wal(app) as state:
                yield state
            _save_stats(state["wal"])

        app = FastAPI(lifespan=lifespan)

        if store == "asyncwal-dep":

            @app.post("/e")
            async def dependency_only(request: Request, log: WalDep) -> dict[str, int]:
                await request.body()
                return {"seq": 0}

        else:

            @app.post("/e")
            async def append(request: Request, log: WalDep) -> dict[str, int]:
                return {"seq": await log.append(await request.body())}

        return app

    if store == "nothing":
        app = FastAPI()

        @app.post("/e")
        async def nothing(request: Request) -> dict[str, int]:
            await request.body()
            return {"seq": 0}

        return app

    if store == "sqlite":
        import aiosqlite

        @asynccontextmanager
        async def sqlite_lifespan(app: FastAPI) -> "AsyncIterator[dict[str, Any]]":
            db = await _open_sqlite()
            try:
                yield {"db": db}
            finally:
                await db.close()

        async def get_db(request: Request) -> aiosqlite.Connection:
            db: aiosqlite.Connection = request.state.db
            return db

        app = FastAPI(lifespan=sqlite_lifespan)

        @app.post("/e")
        async def insert(
            request: Request, db: Annotated[aiosqlite.Connection, Depends(get_db)]
        ) -> dict[str, int]:
            cursor = await db.execute("INSERT INTO log (data) VALUES (?)", (await request.body(),))
            await db.commit()
            return {"seq": cursor.lastrowid or 0}

        return app

    import redis.asyncio

    @asynccontextmanager
    async def redis_lifespan(app: FastAPI) -> "AsyncIterator[dict[str, Any]]":
        client = _open_redis()
        try:
            yield {"redis": client}
        finally:
            await client.aclose()

    async def get_redis(request: Request) -> redis.asyncio.Redis:
        client: redis.asyncio.Redis = request.state.redis
        return client

    app = FastAPI(lifespan=redis_lifespan)

    @app.post("/e")
    async def rpush(
        request: Request, client: Annotated[redis.asyncio.Redis, Depends(get_redis)]
    ) -> dict[str, int]:
        return {"seq": await client.rpush("log", await request.body())}

    return app


# -- aiohttp -----------------------------------------------------------------------------------


def aiohttp_app() -> "web.Application":
    """The aiohttp application for ``BENCH_HTTP_STORE``."""
    from aiohttp import web

    app = web.Application()
    store = _store()
    if store.startswith("asyncwal-"):
        from asyncwal.integrations.aiohttp import WAL_KEY, wal_cleanup_ctx

        directory, sharded, options = _wal_options()

        async def report(app: web.Application) -> "AsyncIterator[None]":
            yield
            _save_stats(app[WAL_KEY])  # cleanup contexts exit in reverse: the log is closed

        app.cleanup_ctx.append(report)
        app.cleanup_ctx.append(wal_cleanup_ctx(directory, sharded=sharded, **options))

        async def append(request: web.Request) -> web.Response:
            return web.json_response({"seq": await request.app[WAL_KEY].append(await request.read())})

        async def lookup_only(request: web.Request) -> web.Response:
            request.app[WAL_KEY]
            await request.read()
            return web.json_response({"seq": 0})

        app.router.add_post("/e", lookup_only if store == "asyncwal-dep" else append)
    elif store == "nothing":

        async def nothing(request: web.Request) -> web.Response:
            await request.read()
            return web.json_response({"seq": 0})

        app.router.add_post("/e", nothing)
    elif store == "sqlite":
        import aiosqlite

        db_key = web.AppKey("db", aiosqlite.Connection)

        async def sqlite_ctx(app: web.Application) -> "AsyncIterator[None]":
            app[db_key] = await _open_sqlite()
            yield
            await app[db_key].close()

        async def insert(request: web.Request) -> web.Response:
            db = request.app[db_key]
            cursor = await db.execute("INSERT INTO log (data) VALUES (?)", (await request.read(),))
            await db.commit()
            return web.json_response({"seq": cursor.lastrowid or 0})

        app.cleanup_ctx.append(sqlite_ctx)
        app.router.add_post("/e", insert)
    else:
        import redis.asyncio

        redis_key = web.AppKey("redis", redis.asyncio.Redis)

        async def redis_ctx(app: web.Application) -> "AsyncIterator[None]":
            app[redis_key] = _open_redis()
            yield
            await app[redis_key].aclose()

        async def rpush(request: web.Request) -> web.Response:
            return web.json_response({"seq": await request.app[redis_key].rpush("log", await request.read())})

        app.cleanup_ctx.append(redis_ctx)
        app.router.add_post("/e", rpush)
    return app


def main(argv: list[str]) -> None:
    """``python -m bench._http_apps PORT``: serve :func:`aiohttp_app` on 127.0.0.1 with uvloop
    (uvicorn serves the FastAPI app itself, with ``--factory``)."""
    import uvloop
    from aiohttp import web

    web.run_app(
        aiohttp_app(),
        host="127.0.0.1",
        port=int(argv[0]),
        loop=uvloop.new_event_loop(),
        access_log=None,
        print=None,
        shutdown_timeout=5,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
