"""Sharded logs: one log directory for a server that runs several worker processes.

Why it exists: a log has exactly one writer process, the holder of its ``LOCK``. A server
started with ``uvicorn --workers 4`` or ``gunicorn -w 4`` runs four copies of the same
application, and the second copy to open the log got :class:`LogLockedError` (and took the
whole server down with it). A sharded log is a directory of *shards*::

    data/wal/
      shard-0000/   a complete asyncwal log: its own seqs, LOCK, META, segments, recovery
      shard-0001/
      ...

and :func:`open_sharded` gives each process the first shard that no other process holds.

Invariants:

* **The claim is the lock.** A shard is claimed by opening it with :func:`asyncwal.open`,
  which takes its ``LOCK`` (``flock``) before anything else. There is no registry file, no
  worker index and no coordinator: two processes racing for one shard are decided by the
  kernel, and the loser goes on to the next shard. A process that dies (SIGKILL included)
  releases its lock with its last descriptor, so its shard is free for the next opener,
  which runs the shard's recovery before it appends, as any open does.
* **Existing shards first, lowest index first.** An opener tries the shards that exist (a
  crashed worker's shard among them) before it creates a new one, and never creates one at
  an index ``>= max_shards``.
* **A new shard's directory entry is durable before the shard is used**: the directory is
  created and its parent fsynced (and so for a parent created here), so a record
  acknowledged at ``DISK`` cannot vanish with its shard in a power loss.
* **A thin layer.** Everything done to a shard goes through :func:`asyncwal.open` and the
  public methods of :class:`~asyncwal.Log`; nothing here reaches into the engine. Reading
  the shards held by *other* processes goes through their files, without their locks (see
  :mod:`asyncwal._sharded_read`).
* **No order between shards.** Each shard numbers its records from 1 in its own order; a
  record is addressed by ``(shard, seq)``. Records of different shards have no order with
  respect to each other.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any, Final

from ._errors import LogLockedError, NoFreeShardError
from ._filenames import LOCK_NAME, META_NAME, SHARD_DIGITS, parse_segment_name, parse_shard_name, shard_name
from ._fileops import OsFileOps, makedirs_durably
from ._log import Log
from ._log import open as open_log
from ._options import Options

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._fileops import FileOps
    from ._options import Durability

__all__ = (
    "DEFAULT_MAX_SHARDS",
    "MAX_SHARDS_LIMIT",
    "ShardedLog",
    "check_max_shards",
    "list_shards",
    "open_sharded",
    "parse_shard_name",
    "shard_name",
)

#: The default ``max_shards``: room for a server's workers, and for as many again while a
#: rolling restart (gunicorn's SIGHUP) runs the new workers beside the old ones.
DEFAULT_MAX_SHARDS: Final = 64
#: The largest ``max_shards``: shard names have four digits.
MAX_SHARDS_LIMIT: Final = 10**SHARD_DIGITS


def list_shards(ops: FileOps, path: str) -> list[int]:
    """The indexes of the shards in the sharded log directory ``path``, ascending. Sync I/O.

    :raises ValueError: ``path`` holds a plain (unsharded) log
    :raises FileNotFoundError: ``path`` does not exist
    """
    names = ops.listdir(path)
    plain = [n for n in names if n in (META_NAME, LOCK_NAME) or parse_segment_name(n) is not None]
    if plain:
        raise ValueError(
            f"{path} holds a plain log ({', '.join(plain[:3])}), not shards: open it with asyncwal.open()"
        )
    return sorted(i for i in map(parse_shard_name, names) if i is not None)


def _prepare_parent(ops: FileOps, path: str) -> list[int]:
    """Executor side of :func:`open_sharded`: create the directory, list its shards."""
    makedirs_durably(ops, path)
    return list_shards(ops, path)


def _claim_order(existing: Iterable[int], max_shards: int) -> list[int]:
    """Shards to try, in order: existing ones below ``max_shards``, then the missing ones."""
    have = sorted(i for i in set(existing) if i < max_shards)
    taken = set(have)
    return have + [i for i in range(max_shards) if i not in taken]


class ShardedLog:
    """This process's shard of a sharded log. Use :func:`open_sharded`.

    It appends like a :class:`~asyncwal.Log` (``await sharded.append(data)`` gives the
    record's seq *within this shard*) and tells which shard it is (:attr:`shard`); a record
    is addressed by ``(shard, seq)``. Everything else a log does (``sync``, ``checkpoint``,
    ``follow``, ``stats``...) is on :attr:`log`, the shard's own :class:`~asyncwal.Log`.
    """

    __slots__ = ("_log", "_path", "_shard")

    def __init__(self, path: str, shard: int, log: Log) -> None:
        self._path = path
        self._shard = shard
        self._log = log

    @property
    def path(self) -> str:
        """The sharded log directory (the parent of the shards)."""
        return self._path

    @property
    def shard(self) -> int:
        """The index of this process's shard."""
        return self._shard

    @property
    def log(self) -> Log:
        """The shard's own :class:`~asyncwal.Log` (its ``path`` is the shard's directory)."""
        return self._log

    @property
    def closed(self) -> bool:
        """True from the moment ``close()`` starts."""
        return self._log.closed

    def append(
        self, data: bytes | bytearray | memoryview, durability: Durability | None = None
    ) -> asyncio.Future[int]:
        """Append one record to this process's shard: :meth:`asyncwal.Log.append`.

        :return: a future of the record's seq within :attr:`shard`
        """
        return self._log.append(data, durability)

    def append_batch(self, records: Iterable[bytes | bytearray | memoryview]) -> asyncio.Future[list[int]]:
        """Append records atomically to this process's shard: :meth:`asyncwal.Log.append_batch`."""
        return self._log.append_batch(records)

    async def close(self) -> None:
        """Close the shard's log (writing and fsyncing every accepted record) and so free the
        shard for the next opener."""
        await self._log.close()

    async def __aenter__(self) -> ShardedLog:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<ShardedLog {self._path!r} shard={self._shard} {self._log!r}>"


class _ShardedOpener:
    """What :func:`open_sharded` returns: await it, or use it with ``async with``."""

    def __init__(self, path: str, max_shards: int, options: dict[str, Any]) -> None:
        self._path = path
        self._max_shards = max_shards
        self._options = options
        self._sharded: ShardedLog | None = None

    def __await__(self) -> Any:
        return self._open().__await__()

    async def _open(self) -> ShardedLog:
        given: FileOps | None = self._options.get("file_ops")
        ops = given if given is not None else OsFileOps()
        existing = await asyncio.to_thread(_prepare_parent, ops, self._path)
        have = set(existing)
        refusals: list[str] = []
        for index in _claim_order(existing, self._max_shards):
            shard_path = os.path.join(self._path, shard_name(index))
            if index not in have:
                await asyncio.to_thread(makedirs_durably, ops, shard_path)
            try:
                log = await open_log(shard_path, **self._options)
            except LogLockedError as exc:
                refusals.append(str(exc))
                continue
            return ShardedLog(self._path, index, log)
        shown = "; ".join(refusals[:4]) + ("; ..." if len(refusals) > 4 else "")
        raise NoFreeShardError(
            f"every shard of {self._path} is held by another opener (max_shards={self._max_shards}): "
            f"{shown}. Run fewer processes or raise max_shards"
        )

    async def __aenter__(self) -> ShardedLog:
        self._sharded = await self._open()
        return self._sharded

    async def __aexit__(self, *exc_info: object) -> None:
        if self._sharded is not None:
            await self._sharded.close()


def check_max_shards(max_shards: object) -> int:
    """Validate a ``max_shards`` argument. :raises TypeError, ValueError: it is not an int in
    ``1..MAX_SHARDS_LIMIT``."""
    if isinstance(max_shards, bool) or not isinstance(max_shards, int):
        raise TypeError(f"max_shards must be an int, not {type(max_shards).__name__}")
    if not 1 <= max_shards <= MAX_SHARDS_LIMIT:
        raise ValueError(f"max_shards must be in 1..{MAX_SHARDS_LIMIT}, not {max_shards}")
    return max_shards


def open_sharded(
    path: str | os.PathLike[str], *, max_shards: int = DEFAULT_MAX_SHARDS, **options: Any
) -> _ShardedOpener:
    """Open (creating if needed) the sharded log in directory ``path`` and claim a shard.

    ``await asyncwal.open_sharded(path)`` gives a :class:`ShardedLog`; ``async with
    asyncwal.open_sharded(path) as sharded`` also closes it. The process gets the first shard
    that no other opener holds: an existing one if any is free (a crashed process's shard is
    recovered by :func:`asyncwal.open` before it is used), else a new one, up to
    ``max_shards`` shards. Every shard is a complete log opened with ``options``.

    :param path: the sharded log directory; it holds only shard directories
    :param max_shards: how many shards this opener may use (existing shards with a higher
        index are still read, never claimed); at least the number of processes that have the
        log open at once, counting those that overlap in a rolling restart
    :param options: keyword options of :func:`asyncwal.open`, for the claimed shard
    :raises TypeError, ValueError: an unknown or invalid option, at the call
    :raises NoFreeShardError: every shard below ``max_shards`` is held by another opener
    :raises ValueError: ``path`` holds a plain (unsharded) log
    :raises CorruptLogError: the claimed shard holds damage its recovery mode may not cut
    :raises OSError: as :func:`asyncwal.open`
    """
    check_max_shards(max_shards)
    Options(**options)  # validate now, as asyncwal.open does
    return _ShardedOpener(os.fspath(path), max_shards, options)
