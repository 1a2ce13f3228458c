"""The command line's file operations: read-only, dry run and salvage, each wrapping any FileOps.

Every test runs on the real file system and on MemoryFileOps (the ``fs`` fixture). The dry
run is checked against the real thing: opening a damaged log through it must report what
opening a copy of the log for real does, leave the files untouched, and afterwards show the
files exactly as the real open left the copy.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
from typing import TYPE_CHECKING

import pytest

import asyncwal
from asyncwal._fileops import FileKind, FileOps, read_all, write_all
from asyncwal._fileops_dryrun import DryRunFileOps
from asyncwal._fileops_wrappers import (
    ReadOnlyFileOps,
    Salvaged,
    SalvagingFileOps,
    free_broken_name,
)
from asyncwal.testing import MemoryFileOps

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from .conftest import FsRoot

SEGMENT = 4096


def _put(ops: FileOps, path: str, data: bytes) -> None:
    fd = ops.open(path, create=True)
    try:
        ops.truncate(fd, 0)
        write_all(ops, fd, data, 0)
    finally:
        ops.close(fd)


def _get(ops: FileOps, path: str) -> bytes:
    fd = ops.open_readonly(path)
    try:
        return read_all(ops, fd)
    finally:
        ops.close(fd)


def _files(ops: FileOps, root: str) -> dict[str, bytes]:
    """``{name: contents}`` of the regular files in ``root``, through ``ops``."""
    return {
        name: _get(ops, os.path.join(root, name))
        for name in ops.listdir(root)
        if ops.kind(os.path.join(root, name)) is FileKind.REGULAR
    }


def _segments(files: dict[str, bytes]) -> list[str]:
    return sorted(n for n in files if n.endswith(".wal"))


async def _damaged_log(ops: FileOps, root: str) -> dict[str, bytes]:
    """A log of several segments whose last one ends in garbage, plus a ``.tmp`` leftover."""
    async with asyncwal.open(root, file_ops=ops, segment_size=SEGMENT) as log:
        for i in range(120):
            await log.append(b"record %d " % i * 4)
        await log.checkpoint(b"cp")

    def damage() -> dict[str, bytes]:
        last = _segments(_files(ops, root))[-1]
        path = os.path.join(root, last)
        fd = ops.open(path)
        try:
            write_all(ops, fd, b"\x5a" * 300, ops.size(fd))
        finally:
            ops.close(fd)
        _put(ops, os.path.join(root, "META.tmp"), b"half-written")
        return _files(ops, root)

    return await asyncio.to_thread(damage)


def _clone(ops: FileOps, root: str, tmp_path: Path) -> tuple[FileOps, str]:
    """An independent copy of the directory, on the same kind of file system."""
    if isinstance(ops, MemoryFileOps):
        return MemoryFileOps.from_image(ops.snapshot()), root
    copy = str(tmp_path / "copy")
    shutil.copytree(root, copy)
    return ops, copy


# -- read-only ----------------------------------------------------------------------------------


def test_read_only_refuses_every_change_and_reads_through(fs: FsRoot) -> None:
    base, root = fs
    path = os.path.join(root, "f")
    _put(base, path, b"contents")
    ops = ReadOnlyFileOps(base)
    fd = ops.open(path)  # opened read-only underneath
    attempts: dict[str, Callable[[], object]] = {
        "makedirs": lambda: ops.makedirs(os.path.join(root, "new")),
        "open create": lambda: ops.open(os.path.join(root, "g"), create=True),
        "pwrite": lambda: ops.pwrite(fd, b"x", 0),
        "pwritev_sync": lambda: ops.pwritev_sync(fd, [b"x"], 0),
        "truncate": lambda: ops.truncate(fd, 0),
        "rename": lambda: ops.rename(path, os.path.join(root, "g")),
        "unlink": lambda: ops.unlink(path),
        "lock": lambda: ops.lock(os.path.join(root, "LOCK")),
        "unlock": lambda: ops.unlock(fd),
    }
    for what, attempt in attempts.items():
        with pytest.raises(PermissionError) as info:
            attempt()
        assert info.value.errno == errno.EROFS, what
        assert "refused" in str(info.value)
    assert ops.pread(fd, 4, 2) == b"nten"
    assert ops.size(fd) == 8
    ops.sync(fd)
    ops.close(fd)
    assert ops.listdir(root) == ["f"]
    assert ops.exists(path)
    assert ops.kind(path) is FileKind.REGULAR
    assert not ops.lock_probe(os.path.join(root, "LOCK")).exists
    assert _files(base, root) == {"f": b"contents"}


async def test_read_only_open_of_a_log_changes_nothing(fs: FsRoot) -> None:
    base, root = fs
    before = await _damaged_log(base, root)
    with pytest.raises(PermissionError):
        await asyncwal.open(root, file_ops=ReadOnlyFileOps(base))
    assert await asyncio.to_thread(_files, base, root) == before


# -- dry run ------------------------------------------------------------------------------------


def test_dry_run_answers_as_if_changes_were_made(fs: FsRoot) -> None:
    base, root = fs
    seg, meta = os.path.join(root, "seg"), os.path.join(root, "META")
    _put(base, seg, bytes(range(100)))
    _put(base, meta, b"old meta")
    dry = DryRunFileOps(base)

    fd = dry.open(seg)
    dry.truncate(fd, 40)
    assert dry.size(fd) == 40
    assert dry.pread(fd, 100, 30) == bytes(range(30, 40))
    dry.pwrite(fd, b"\xff\xff", 60)  # past the end: the gap reads as zeros, not the old bytes
    assert dry.pread(fd, 100, 38) == bytes([38, 39]) + bytes(20) + b"\xff\xff"
    dry.truncate(fd, 61)
    assert dry.pread(fd, 100, 59) == b"\x00\xff"
    dry.close(fd)
    assert _get(dry, seg) == bytes(range(40)) + bytes(20) + b"\xff"

    tmp = meta + ".tmp"
    fd = dry.open(tmp, create=True, exclusive=True)
    with pytest.raises(FileExistsError):
        dry.open(tmp, create=True, exclusive=True)
    write_all(dry, fd, b"new meta", 0)
    dry.sync(fd)
    dry.close(fd)
    reader_fd = dry.open_readonly(meta)  # a descriptor follows its file, not the name
    dry.rename(tmp, meta)
    dry.sync_dir(root)
    assert _get(dry, meta) == b"new meta"
    assert dry.pread(reader_fd, 100, 0) == b"old meta"
    with pytest.raises(OSError, match="Bad file descriptor"):
        dry.pwrite(reader_fd, b"x", 0)
    dry.close(reader_fd)

    dry.unlink(seg)
    assert not dry.exists(seg)
    assert dry.kind(seg) is FileKind.MISSING
    with pytest.raises(FileNotFoundError):
        dry.open_readonly(seg)
    with pytest.raises(FileNotFoundError):
        dry.unlink(seg)
    assert dry.listdir(root) == ["META"]

    assert dry.truncations == [(seg, 40), (seg, 61)]
    assert dry.writes == [(seg, 60, 2), (tmp, 0, 8)]
    assert dry.created == [tmp]
    assert dry.renames == [(tmp, meta)]
    assert dry.replacements == [meta]
    assert dry.unlinks == [seg]
    assert _files(base, root) == {"META": b"old meta", "seg": bytes(range(100))}


def test_dry_run_refuses_to_create_directories_and_takes_no_lock(fs: FsRoot) -> None:
    base, root = fs
    dry = DryRunFileOps(base)
    dry.makedirs(root)  # exists: nothing to do
    with pytest.raises(PermissionError):
        dry.makedirs(os.path.join(root, "new"))
    lock_path = os.path.join(root, "LOCK")
    handle = dry.lock(lock_path)
    assert not base.exists(lock_path)
    held = base.lock(lock_path)
    dry.unlock(handle)
    with pytest.raises(asyncwal.LogLockedError):
        dry.lock(lock_path)
    base.unlock(held)
    with pytest.raises(OSError, match="Bad file descriptor"):
        dry.unlock(handle)


@pytest.mark.parametrize("mode", ["tolerate_tail", "point_in_time"])
async def test_dry_run_open_predicts_the_real_open(fs: FsRoot, tmp_path: Path, mode: str) -> None:
    base, root = fs
    before = await _damaged_log(base, root)
    dry = DryRunFileOps(base)
    log = await asyncwal.open(root, file_ops=dry, recovery=mode, segment_size=SEGMENT)
    predicted = (log.first_seq, log.last_seq, log.last_checkpoint, log.recovery_report)
    await log.close()
    assert await asyncio.to_thread(_files, base, root) == before  # nothing changed

    copy_ops, copy_root = await asyncio.to_thread(_clone, base, root, tmp_path)
    async with asyncwal.open(copy_root, file_ops=copy_ops, recovery=mode, segment_size=SEGMENT) as real:
        actual = (real.first_seq, real.last_seq, real.last_checkpoint, real.recovery_report)
    assert predicted[:3] == actual[:3]
    assert predicted[3] is not None and actual[3] is not None
    assert predicted[3].bytes_cut == actual[3].bytes_cut > 0
    assert (predicted[3].offset, predicted[3].reason) == (actual[3].offset, actual[3].reason)
    assert os.path.basename(predicted[3].segment) == os.path.basename(actual[3].segment)
    # The files as the dry run shows them are the files the real open left.
    seen = await asyncio.to_thread(_files, dry, root)
    left = await asyncio.to_thread(_files, copy_ops, copy_root)
    assert seen == left
    assert "META.tmp" not in seen
    last = _segments(before)[-1]
    assert dry.truncations[0] == (os.path.join(root, last), actual[3].offset)
    assert os.path.join(root, "META.tmp") in dry.unlinks


# -- salvage ------------------------------------------------------------------------------------


def test_salvage_keeps_what_truncate_and_unlink_would_lose(fs: FsRoot) -> None:
    base, root = fs
    seg = os.path.join(root, "00000000000000000001.wal")
    other = os.path.join(root, "x.tmp")
    _put(base, seg, b"keep this|cut this")
    _put(base, other, b"leftover")
    ops = SalvagingFileOps(base)

    fd = ops.open(seg)
    ops.truncate(fd, 9)
    ops.truncate(fd, 20)  # growing cuts nothing: no copy
    ops.close(fd)
    assert _get(base, seg) == b"keep this" + bytes(11)
    assert _get(base, seg + ".broken") == b"|cut this"

    fd = ops.open(seg)
    ops.truncate(fd, 4)
    ops.close(fd)
    assert _get(base, seg + ".broken.2") == b" this" + bytes(11)  # the first copy is kept

    ops.unlink(other)  # not protected: really removed
    assert not base.exists(other)
    ops.unlink(seg)  # protected: renamed aside
    assert not base.exists(seg)
    assert _get(base, seg + ".broken.3") == b"keep"
    assert ops.salvaged == [
        Salvaged(seg, 9, 9, seg + ".broken"),
        Salvaged(seg, 4, 16, seg + ".broken.2"),
        Salvaged(seg, 0, 4, seg + ".broken.3"),
    ]
    assert ops.removed == [other]
    assert free_broken_name(base, seg) == seg + ".broken.4"


async def test_salvaging_open_keeps_the_cut_tail(fs: FsRoot) -> None:
    base, root = fs
    before = await _damaged_log(base, root)
    last = _segments(before)[-1]
    ops = SalvagingFileOps(base)
    async with asyncwal.open(root, file_ops=ops, segment_size=SEGMENT) as log:
        report = log.recovery_report
        assert report is not None
    after = await asyncio.to_thread(_files, base, root)
    cut = len(before[last]) - report.offset
    path = os.path.join(root, last)
    assert ops.salvaged == [Salvaged(path, report.offset, cut, path + ".broken")]
    assert after[last + ".broken"] == before[last][report.offset :]
    assert after[last] == before[last][: report.offset]
    assert ops.removed == [os.path.join(root, "META.tmp")]
