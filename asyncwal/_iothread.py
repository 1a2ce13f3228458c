"""The log's own executor: one thread that runs the log's file operations in order.

A ``ThreadPoolExecutor(max_workers=1)`` with ``loop.run_in_executor`` does the same job, but
its round trip costs ~20-30 us more on the project machine (measured 40-50 us against 60-80
us for an empty call, uvloop and asyncio alike): it chains a ``concurrent.futures.Future``
to an asyncio one through callbacks. Here the thread takes ``(fn, args, future)`` from a
``SimpleQueue`` and hands the result straight back with ``call_soon_threadsafe``.

Invariant: calls run one at a time, in the order they were submitted; so an fsync covers
everything written by calls submitted before it.
"""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

__all__ = ("IOThread",)

_T = TypeVar("_T")
_Call = tuple["Callable[..., Any]", tuple[Any, ...], "asyncio.Future[Any]"]


def _set_result(fut: asyncio.Future[Any], result: object) -> None:
    if not fut.done():
        fut.set_result(result)


def _set_exception(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


class IOThread:
    """A single worker thread bound to one event loop.

    The thread is a daemon: a process that exits without closing its log is not held up by
    it, and nothing is lost by that that was acknowledged, since acknowledgements only
    follow completed calls.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self._loop = loop
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., _T], *args: Any) -> asyncio.Future[_T]:
        """Run ``fn(*args)`` on the thread after every call submitted before; await the result."""
        fut: asyncio.Future[_T] = self._loop.create_future()
        self._queue.put((fn, args, fut))
        return fut

    def shutdown(self) -> None:
        """Let the thread finish the calls already submitted, then exit. Does not wait."""
        self._queue.put(None)

    def _run(self) -> None:
        get = self._queue.get
        call_soon = self._loop.call_soon_threadsafe
        while True:
            item = get()
            if item is None:
                return
            fn, args, fut = item
            try:
                result = fn(*args)
            except BaseException as exc:
                try:
                    call_soon(_set_exception, fut, exc)
                except RuntimeError:  # the loop is closed: nobody is waiting any more
                    pass
            else:
                try:
                    call_soon(_set_result, fut, result)
                except RuntimeError:
                    pass
