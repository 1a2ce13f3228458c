"""The command line on a sharded log: info, dump, verify and repair take the parent directory
and cover every shard (or one, with --shard K); the reading commands take no lock and
change no byte, and repair opens one shard at a time, refusing a shard that is held."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

import asyncwal
from asyncwal import cli
from asyncwal._filenames import segment_name
from asyncwal._sharded import shard_name

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import pytest


def build(path: Path, counts: list[int]) -> None:
    """A sharded log whose shard i holds counts[i] records b"s<i>-r<j>"."""

    async def fill() -> None:
        logs = [await asyncwal.open_sharded(path, preallocate=False) for _ in counts]
        for log, n in zip(logs, counts, strict=True):
            for j in range(n):
                await log.append(b"s%d-r%d" % (log.shard, j))
        for log in logs:
            await log.close()

    asyncio.run(fill())


def hashes(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@contextmanager
def shard_held(path: Path) -> Iterator[int]:
    """Claim a shard in an event loop of another thread until the block ends; its index."""
    ready = threading.Event()
    release = threading.Event()
    got: list[int] = []

    async def hold() -> None:
        async with asyncwal.open_sharded(path) as sharded:
            got.append(sharded.shard)
            ready.set()
            await asyncio.get_running_loop().run_in_executor(None, release.wait)

    thread = threading.Thread(target=lambda: asyncio.run(hold()))
    thread.start()
    try:
        assert ready.wait(10)
        yield got[0]
    finally:
        release.set()
        thread.join(10)


def test_reading_commands_cover_every_shard_without_locks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "wal"
    build(path, [3, 2])
    with shard_held(path) as held:  # a worker is running on shard 0
        assert held == 0
        before = hashes(path)
        code, out, _ = run(capsys, "info", str(path))
        assert code == 0
        assert f"sharded log {path}: 2 shards" in out
        assert f"== shard 0: {path / shard_name(0)}" in out and f"== shard 1: {path / shard_name(1)}" in out
        assert "seq 1..3 (3 records)" in out and "seq 1..2 (2 records)" in out
        assert f"held by pid {os.getpid()}" in out and "free" in out
        code, out, _ = run(capsys, "verify", str(path))
        assert code == 0 and out.count("every checksum matches") == 2
        code, out, _ = run(capsys, "dump", str(path), "--format", "json")
        assert code == 0
        records = [(r["shard"], r["seq"], r["data"]) for r in map(json.loads, out.splitlines())]
        assert records == [
            (0, 1, "s0-r0"),
            (0, 2, "s0-r1"),
            (0, 3, "s0-r2"),
            (1, 1, "s1-r0"),
            (1, 2, "s1-r1"),
        ]
        code, out, _ = run(capsys, "dump", str(path), "--shard", "1")
        assert code == 0 and "data=s1-r1" in out and "s0-r" not in out
        assert hashes(path) == before  # no lock taken, not a byte changed


def test_raw_dump_needs_a_shard(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    path = tmp_path / "wal"
    build(path, [1, 1])
    assert cli.main(["dump", str(path), "--format", "raw"]) == 2
    assert b"add --shard K" in capsysbinary.readouterr().err
    assert cli.main(["dump", str(path), "--format", "raw", "--shard", "1"]) == 0
    assert capsysbinary.readouterr().out == len(b"s1-r0").to_bytes(4, "little") + b"s1-r0"


def test_damage_in_one_shard_is_reported_and_repaired_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "wal"
    build(path, [5, 5, 5])
    torn = path / shard_name(1) / segment_name(1)
    torn.write_bytes(torn.read_bytes()[:-5])  # the last record cut short
    code, out, _ = run(capsys, "verify", str(path))
    assert code == 1
    assert out.count("every checksum matches") == 2 and "DAMAGED" in out
    with shard_held(path) as held:  # shard 0 is taken by a live process: repair leaves it
        assert held == 0
        code, out, err = run(capsys, "repair", str(path))
    assert code == 1 and f"held by pid {os.getpid()}" in err
    assert "the log now holds seq 1..4" in out  # shard 1 repaired all the same
    assert (path / shard_name(1) / (segment_name(1) + ".broken")).exists()
    code, out, _ = run(capsys, "verify", str(path))
    assert code == 0 and out.count("every checksum matches") == 3


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "wal"
    build(path, [1])
    code, _, err = run(capsys, "info", str(path), "--shard", "4")
    assert code == 2 and "has no shard 4 (shards: 0)" in err

    async def plain() -> None:
        async with asyncwal.open(tmp_path / "plain") as log:
            await log.append(b"x")

    asyncio.run(plain())
    code, _, err = run(capsys, "verify", str(tmp_path / "plain"), "--shard", "0")
    assert code == 2 and "is not a sharded log" in err
    code, out, _ = run(capsys, "info", str(tmp_path / "plain"))
    assert code == 0 and "sharded" not in out  # a plain log is shown as before
