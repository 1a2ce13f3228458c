"""The registry of subjects: name -> how to build it, what it needs, what it is."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from . import _asyncwal_subject, _byhand, _null, _raw, _redis, _sqlite

if TYPE_CHECKING:
    from pathlib import Path

    from ._harness import AsyncSubject, CellSpec, ExternalSubject, SyncSubject

__all__ = ("GROUPS", "SUBJECTS", "SubjectInfo", "select_subjects")

Kind = Literal["async", "sync", "external"]
Factory = Callable[["CellSpec", "Path"], "AsyncSubject | SyncSubject | ExternalSubject"]


@dataclass(frozen=True, slots=True)
class SubjectInfo:
    name: str
    group: str  #: asyncwal, raw, byhand, sqlite, redis, redisbench
    kind: Kind  #: "async" subjects run once per event loop
    durable: bool  #: is an acknowledged append on disk (survives power loss)?
    description: str
    factory: Factory
    needs_modules: tuple[str, ...] = ()
    needs_tools: tuple[str, ...] = ()
    in_all: bool = True  #: part of the default selection ("all")

    def unavailable(self) -> str | None:
        """Why this subject cannot run here, or None."""
        missing = [m for m in self.needs_modules if importlib.util.find_spec(m) is None]
        missing += [t for t in self.needs_tools if shutil.which(t) is None]
        if missing:
            return "not installed: " + ", ".join(missing) + " (run: python -m bench --setup)"
        return None

    @property
    def has_loop(self) -> bool:
        return self.kind == "async"


_REDIS = ("redis",)
_REDIS_TOOLS = ("redis-server",)
_RB_TOOLS = ("redis-server", "redis-benchmark")

_ALL = (
    SubjectInfo(
        name="asyncwal-sync",
        group="asyncwal",
        kind="async",
        durable=True,
        description="asyncwal, sync_mode='sync'",
        factory=_asyncwal_subject.AsyncwalSubject,
        needs_modules=("asyncwal",),
    ),
    SubjectInfo(
        name="asyncwal-batch",
        group="asyncwal",
        kind="async",
        durable=False,
        description="asyncwal, sync_mode='batch'",
        factory=_asyncwal_subject.AsyncwalBatch,
        needs_modules=("asyncwal",),
    ),
    SubjectInfo(
        name="asyncwal-none",
        group="asyncwal",
        kind="async",
        durable=False,
        description="asyncwal, sync_mode='none'",
        factory=_asyncwal_subject.AsyncwalNone,
        needs_modules=("asyncwal",),
    ),
    SubjectInfo(
        name="raw-fdatasync",
        group="raw",
        kind="sync",
        durable=True,
        description="loop of os.pwrite + os.fdatasync, zero-filled file (serial durable limit)",
        factory=_raw.RawFdatasync,
    ),
    SubjectInfo(
        name="raw-fdatasync-grow",
        group="raw",
        kind="sync",
        durable=True,
        description="loop of os.write + os.fdatasync, appending file",
        factory=_raw.RawFdatasyncGrow,
    ),
    SubjectInfo(
        name="raw-write",
        group="raw",
        kind="sync",
        durable=False,
        description="loop of os.write alone (page-cache limit)",
        factory=_raw.RawWrite,
    ),
    SubjectInfo(
        name="raw-group",
        group="raw",
        kind="sync",
        durable=True,
        description="W records in one os.pwrite + one os.fdatasync (perfect group commit)",
        factory=_raw.RawGroup,
    ),
    SubjectInfo(
        name="seed-sync",
        group="seed",
        kind="sync",
        durable=True,
        description="a synchronous WAL's loop: buffered write + flush + fdatasync per record",
        factory=_raw.SeedSync,
    ),
    SubjectInfo(
        name="seed-batch",
        group="seed",
        kind="sync",
        durable=False,
        description="a synchronous WAL's loop: buffered write, flush + fdatasync every 100th record",
        factory=_raw.SeedBatch,
    ),
    SubjectInfo(
        name="seed-none",
        group="seed",
        kind="sync",
        durable=False,
        description="a synchronous WAL's loop: buffered write, never synced",
        factory=_raw.SeedNone,
    ),
    SubjectInfo(
        name="tothread",
        group="byhand",
        kind="async",
        durable=True,
        description="asyncio.Lock + asyncio.to_thread(write + fsync)",
        factory=_byhand.ToThreadSubject,
    ),
    SubjectInfo(
        name="aiofiles",
        group="byhand",
        kind="async",
        durable=True,
        description="asyncio.Lock + aiofiles write, flush, fsync",
        factory=_byhand.AiofilesSubject,
        needs_modules=("aiofiles",),
    ),
    SubjectInfo(
        name="sqlite-full",
        group="sqlite",
        kind="async",
        durable=True,
        description="aiosqlite, WAL, synchronous=FULL, INSERT+commit",
        factory=_sqlite.SqliteSubject,
        needs_modules=("aiosqlite",),
    ),
    SubjectInfo(
        name="sqlite-off",
        group="sqlite",
        kind="async",
        durable=False,
        description="aiosqlite, WAL, synchronous=OFF, INSERT+commit",
        factory=_sqlite.SqliteOffSubject,
        needs_modules=("aiosqlite",),
    ),
    SubjectInfo(
        name="redis-always",
        group="redis",
        kind="async",
        durable=True,
        description="redis.asyncio RPUSH, appendfsync always",
        factory=_redis.RedisAsyncSubject,
        needs_modules=_REDIS,
        needs_tools=_REDIS_TOOLS,
    ),
    SubjectInfo(
        name="redis-everysec",
        group="redis",
        kind="async",
        durable=False,
        description="redis.asyncio RPUSH, appendfsync everysec",
        factory=_redis.RedisAsyncEverysec,
        needs_modules=_REDIS,
        needs_tools=_REDIS_TOOLS,
    ),
    SubjectInfo(
        name="redis-no",
        group="redis",
        kind="async",
        durable=False,
        description="redis.asyncio RPUSH, appendfsync no",
        factory=_redis.RedisAsyncNo,
        needs_modules=_REDIS,
        needs_tools=_REDIS_TOOLS,
    ),
    SubjectInfo(
        name="redisbench-always",
        group="redisbench",
        kind="external",
        durable=True,
        description="redis-benchmark RPUSH, appendfsync always",
        factory=_redis.RedisBenchmarkSubject,
        needs_tools=_RB_TOOLS,
    ),
    SubjectInfo(
        name="redisbench-everysec",
        group="redisbench",
        kind="external",
        durable=False,
        description="redis-benchmark RPUSH, appendfsync everysec",
        factory=_redis.RedisBenchmarkEverysec,
        needs_tools=_RB_TOOLS,
    ),
    SubjectInfo(
        name="redisbench-no",
        group="redisbench",
        kind="external",
        durable=False,
        description="redis-benchmark RPUSH, appendfsync no",
        factory=_redis.RedisBenchmarkNo,
        needs_tools=_RB_TOOLS,
    ),
    SubjectInfo(
        name="null",
        group="harness",
        kind="async",
        durable=False,
        description="an append that returns a resolved future: the harness's ceiling",
        factory=_null.NullSubject,
        in_all=False,
    ),
)

#: Every subject, in report order.
SUBJECTS: dict[str, SubjectInfo] = {s.name: s for s in _ALL}

#: Names accepted by ``--subjects`` besides subject names and group names.
GROUPS: dict[str, tuple[str, ...]] = {
    "all": tuple(s.name for s in _ALL if s.in_all),
    "peers": tuple(s.name for s in _ALL if s.in_all and s.group != "asyncwal"),
    **{g: tuple(s.name for s in _ALL if s.group == g) for g in dict.fromkeys(s.group for s in _ALL)},
}


def select_subjects(spec: str) -> list[str]:
    """Resolve a comma-separated list of subject and group names, keeping registry order.

    :raises ValueError: an unknown name
    """
    wanted: set[str] = set()
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        if token in SUBJECTS:
            wanted.add(token)
        elif token in GROUPS:
            wanted.update(GROUPS[token])
        else:
            names = ", ".join([*GROUPS, *SUBJECTS])
            raise ValueError(f"unknown subject {token!r}; choose from: {names}")
    return [name for name in SUBJECTS if name in wanted]
