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

Needs the ``aiohttp`` extra: ``pip install 'asyncwal[aiohttp]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

try:
    from aiohttp import web
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError("asyncwal.integrations.aiohttp needs aiohttp: pip install 'asyncwal[aiohttp]'") from exc

import asyncwal
from asyncwal import Log, Options

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncIterator, Callable

__all__ = ("WAL_KEY", "wal_cleanup_ctx")

#: Where :func:`wal_cleanup_ctx` puts the log: ``request.app[WAL_KEY]``.
WAL_KEY: Final[web.AppKey[Log]] = web.AppKey("asyncwal.wal", Log)


def wal_cleanup_ctx(
    path: str | os.PathLike[str], *, key: web.AppKey[Log] = WAL_KEY, **options: Any
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` generator (``app.cleanup_ctx.append(...)``) that opens the log in
    ``path`` at startup, stores it as ``app[key]``, and closes it at cleanup.

    :param path: the log directory
    :param key: the ``AppKey`` to store the log under; give your own for a second log
    :param options: keyword options of :func:`asyncwal.open` (``sync_mode``, ...); they are
        checked here, so a typo fails when the application is built, not at startup
    :raises TypeError, ValueError: an unknown or invalid option
    """
    Options(**options)  # validate now

    async def wal_ctx(app: web.Application) -> AsyncIterator[None]:
        async with asyncwal.open(path, **options) as log:
            app[key] = log
            yield

    return wal_ctx
