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

Needs the ``fastapi`` extra: ``pip install 'asyncwal[fastapi]'``. The lifespan and
:func:`get_wal` also serve a plain Starlette application.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, Final, TypedDict

try:
    from fastapi import Depends

    # A run-time import: FastAPI reads get_wal's annotations to inject the connection.
    from starlette.requests import HTTPConnection  # noqa: TC002
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError("asyncwal.integrations.fastapi needs FastAPI: pip install 'asyncwal[fastapi]'") from exc

import asyncwal
from asyncwal import Log, Options

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncIterator, Callable
    from contextlib import AbstractAsyncContextManager

__all__ = ("STATE_KEY", "WalDep", "WalState", "get_wal", "wal_lifespan")

#: The lifespan state key the log is stored under (``request.state.wal``).
STATE_KEY: Final = "wal"


class WalState(TypedDict):
    """The lifespan state :func:`wal_lifespan` yields."""

    wal: Log


def wal_lifespan(
    path: str | os.PathLike[str], **options: Any
) -> Callable[[Any], AbstractAsyncContextManager[WalState]]:
    """A lifespan (pass it as ``FastAPI(lifespan=...)`` or ``Starlette(lifespan=...)``) that
    opens the log in ``path`` at startup and closes it at shutdown.

    It yields ``{"wal": log}`` as lifespan state, so requests find the log in
    ``request.state.wal`` (or through :func:`get_wal`). To combine it with a lifespan of your
    own, enter it inside yours: ``async with wal_lifespan(path)(app) as state: yield
    {**state, ...}``.

    :param path: the log directory
    :param options: keyword options of :func:`asyncwal.open` (``sync_mode``, ...); they are
        checked here, so a typo fails when the application is built, not at startup
    :raises TypeError, ValueError: an unknown or invalid option
    """
    Options(**options)  # validate now

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[WalState]:
        async with asyncwal.open(path, **options) as log:
            yield {"wal": log}

    return lifespan


def get_wal(conn: HTTPConnection) -> Log:
    """The application's log, for ``Depends(get_wal)``; works for HTTP and WebSocket routes.

    :raises RuntimeError: the application was not started with :func:`wal_lifespan`
    """
    log = conn.scope.get("state", {}).get(STATE_KEY)
    if not isinstance(log, Log):
        raise RuntimeError(
            "no asyncwal log in the lifespan state: create the app with lifespan=wal_lifespan(...)"
        )
    return log


#: ``log: WalDep`` in a route's parameters gives the application's log.
WalDep = Annotated[Log, Depends(get_wal)]
