"""aiohttp: a ``cleanup_ctx`` that owns a :class:`~asyncwal.Log`, and the ``AppKey`` to find it.

::

    from aiohttp import web
    from asyncwal.integrations.aiohttp import WAL_KEY, wal_cleanup_ctx

    async def post_event(request: web.Request) -> web.Response:
        seq = await request.app[WAL_KEY].append(await request.read())
        return web.json_response({"seq": seq})

    app = web.Application()
    app.cleanup_ctx.append(wal_cleanup_ctx("data/wal", sync_mode="sync"))
    app.router.add_post("/events", post_event)

The log is opened at startup (recovery runs before the server accepts a request) and closed
at cleanup, which aiohttp runs after the server has stopped accepting and has waited for
in-flight handlers: ``close()`` writes and fsyncs every accepted record in every sync mode,
so a graceful stop (SIGTERM under ``web.run_app``) loses nothing.

With ``wal_cleanup_ctx(path, sharded=True)`` every worker process (aiohttp behind gunicorn,
``-k aiohttp.GunicornWebWorker``) claims its own shard of one sharded log: ``app[WAL_KEY]``
is then the worker's shard's log, and ``app[SHARDED_WAL_KEY]`` the
:class:`~asyncwal.ShardedLog`, which tells the shard.

Needs the ``aiohttp`` extra: ``pip install 'asyncwal[aiohttp]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

try:
    from aiohttp import web
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError("asyncwal.integrations.aiohttp needs aiohttp: pip install 'asyncwal[aiohttp]'") from exc

import asyncwal
from asyncwal import Log, ShardedLog

from . import _check_open_args

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncIterator, Callable

__all__ = ("SHARDED_WAL_KEY", "WAL_KEY", "wal_cleanup_ctx")

#: Where :func:`wal_cleanup_ctx` puts the log (sharded mode: this worker's shard's log):
#: ``request.app[WAL_KEY]``.
WAL_KEY: Final[web.AppKey[Log]] = web.AppKey("asyncwal.wal", Log)
#: Sharded mode: where :func:`wal_cleanup_ctx` puts this worker's :class:`~asyncwal.ShardedLog`.
SHARDED_WAL_KEY: Final[web.AppKey[ShardedLog]] = web.AppKey("asyncwal.sharded_wal", ShardedLog)


def wal_cleanup_ctx(
    path: str | os.PathLike[str],
    *,
    key: web.AppKey[Log] = WAL_KEY,
    sharded: bool = False,
    max_shards: int | None = None,
    sharded_key: web.AppKey[ShardedLog] = SHARDED_WAL_KEY,
    **options: Any,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` generator (``app.cleanup_ctx.append(...)``) that opens the log in
    ``path`` at startup, stores it as ``app[key]``, and closes it at cleanup.

    :param path: the log directory; with ``sharded=True``, the sharded log directory
    :param key: the ``AppKey`` to store the log under; give your own for a second log
    :param sharded: open a shard of a sharded log (:func:`asyncwal.open_sharded`), one per
        worker process, instead of the log itself: the choice behind gunicorn. ``app[key]``
        is then the shard's log and ``app[sharded_key]`` the :class:`~asyncwal.ShardedLog`
    :param max_shards: sharded mode: the most shards (so worker processes at once) allowed
    :param sharded_key: sharded mode: the ``AppKey`` of the :class:`~asyncwal.ShardedLog`
    :param options: keyword options of :func:`asyncwal.open` (``sync_mode``, ...); they are
        checked here, so a typo fails when the application is built, not at startup
    :raises TypeError, ValueError: an unknown or invalid option
    """
    shards = _check_open_args(sharded, max_shards, options)

    async def wal_ctx(app: web.Application) -> AsyncIterator[None]:
        if sharded:
            async with asyncwal.open_sharded(path, max_shards=shards, **options) as sharded_log:
                app[key] = sharded_log.log
                app[sharded_key] = sharded_log
                yield
        else:
            async with asyncwal.open(path, **options) as log:
                app[key] = log
                yield

    return wal_ctx
