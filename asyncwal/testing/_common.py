"""What the modules of :mod:`asyncwal.testing` share: ``os``-style errors, path helpers, and the
events a :class:`~asyncwal.testing.MemoryFileOps` reports for every change of state.

Events are plain immutable tuples. :class:`~asyncwal.testing.PowerLossFileOps` records them
in order and replays prefixes of them into a crash model; ``ino`` identifies a file (its
inode), which keeps its identity across renames.
"""

from __future__ import annotations

import os
from typing import NamedTuple

__all__ = (
    "Create",
    "Event",
    "Rename",
    "Sync",
    "SyncDir",
    "Truncate",
    "Unlink",
    "Write",
    "oserror",
    "parent",
)


def oserror(code: int, path: str | None = None) -> OSError:
    """An OSError as ``os`` raises it: ``OSError(ENOENT, ...)`` is a FileNotFoundError."""
    if path is None:
        return OSError(code, os.strerror(code))
    return OSError(code, os.strerror(code), path)


def parent(path: str) -> str:
    """The directory holding the (normalized) ``path``."""
    return os.path.dirname(path) or "."


class Create(NamedTuple):
    """A new file ``ino`` at ``path`` (``open`` with ``create``, ``lock``)."""

    path: str
    ino: int


class Write(NamedTuple):
    """``data`` written to file ``ino`` at ``offset``."""

    ino: int
    offset: int
    data: bytes


class Truncate(NamedTuple):
    """File ``ino`` cut (or grown with zeros) to ``size`` bytes."""

    ino: int
    size: int


class Sync(NamedTuple):
    """File ``ino``'s data and size made durable."""

    ino: int


class Rename(NamedTuple):
    """File ``ino`` moved from ``src`` to ``dst`` (replacing what was there)."""

    src: str
    dst: str
    ino: int


class Unlink(NamedTuple):
    """The name ``path`` of file ``ino`` removed."""

    path: str
    ino: int


class SyncDir(NamedTuple):
    """The entries of directory ``path`` made durable."""

    path: str


#: A change of state of a MemoryFileOps, as PowerLossFileOps records it.
Event = Create | Write | Truncate | Sync | Rename | Unlink | SyncDir
