"""What an asyncio user writes by hand today to make each append durable.

* ``tothread``: an ``asyncio.Lock`` held around ``await asyncio.to_thread(write + fsync)``:
  one thread hand-off and one fsync per append, appends in order, none interleaved.
* ``aiofiles``: the same lock around ``await f.write()``, ``await f.flush()`` and
  ``await aiofiles.os.wrap(os.fsync)(f.fileno())``: three thread hand-offs per append.

The lock is what a careful user adds: without it concurrent appends interleave their
hand-offs and no caller knows which fsync covered its record. Both count fsyncs exactly.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

from ._harness import AsyncSubject, Counters

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ("AiofilesSubject", "ToThreadSubject")


class ToThreadSubject(AsyncSubject):
    fd = -1
    fsyncs = 0

    def _write_fsync(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        os.fsync(self.fd)
        self.fsyncs += 1

    async def open(self) -> Callable[[bytes], Awaitable[object]]:
        self.fd = os.open(self.workdir / "tothread.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        lock = asyncio.Lock()
        write_fsync = self._write_fsync

        async def append(data: bytes) -> None:
            async with lock:
                await asyncio.to_thread(write_fsync, data)

        return append

    def counters(self) -> Counters:
        return Counters(records=self.fsyncs, fsyncs=self.fsyncs)

    async def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class AiofilesSubject(AsyncSubject):
    fsyncs = 0
    file: Any = None

    async def open(self) -> Callable[[bytes], Awaitable[object]]:
        import aiofiles
        import aiofiles.os

        f = await aiofiles.open(self.workdir / "aiofiles.log", "ab")
        self.file = f
        fsync = aiofiles.os.wrap(os.fsync)
        lock = asyncio.Lock()
        fileno = f.fileno()

        async def append(data: bytes) -> None:
            async with lock:
                await f.write(data)
                await f.flush()
                await fsync(fileno)
                self.fsyncs += 1

        return append

    def counters(self) -> Counters:
        return Counters(records=self.fsyncs, fsyncs=self.fsyncs)

    async def close(self) -> None:
        if self.file is not None:
            await self.file.close()
            self.file = None
