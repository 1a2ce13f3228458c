"""Durability levels as data: how far the log has got at each level, and who waits for what.

A record travels up the levels of :class:`~asyncwal.Durability` in order (``MEMORY`` < ``OS`` <
``DISK`` < ``REPLICATED``). :class:`Levels` keeps, for every level, a *mark* (every seq up to it
has reached the level) and the futures waiting for a seq to reach it. The writer advances ``OS``
and ``DISK`` as groups complete; an external acknowledger (the replication shipper) advances the
level it owns through :meth:`Levels.external`. Nothing in here knows what a level means: adding a
level is adding a member to the enum, plus whoever advances it.

Waiters come in two shapes:

* ``queue[level]``: ``(seq, future)`` pairs of ``append()`` calls, in seq order (seqs are taken in
  call order, so appending keeps the list sorted). A future is resolved with its seq. This is the
  hot path: one list append per record, and one slice per advance.
* ``waits[level]``: :class:`Wait` entries of anything else (``append_batch``, ``wait_for``,
  ``sync``): any seq order, resolved with their own result, few, scanned on each advance.

Invariants: marks never go back; ``mark[level] <= mark[lower level]`` for the levels the engine
advances; every entry in ``queue[level]`` has a seq above ``mark[level]`` (entries at or below it
are resolved by the advance that passed them). A future that its caller cancelled stays cancelled.

The ``MEMORY`` mark is special: records are *accepted* when ``append()`` returns a future, but
the ``MEMORY`` mark is the last seq the writer has *taken*: acknowledgements held back under
load wait for it (see ``Engine.append``).

All of this runs on the event-loop thread.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import deque
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from ._options import Durability

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("ExternalLevel", "Levels", "Wait")

_DISK: Final = Durability.DISK
_LEVELS: Final = tuple(Durability)


class Wait(NamedTuple):
    """A wait other than an append's: resolved with ``result`` once ``seq`` reaches its level."""

    seq: int
    future: asyncio.Future[Any]
    result: Any


#: The most append futures one step wakes (~0.5-2 us each, depending on the event loop); the
#: rest wake on later loop turns, so that thousands of waiters never hold the loop for long.
RESOLVE_CHUNK: Final = 128


def _seq_of(item: tuple[int, asyncio.Future[Any]]) -> int:
    return item[0]


def _resolve(ready: list[tuple[int, asyncio.Future[Any]]], start: int, defer: Callable[..., object]) -> None:
    """Give each future of ``ready[start:]`` its seq, RESOLVE_CHUNK of them now and the rest on
    later loop turns. A future that its caller cancelled (or that timed out) stays so."""
    end = start + RESOLVE_CHUNK
    if end < len(ready):
        defer(_resolve, ready, end, defer)
    for s, f in ready[start:end]:
        try:
            f.set_result(s)
        except asyncio.InvalidStateError:
            pass


class Levels:
    """The progress table: one mark and two kinds of waiters per level.

    :param last_seq: the last seq in the log at open; every level starts there (recovery only
        keeps what is on disk)
    :param on_progress: called after every advance that moved a mark (wakes followers)
    :param defer: ``defer(fn, *args)`` runs ``fn(*args)`` on a later loop turn (the engine's
        ``_later``, which times it as one of its steps): the rest of a large resolution
    """

    __slots__ = ("_defer", "_externals", "_on_progress", "mark", "queue", "waits")

    def __init__(self, last_seq: int, on_progress: Callable[[], None], defer: Callable[..., object]) -> None:
        self.mark: list[int] = [last_seq for _ in _LEVELS]
        self.queue: list[list[tuple[int, asyncio.Future[Any]]]] = [[] for _ in _LEVELS]
        self.waits: list[list[Wait]] = [[] for _ in _LEVELS]
        self._on_progress = on_progress
        self._defer = defer
        self._externals: dict[Durability, ExternalLevel] = {}

    # -- reading ---------------------------------------------------------------------------

    def reached(self, seq: int, level: Durability) -> bool:
        return seq <= self.mark[level]

    def offered(self, level: Durability) -> bool:
        """Whether anyone advances ``level`` (the engine's own levels always; others once
        their acknowledger is attached)."""
        return level <= _DISK or level in self._externals

    def needs_sync(self, upto: int) -> bool:
        """Does anyone wait at ``DISK`` or above for a seq ``<= upto`` that is not durable yet?"""
        durable = self.mark[_DISK]
        for level in _LEVELS[_DISK:]:
            queue = self.queue[level]
            if queue and queue[-1][0] > durable:
                i = 0 if queue[0][0] > durable else bisect.bisect_right(queue, durable, key=_seq_of)
                if queue[i][0] <= upto:
                    return True
            for w in self.waits[level]:
                if durable < w.seq <= upto:
                    return True
        return False

    # -- registering -----------------------------------------------------------------------

    def wait(self, seq: int, level: Durability, future: asyncio.Future[Any], result: Any) -> None:
        """Resolve ``future`` with ``result`` once ``seq`` reaches ``level`` (at once if it has)."""
        if seq <= self.mark[level]:
            future.set_result(result)
            return
        self.waits[level].append(Wait(seq, future, result))
        external = self._externals.get(level)
        if external is not None:
            external.started(seq, future)

    # -- advancing -------------------------------------------------------------------------

    def advance(self, level: Durability, seq: int) -> None:
        """Every seq up to ``seq`` has reached ``level``: resolve whoever waited for that."""
        if seq <= self.mark[level]:
            return
        self.mark[level] = seq
        queue = self.queue[level]
        if queue:
            if queue[-1][0] <= seq:
                ready = queue
                self.queue[level] = []
            else:
                i = bisect.bisect_right(queue, seq, key=_seq_of)
                ready = queue[:i]
                del queue[:i]
            _resolve(ready, 0, self._defer)
        waits = self.waits[level]
        if waits:
            keep = []
            for w in waits:
                if w.future.done():
                    continue
                if w.seq <= seq:
                    w.future.set_result(w.result)
                else:
                    keep.append(w)
            self.waits[level] = keep
        self._on_progress()

    def futures(self) -> list[asyncio.Future[Any]]:
        """Every future still waiting at any level (to fail them all); the table is emptied."""
        out: list[asyncio.Future[Any]] = []
        for level in _LEVELS:
            out += (f for _, f in self.queue[level])
            out += (w.future for w in self.waits[level])
            self.queue[level] = []
            self.waits[level] = []
        for external in self._externals.values():
            external.stop()
        return out

    # -- external acknowledgers ------------------------------------------------------------

    def external(
        self,
        level: Durability,
        loop: asyncio.AbstractEventLoop,
        timeout: float,
        timeout_error: Callable[[int], BaseException],
        start: int,
    ) -> ExternalLevel:
        """Let an acknowledger outside the writer advance ``level`` (above ``DISK``).

        :param timeout: seconds a wait at ``level`` may last; then its future fails with
            ``timeout_error(seq)`` (the record itself stays where it is)
        :param start: the level's mark to begin with (the table starts every level at the
            log's last seq at open, which an external level has not necessarily reached)
        :raises ValueError: ``level`` is one of the engine's own, or is taken
        """
        if level <= _DISK or level in self._externals:
            raise ValueError(f"{level.name} cannot be advanced from outside the writer")
        self.mark[level] = start
        handle = ExternalLevel(self, level, loop, timeout, timeout_error)
        self._externals[level] = handle
        return handle

    def started(self, level: Durability, seq: int, future: asyncio.Future[Any]) -> None:
        """An append registered ``future`` in ``queue[level]`` of an external level: start its clock."""
        self._externals[level].started(seq, future)

    def detach(self, level: Durability, error: Callable[[int], BaseException]) -> None:
        """The acknowledger of ``level`` stopped for good: the level is no longer offered and
        every wait at it fails now with ``error(seq)`` (its mark stays where it got to)."""
        handle = self._externals.pop(level, None)
        if handle is None:
            return
        handle.stop()
        waiting = [(s, f) for s, f in self.queue[level]] + [(w.seq, w.future) for w in self.waits[level]]
        self.queue[level] = []
        self.waits[level] = []
        for seq, fut in waiting:
            if not fut.done():
                fut.set_exception(error(seq))
                fut.exception()  # retrieved: a caller that stopped waiting gets no warning


class ExternalLevel:
    """The handle of an acknowledger that owns a level: it calls :meth:`advance`.

    Every wait at the level (an append's or ``wait_for``'s) is bounded: a future still
    unresolved ``timeout`` seconds after it started fails with ``timeout_error(seq)``. One timer
    serves all of them: waits start in time order, so the oldest is first in ``_clock``, and
    resolved ones are dropped from its head as the level advances.
    """

    __slots__ = ("_clock", "_levels", "_loop", "_timeout", "_timeout_error", "_timer", "level")

    def __init__(
        self,
        levels: Levels,
        level: Durability,
        loop: asyncio.AbstractEventLoop,
        timeout: float,
        timeout_error: Callable[[int], BaseException],
    ) -> None:
        self._levels = levels
        self.level = level
        self._loop = loop
        self._timeout = timeout
        self._timeout_error = timeout_error
        # (deadline, seq, future), oldest first
        self._clock: deque[tuple[float, int, asyncio.Future[Any]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def seq(self) -> int:
        """Every seq up to this one has reached the level."""
        return self._levels.mark[self.level]

    def advance(self, seq: int) -> None:
        """Every seq up to ``seq`` has reached the level. Call on the loop thread only.

        :raises ValueError: ``seq`` is above the mark of the level below (a record cannot be
            replicated before it is durable)
        """
        below = self._levels.mark[self.level - 1]
        if seq > below:
            raise ValueError(
                f"seq {seq} cannot reach {self.level.name} before {Durability(self.level - 1).name} ({below})"
            )
        self._levels.advance(self.level, seq)
        clock = self._clock
        while clock and clock[0][2].done():
            clock.popleft()

    def started(self, seq: int, future: asyncio.Future[Any]) -> None:
        """A wait for ``seq`` at this level began: start its clock."""
        self._clock.append((self._loop.time() + self._timeout, seq, future))
        if self._timer is None:
            self._timer = self._loop.call_at(self._clock[0][0], self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = self._loop.time()
        clock = self._clock
        while clock and (clock[0][0] <= now or clock[0][2].done()):
            _, seq, fut = clock.popleft()
            if not fut.done():
                fut.set_exception(self._timeout_error(seq))
                fut.exception()  # retrieved: a caller that stopped waiting gets no warning
        if clock:
            self._timer = self._loop.call_at(clock[0][0], self._expire)

    def detach(self, error: Callable[[int], BaseException]) -> None:
        """Give the level up (see :meth:`Levels.detach`); waits at it fail with ``error(seq)``."""
        self._levels.detach(self.level, error)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._clock.clear()
