"""The raw physics: plain loops of ``os`` calls, no event loop, exact fsync counts.

* ``raw-fdatasync``: ``os.pwrite`` of one record + ``os.fdatasync``, serially, into a file
  zero-filled in advance (as asyncwal preallocates): the serial durable limit.
* ``raw-fdatasync-grow``: the same on a file that grows with every write (``O_APPEND``):
  what the obvious loop gets; each fdatasync must also commit the new file size.
* ``raw-write``: ``os.write`` alone, appending: the page-cache limit (nothing durable).
* ``raw-group``: the W records of a group joined and written with one ``os.pwrite`` + one
  ``os.fdatasync`` into a zero-filled file: perfect group commit, with no event loop, no
  queue and no hand-off. Every record of a group gets the group's latency.
* ``seed-sync``, ``seed-batch``, ``seed-none``: a synchronous WAL's three policies as the
  plain loop an application would write without asyncio: a buffered file's ``write`` per
  record, then ``flush`` + ``fdatasync`` after every record, after every 100th, or never.
  What asyncwal's three modes promise, at the speed of a blocking loop.
"""

from __future__ import annotations

import os

from ._harness import Counters, SyncSubject

__all__ = ("RawFdatasync", "RawFdatasyncGrow", "RawGroup", "RawWrite", "SeedBatch", "SeedNone", "SeedSync")

_MIB = 1024 * 1024
_ZERO_CHUNK = 4 * _MIB


def _zero_fill(fd: int, size: int) -> None:
    zeros = bytes(_ZERO_CHUNK)
    done = 0
    while done < size:
        done += os.write(fd, zeros[: min(_ZERO_CHUNK, size - done)])
    os.fsync(fd)
    os.lseek(fd, 0, os.SEEK_SET)


class RawFdatasync(SyncSubject):
    """One record per ``pwrite`` + ``fdatasync`` (group = 1), or W records (``group=True``)."""

    group: bool = False
    preallocate: bool = True

    def setup(self) -> None:
        path = self.workdir / "raw.log"
        self.nrec = self.spec.workers if self.group else 1
        self.chunk = self.spec.size * self.nrec
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        if not self.preallocate:
            flags |= os.O_APPEND
        self.fd = os.open(path, flags, 0o644)
        self.pos = 0
        # Room for at least two groups and 64 MiB; writing wraps around to offset 0.
        self.region = max(64 * _MIB, 2 * self.chunk) // self.chunk * self.chunk
        if self.preallocate:
            _zero_fill(self.fd, self.region)

    def step(self, data: bytes) -> int:
        buf = data * self.nrec if self.nrec > 1 else data
        fd = self.fd
        if self.preallocate:
            n = os.pwrite(fd, buf, self.pos)
            self.pos += n
            if self.pos >= self.region:
                self.pos = 0
        else:
            n = os.write(fd, buf)
        if n != len(buf):
            raise OSError(f"short write: {n} of {len(buf)} bytes")
        os.fdatasync(fd)
        self.fsyncs += 1
        self.records += self.nrec
        return self.nrec

    def teardown(self) -> None:
        os.close(self.fd)

    def notes(self) -> str:
        return "zero-filled file, overwritten in place" if self.preallocate else "appending file (grows)"


class RawFdatasyncGrow(RawFdatasync):
    preallocate = False


class RawGroup(RawFdatasync):
    group = True


class RawWrite(SyncSubject):
    """``os.write`` of one record to an appending file, no sync."""

    def setup(self) -> None:
        self.fd = os.open(
            self.workdir / "raw.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644
        )

    def step(self, data: bytes) -> int:
        if os.write(self.fd, data) != len(data):
            raise OSError("short write")
        self.records += 1
        return 1

    def teardown(self) -> None:
        os.close(self.fd)

    def counters(self) -> Counters:
        return Counters(records=self.records, fsyncs=0)


class SeedSync(SyncSubject):
    """The seed's policy loop: buffered ``write``; ``flush`` + ``fdatasync`` every ``every``-th
    record (never, when ``every`` is 0)."""

    every = 1

    def setup(self) -> None:
        self.file = open(self.workdir / "seed.log", "ab")  # closed in teardown
        self.unsynced = 0

    def step(self, data: bytes) -> int:
        self.file.write(data)
        self.records += 1
        if self.every:
            self.unsynced += 1
            if self.unsynced >= self.every:
                self.file.flush()
                os.fdatasync(self.file.fileno())
                self.fsyncs += 1
                self.unsynced = 0
        return 1

    def teardown(self) -> None:
        self.file.close()

    def notes(self) -> str:
        if not self.every:
            return "buffered writes, never synced"
        return f"buffered writes, flush + fdatasync every {self.every} record(s)"


class SeedBatch(SeedSync):
    every = 100


class SeedNone(SeedSync):
    every = 0
