"""Deliberately broken disks, for the checker's own tests: a campaign run on one of these must
fail (``python -m bench.crash_campaign powerloss --broken ...``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from asyncwal.testing import FaultyFileOps

if TYPE_CHECKING:
    from collections.abc import Callable

    from asyncwal._fileops import FileOps

__all__ = (
    "BROKEN",
    "SyncDirDoesNothing",
    "SyncDoesNothing",
    "SyncSwallowsErrors",
)


class SyncDoesNothing(FaultyFileOps):
    """A broken disk for the checker's own test: ``sync()`` returns without syncing."""

    def sync(self, fd: int) -> None:
        self.calls["sync"] += 1


class SyncSwallowsErrors(FaultyFileOps):
    """A broken disk for the checker's own test: a failed ``sync()`` reports success (the
    data was not synced), so the engine acknowledges at DISK past a failed fsync."""

    def sync(self, fd: int) -> None:
        try:
            super().sync(fd)
        except OSError:
            pass


class SyncDirDoesNothing(FaultyFileOps):
    """A broken disk for the checker's own test: ``sync_dir()`` returns without syncing."""

    def sync_dir(self, path: str) -> None:
        self.calls["sync_dir"] += 1


BROKEN: dict[str, Callable[[FileOps], FileOps]] = {
    "sync-does-nothing": SyncDoesNothing,
    "sync-dir-does-nothing": SyncDirDoesNothing,
}
