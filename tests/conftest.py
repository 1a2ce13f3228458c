"""Shared fixtures: every async test runs under the default asyncio loop and under uvloop,
and every storage test runs on the real file system and on the in-memory one."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from blockbuster import BlockBuster, BlockBusterFunction

from asyncwal._fileops import FileOps, OsFileOps
from asyncwal.testing import FaultyFileOps, MemoryFileOps

from .nats_cluster import NatsCluster

LoopFactory = Callable[[], asyncio.AbstractEventLoop]
#: A FileOps and an existing, empty directory in it (the ``fs`` fixture).
FsRoot = tuple[FileOps, str]


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Mapping[str, LoopFactory]:
    factories: dict[str, LoopFactory] = {"asyncio": asyncio.new_event_loop}
    if item.get_closest_marker("one_loop") is not None:
        return factories  # long tests against real servers: the loop is not what they test
    if sys.platform != "win32":
        import uvloop

        factories["uvloop"] = uvloop.new_event_loop
    return factories


# The blocking-call rule for asyncwal's own code on an event-loop thread:
# * never: the fsync family, durable (RWF_DSYNC) writes, changes to the namespace (open,
#   rename, unlink, mkdir), truncation, locks, reads of the files;
# * a plain page-cache write (os.pwrite) only on the guarded loop-thread write path of
#   batch/none modes (Engine._write_on_loop, Engine._append_direct); anywhere else it fails too.
# blockbuster's own list (sleep, sockets, file objects...) applies as well.
_NEVER_ON_THE_LOOP = (
    "os.fsync",
    "os.fdatasync",
    "os.pwritev",  # the durable write: pwritev2(RWF_DSYNC)
    "os.open",
    "os.rename",
    "os.replace",
    "os.unlink",
    "os.remove",
    "os.mkdir",
    "os.makedirs",
    "os.ftruncate",
    "os.pread",
    "fcntl.flock",
    "fcntl.fcntl",  # F_FULLFSYNC on macOS
)
#: Where a plain write may run on the loop thread: (file name suffix, function names).
LOOP_WRITE_PATH = ("asyncwal/_engine.py", {"_write_on_loop", "_append_direct"})


def blockbuster_for_asyncwal() -> BlockBuster:
    """A BlockBuster with the rule above (not yet activated)."""
    # Excluded: the test doubles, the command line, and the benchmarks' measuring core, which
    # calls a subject's counters (a peer server's /proc file) at the window's edges by design.
    # A blocking call inside the engine is still caught: its own frames are on the stack.
    scanned, excluded = ["asyncwal"], ["asyncwal.testing", "asyncwal.cli", "asyncwal._measure"]
    bb = BlockBuster(scanned, excluded_modules=excluded)
    for name in _NEVER_ON_THE_LOOP:
        bb.functions[name] = BlockBusterFunction(
            None, name, scanned_modules=scanned, excluded_modules=excluded
        )
    bb.functions["os.pwrite"] = BlockBusterFunction(
        None,
        "os.pwrite",
        scanned_modules=scanned,
        excluded_modules=excluded,
        can_block_functions=[LOOP_WRITE_PATH],
    )
    return bb


@pytest.fixture(autouse=True)
def no_blocking_calls_from_asyncwal_on_the_loop() -> Iterator[None]:
    """Fail any blocking call that asyncwal itself makes on an event-loop thread, but the
    guarded page-cache write (see above). Scoped to asyncwal's modules, so that tests may still
    do their own file I/O on the loop."""
    bb = blockbuster_for_asyncwal()
    bb.activate()
    try:
        yield
    finally:
        bb.deactivate()


class Backend:
    """Where a test's log lives: real files under tmp_path, or MemoryFileOps."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.memory = MemoryFileOps() if kind == "memory" else None
        self.path = "/mem/wal" if kind == "memory" else str(tmp_path / "wal")

    def options(self, **extra: Any) -> dict[str, Any]:
        """Keyword arguments for asyncwal.open() on this backend."""
        opts: dict[str, Any] = {}
        if self.memory is not None:
            opts["file_ops"] = self.memory
        opts.update(extra)
        return opts

    def faulty(self) -> FaultyFileOps:
        """A FaultyFileOps over this backend's file system."""
        return FaultyFileOps(self.memory)

    def read(self, name: str) -> bytes:
        if self.memory is not None:
            return self.memory.read_bytes(f"{self.path}/{name}")
        return (Path(self.path) / name).read_bytes()

    def write(self, name: str, data: bytes) -> None:
        if self.memory is not None:
            self.memory.write_bytes(f"{self.path}/{name}", data)
        else:
            (Path(self.path) / name).write_bytes(data)

    def names(self) -> list[str]:
        if self.memory is not None:
            return sorted(self.memory.files(self.path))
        return sorted(p.name for p in Path(self.path).iterdir())

    def segments(self) -> list[str]:
        return [n for n in self.names() if n.endswith(".wal")]


@pytest.fixture(params=["os", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return Backend(request.param, tmp_path)


@pytest.fixture(params=["memory", "os"])
def fs(request: pytest.FixtureRequest, tmp_path: Path) -> FsRoot:
    """A FileOps (MemoryFileOps, or the real OsFileOps) and an existing, empty directory in it:
    for tests of the seam itself, which check the in-memory file system against the real one."""
    root = str(tmp_path / "d")
    ops: FileOps = MemoryFileOps() if request.param == "memory" else OsFileOps()
    ops.makedirs(root)
    return ops, root


# -- a real NATS JetStream cluster (replication tests; see tests/nats_cluster.py) ---------


@pytest.fixture(scope="session")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """Three nats-server processes on 127.0.0.1, sync_interval: always, for the whole session."""
    cluster = NatsCluster(tmp_path_factory.mktemp("nats"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster(nats_cluster: NatsCluster) -> Iterator[NatsCluster]:
    """The session's cluster, healthy before the test and made whole again after it (a test
    may kill nodes)."""
    nats_cluster.restart_all_down()
    nats_cluster.wait_healthy()
    yield nats_cluster
    nats_cluster.restart_all_down()
    nats_cluster.wait_healthy()
