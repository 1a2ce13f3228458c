"""FastAPI and Starlette: a lifespan that owns a :class:`~asyncwal.Log`, and a dependency.

::

    from fastapi import FastAPI
    from asyncwal.integrations.fastapi import WalDep, wal_lifespan

    app = FastAPI(lifespan=wal_lifespan("data/wal", sync_mode="sync"))

    @app.post("/events")
    async def post_event(log: WalDep) -> dict[str, int]:
        return {"seq": await log.append(b"...")}

The log is opened at startup (recovery runs before the server accepts a request), handed to
requests as lifespan state (``request.state.wal``), and closed at shutdown, after the server
has finished its in-flight requests: ``close()`` writes and fsyncs every accepted record in
every sync mode, so a graceful stop (SIGTERM) loses nothing.

With ``wal_lifespan(path, sharded=True)`` every worker process (``uvicorn --workers N``,
gunicorn) claims its own shard of one sharded log; ``WalDep`` is then the worker's shard's
log, and :data:`ShardedWalDep` the :class:`~asyncwal.ShardedLog`, which tells the shard.

The dependencies are ``async`` functions on purpose: FastAPI runs a plain ``def``
dependency in its thread pool, and that hand-off to a thread and back cost a request more
than the append itself (an endpoint that only took the log was about 40% slower than one
that did nothing). The plain functions :func:`get_wal` and :func:`get_sharded_wal` are the
same lookups, for Starlette code that is not a FastAPI dependency.

Needs the ``fastapi`` extra: ``pip install 'asyncwal[fastapi]'``. The lifespan and the
``get_*`` functions also serve a plain Starlette application.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, Final, NotRequired, TypedDict

try:
    from fastapi import Depends

    # A run-time import: FastAPI reads the dependencies' annotations to inject the connection.
    from starlette.requests import HTTPConnection  # noqa: TC002
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError("asyncwal.integrations.fastapi needs FastAPI: pip install 'asyncwal[fastapi]'") from exc

import asyncwal
from asyncwal import Log, ShardedLog

from . import _check_open_args

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncIterator, Callable
    from contextlib import AbstractAsyncContextManager

__all__ = (
    "SHARDED_STATE_KEY",
    "STATE_KEY",
    "ShardedWalDep",
    "WalDep",
    "WalState",
    "get_sharded_wal",
    "get_wal",
    "sharded_wal_dependency",
    "wal_dependency",
    "wal_lifespan",
)

#: The lifespan state key the log is stored under (``request.state.wal``).
STATE_KEY: Final = "wal"
#: Sharded mode: the key of the :class:`~asyncwal.ShardedLog` (``request.state.wal_sharded``).
SHARDED_STATE_KEY: Final = "wal_sharded"


class WalState(TypedDict):
    """The lifespan state :func:`wal_lifespan` yields."""

    #: the log; in sharded mode, this worker's shard's log
    wal: Log
    #: sharded mode only: the worker's :class:`~asyncwal.ShardedLog`
    wal_sharded: NotRequired[ShardedLog]


def wal_lifespan(
    path: str | os.PathLike[str], *, sharded: bool = False, max_shards: int | None = None, **options: Any
) -> Callable[[Any], AbstractAsyncContextManager[WalState]]:
    """A lifespan (pass it as ``FastAPI(lifespan=...)`` or ``Starlette(lifespan=...)``) that
    opens the log in ``path`` at startup and closes it at shutdown.

    It yields ``{"wal": log}`` as lifespan state, so requests find the log in
    ``request.state.wal`` (or through :data:`WalDep`). To combine it with a lifespan of your
    own, enter it inside yours: ``async with wal_lifespan(path)(app) as state: yield
    {**state, ...}``.

    :param path: the log directory; with ``sharded=True``, the sharded log directory
    :param sharded: open a shard of a sharded log (:func:`asyncwal.open_sharded`), one per
        worker process, instead of the log itself: the choice for ``uvicorn --workers`` and
        gunicorn. The state then also holds ``"wal_sharded"``, the
        :class:`~asyncwal.ShardedLog`
    :param max_shards: sharded mode: the most shards (so worker processes at once) allowed
    :param options: keyword options of :func:`asyncwal.open` (``sync_mode``, ...); they are
        checked here, so a typo fails when the application is built, not at startup
    :raises TypeError, ValueError: an unknown or invalid option
    """
    shards = _check_open_args(sharded, max_shards, options)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[WalState]:
        if sharded:
            async with asyncwal.open_sharded(path, max_shards=shards, **options) as sharded_log:
                yield {"wal": sharded_log.log, "wal_sharded": sharded_log}
        else:
            async with asyncwal.open(path, **options) as log:
                yield {"wal": log}

    return lifespan


def _missing(what: str) -> RuntimeError:
    return RuntimeError(
        f"no asyncwal {what} in the lifespan state: create the app with lifespan=wal_lifespan(...)"
    )


def get_wal(conn: HTTPConnection) -> Log:
    """The application's log (in sharded mode, this worker's shard's log), from a request or
    a WebSocket: the plain lookup, for Starlette code. In FastAPI use :data:`WalDep`.

    :raises RuntimeError: the application was not started with :func:`wal_lifespan`
    """
    log = conn.scope.get("state", {}).get(STATE_KEY)
    if not isinstance(log, Log):
        raise _missing("log")
    return log


def get_sharded_wal(conn: HTTPConnection) -> ShardedLog:
    """This worker's :class:`~asyncwal.ShardedLog`: the plain lookup, for Starlette code. In
    FastAPI use :data:`ShardedWalDep`.

    :raises RuntimeError: the application was not started with ``wal_lifespan(...,
        sharded=True)``
    """
    sharded = conn.scope.get("state", {}).get(SHARDED_STATE_KEY)
    if not isinstance(sharded, ShardedLog):
        raise _missing("sharded log (sharded=True)")
    return sharded


async def wal_dependency(conn: HTTPConnection) -> Log:
    """:func:`get_wal` as an ``async`` dependency: FastAPI calls it on the event loop, with
    no hop to its thread pool. ``Depends(wal_dependency)`` is :data:`WalDep`."""
    return get_wal(conn)


async def sharded_wal_dependency(conn: HTTPConnection) -> ShardedLog:
    """:func:`get_sharded_wal` as an ``async`` dependency (see :func:`wal_dependency`)."""
    return get_sharded_wal(conn)


#: ``log: WalDep`` in a route's parameters gives the application's log (sharded mode: this
#: worker's shard's log). No thread-pool hop.
WalDep = Annotated[Log, Depends(wal_dependency)]
#: ``sharded: ShardedWalDep`` gives this worker's :class:`~asyncwal.ShardedLog` (sharded mode).
ShardedWalDep = Annotated[ShardedLog, Depends(sharded_wal_dependency)]
