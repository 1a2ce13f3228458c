"""Helpers that tie a :class:`~asyncwal.Log` to a web framework's application lifetime.

Each lives in its own module, behind an optional extra, and ``import asyncwal`` never
imports any of them:

* :mod:`asyncwal.integrations.fastapi` (``pip install 'asyncwal[fastapi]'``): a lifespan for
  FastAPI and Starlette, and a dependency.
* :mod:`asyncwal.integrations.aiohttp` (``pip install 'asyncwal[aiohttp]'``): a
  ``cleanup_ctx`` for aiohttp, and an ``AppKey``.

Both open the log when the application starts (recovery runs before the first request) and
close it when the application stops: ``close()`` writes and fsyncs every record accepted, in
every sync mode. With ``sharded=True`` each worker process of a multi-worker server
(``uvicorn --workers``, gunicorn) opens its own shard of one sharded log
(:func:`asyncwal.open_sharded`) instead. See docs/integrations.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ()


def _check_open_args(sharded: object, max_shards: object, options: dict[str, Any]) -> int:
    """Check a helper's arguments when the application is built, so a typo fails then and
    not at startup. :return: the ``max_shards`` to open with (sharded mode only).

    :raises TypeError, ValueError: an unknown or invalid option, or ``max_shards`` without
        ``sharded=True``
    """
    from asyncwal import Options
    from asyncwal._sharded import DEFAULT_MAX_SHARDS, check_max_shards

    if not isinstance(sharded, bool):
        raise TypeError(f"sharded must be a bool, not {type(sharded).__name__}")
    if max_shards is not None and not sharded:
        raise ValueError("max_shards only applies with sharded=True")
    Options(**options)
    return check_max_shards(DEFAULT_MAX_SHARDS if max_shards is None else max_shards)
