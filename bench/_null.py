"""``null``: the harness's own ceiling. ``append`` returns a future that is already resolved,
so a worker's loop is only the harness (two clock reads, one latency store) plus the
creation and await of one future. No subject that returns a future can beat it on this
machine; it is not part of ``all`` (select it with ``--subjects null``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ._harness import AsyncSubject

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ("NullSubject",)


class NullSubject(AsyncSubject):
    async def open(self) -> Callable[[bytes], Awaitable[object]]:
        loop = asyncio.get_running_loop()

        def append(data: bytes) -> asyncio.Future[None]:
            fut: asyncio.Future[None] = loop.create_future()
            fut.set_result(None)
            return fut

        return append

    async def close(self) -> None:
        pass
