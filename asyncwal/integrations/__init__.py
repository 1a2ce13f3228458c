"""Helpers that tie a :class:`~asyncwal.Log` to a web framework's application lifetime.

Each lives in its own module, behind an optional extra, and ``import asyncwal`` never
imports any of them:

* :mod:`asyncwal.integrations.fastapi` (``pip install 'asyncwal[fastapi]'``): a lifespan for
  FastAPI and Starlette, and a dependency.
* :mod:`asyncwal.integrations.aiohttp` (``pip install 'asyncwal[aiohttp]'``): a
  ``cleanup_ctx`` for aiohttp, and an ``AppKey``.

Both open the log when the application starts (recovery runs before the first request) and
close it when the application stops: ``close()`` writes and fsyncs every record accepted, in
every sync mode. See docs/integrations.md.
"""
