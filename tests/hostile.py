"""The hostile-directory campaign: log directories that a careless tool, a newer asyncwal or an
adversary left behind, opened in every recovery mode and read by every CLI command.

Each case starts from a real log (real files: FIFOs, directories and symbolic links need a
real file system), changes it in one way (a mutated name, a file of another type, a header,
a missing or duplicated segment, a META variation), and says what each recovery mode must do:
open it untouched (``ok``), cut it with a RecoveryReport (``cut``), or refuse it (``refuse``:
``CorruptLogError``, or the OSError ``NotRegularFileError`` for a LOCK that is not a file).
For every mode and every command the campaign checks:

* the documented result, and that recovery's own prediction (what ``asyncwal verify`` shows)
  is exactly what ``open()`` did;
* no traceback: an open raises only the documented errors, a command returns 0, 1 or 2;
* nothing that held a record is lost: a refusal and a reading command change no byte of the
  directory; an open or a repair removes or shortens only what its report names (a repair
  keeps a ``.broken`` copy of it); a file that is not asyncwal's is never touched, and a
  symbolic link's target never;
* bounded memory: the peak of Python allocations (tracemalloc) of each open and command;
* no hang: the campaign runs in a child process with a watchdog (see test_hostile_dirs.py).

``python -m tests.hostile DIR [--long] [--seed N]`` runs it and prints one JSON line per case
and a summary; the exit status is 1 if any check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import io
import json
import os
import random
import re
import shutil
import stat
import struct
import sys
import tracemalloc
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import asyncwal
from asyncwal import cli
from asyncwal._filenames import MAX_SEQ, is_leftover_tmp, parse_segment_name, segment_name
from asyncwal._fileops import NotRegularFileError, OsFileOps
from asyncwal._fileops_wrappers import ReadOnlyFileOps
from asyncwal._format import (
    FormatError,
    crc32c,
    decode_meta,
    encode_segment_header,
    frame_header,
    max_frame_length,
)
from asyncwal._recovery import MODES, decide, scan_log

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ("CASES_SHORT", "Case", "all_cases", "main", "run_cases")

#: Peak of Python allocations allowed for one open or one command, whatever the directory.
MEMORY_LIMIT: Final = 100 * 1024 * 1024
SEGMENT_SIZE: Final = 4096
OPTIONS: Final = {"segment_size": SEGMENT_SIZE}
MAX_LENGTH: Final = max_frame_length(asyncwal.Options().max_record_size, asyncwal.Options().max_batch_bytes)
COMMANDS: Final = (
    ("info",),
    ("dump",),
    ("verify",),
    ("repair",),
    ("repair", "--mode", "point_in_time"),
)

#: Expected outcome per mode (tolerate_tail, strict, point_in_time).
OK3: Final = ("ok", "ok", "ok")
REFUSE3: Final = ("refuse", "refuse", "refuse")
PIT_ONLY: Final = ("refuse", "refuse", "cut")
TAIL: Final = ("cut", "refuse", "cut")


@dataclass(frozen=True)
class Case:
    """One hostile change to the base log, and what each mode must do with it."""

    name: str
    change: Callable[[Path, Base], None]
    expect: tuple[str, str, str]  # by mode: tolerate_tail, strict, point_in_time


@dataclass
class Base:
    """The log every case starts from: a few segments, a batch, a checkpoint, a truncation."""

    dir: Path
    segments: list[str] = field(default_factory=list)
    outside: Path | None = None  # a regular file outside the log, for symbolic links to point at

    def seg(self, i: int) -> Path:
        return self.dir / self.segments[i]


async def _fill(path: Path) -> None:
    # The checkpoint comes last: it covers every record, so that any record lost is detected
    # (without one, a missing last segment cannot be told from a shorter log).
    async with asyncwal.open(path, **OPTIONS) as log:
        for i in range(150):
            await log.append(b"%04d" % i + b"." * 96)
        await log.append_batch([b"b1", b"b2", b"b3"])
        await log.truncate_before(40)
        for i in range(5):
            await log.append(b"after %d" % i)
        await log.checkpoint(b"cp")


def build_base(root: Path) -> Base:
    path = root / "base"
    asyncio.run(_fill(path))
    names = sorted(p.name for p in path.iterdir() if p.name.endswith(".wal"))
    outside = root / "outside.bin"
    outside.write_bytes(b"a file outside the log that must never change" * 20)
    return Base(path, names, outside)


# -- changes -----------------------------------------------------------------------------------


def _valid_header_with(version: int = 1, flags: int = 0, first_seq: int = 1) -> bytes:
    head = struct.pack("<8sIIQ", b"ASYNCWAL", version, flags, first_seq)
    return head + struct.pack("<I4x", crc32c(head))


def _patch(path: Path, at: int, data: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[at : at + len(data)] = data
    path.write_bytes(bytes(raw))


def _stray_copy(name: str) -> Callable[[Path, Base], None]:
    def change(d: Path, b: Base) -> None:
        (d / name).write_bytes(b.seg(0).read_bytes())

    return change


def _stray_bytes(name: str, data: bytes) -> Callable[[Path, Base], None]:
    def change(d: Path, b: Base) -> None:
        (d / name).write_bytes(data)

    return change


def _replace_with(which: str, kind: str) -> Callable[[Path, Base], None]:
    """Put a file of ``kind`` where ``which`` (a name, or first/last segment) is expected."""

    def change(d: Path, b: Base) -> None:
        name = b.segments[0] if which == "first" else b.segments[-1] if which == "last" else which
        target = d / name
        if target.exists() or target.is_symlink():
            target.unlink()
        if kind == "fifo":
            os.mkfifo(target)
        elif kind == "directory":
            target.mkdir()
            (target / "inside").write_bytes(b"x")
        elif kind == "symlink-dev-zero":
            target.symlink_to("/dev/zero")
        elif kind == "symlink-outside":
            assert b.outside is not None
            target.symlink_to(b.outside)
        elif kind == "dangling-symlink":
            target.symlink_to("no such file")
        else:  # pragma: no cover - a typo in a case
            raise AssertionError(kind)

    return change


def _header_of(which: int, how: str) -> Callable[[Path, Base], None]:
    """Change the header of segment ``which``: a newer version or unknown flags (with a valid
    checksum), a valid header naming another first seq, a bad magic, a bad checksum."""

    def change(d: Path, b: Base) -> None:
        path = d / b.segments[which]
        first = int(path.name[:20])
        if how == "version 2":
            _patch(path, 0, _valid_header_with(2, 0, first))
        elif how == "flags":
            _patch(path, 0, _valid_header_with(1, 1, first))
        elif how == "another first seq":
            _patch(path, 0, encode_segment_header(first + 1))
        elif how == "magic":
            _patch(path, 0, b"X")
        elif how == "checksum":
            _patch(path, 20, bytes([path.read_bytes()[20] ^ 0x7F]))
        else:  # pragma: no cover - a typo in a case
            raise AssertionError(how)

    return change


def _torn_last_frame(d: Path, b: Base) -> None:
    path = d / b.segments[-1]
    raw = path.read_bytes()
    end = len(raw.rstrip(b"\0"))
    path.write_bytes(raw[: end - 1])


def _two_strays(d: Path, b: Base) -> None:
    for name in ("1".rjust(19, "0") + ".wal", "1".rjust(21, "0") + ".wal"):
        (d / name).write_bytes(b.seg(0).read_bytes())


def _stray_files(d: Path, b: Base) -> None:
    for name in ("notes.txt", "x.tmp", "a.wal.broken", ".hidden"):
        (d / name).write_bytes(b"x")


def _leftover_tmp(d: Path, b: Base) -> None:
    for name in ("META.tmp", segment_name(10**6) + ".tmp"):
        (d / name).write_bytes(b"half written")


def _cut_to(which: int, size: int) -> Callable[[Path, Base], None]:
    def change(d: Path, b: Base) -> None:
        path = d / b.segments[which]
        path.write_bytes(path.read_bytes()[:size])

    return change


def _remove(*which: int) -> Callable[[Path, Base], None]:
    def change(d: Path, b: Base) -> None:
        for i in which:
            (d / b.segments[i]).unlink()

    return change


def _remove_all(meta_too: bool) -> Callable[[Path, Base], None]:
    def change(d: Path, b: Base) -> None:
        for name in b.segments:
            (d / name).unlink()
        if meta_too:
            (d / "META").unlink()

    return change


def _misnamed_copy(d: Path, b: Base) -> None:
    """A copy of a segment under the name of a seq inside it (its header names another)."""
    first = int(b.segments[1][:20])
    (d / segment_name(first + 3)).write_bytes(b.seg(1).read_bytes())


def _overlapping_segment(d: Path, b: Base) -> None:
    """A valid segment whose name and header agree, starting inside the previous one."""
    first = int(b.segments[-2][:20]) + 2
    (d / segment_name(first)).write_bytes(encode_segment_header(first) + frame_header(first, b"x") + b"x")


def _meta(data: Callable[[Base], bytes]) -> Callable[[Path, Base], None]:
    def change(d: Path, b: Base) -> None:
        (d / "META").write_bytes(data(b))

    return change


def _meta_v1_beyond(b: Base) -> bytes:
    """A version-1 META (no log id) whose checkpoint covers seqs the log never had."""
    body = struct.pack("<8sIIQQI", b"AWALMETA", 1, 1, 40, 10_000, 2) + b"cp"
    return body + struct.pack("<I", crc32c(body))


def _sparse_meta(d: Path, b: Base) -> None:
    with (d / "META").open("r+b") as f:
        f.truncate(1 << 30)  # 1 GiB, sparse: more than any META


def _sparse_tail(d: Path, b: Base) -> None:
    with (d / b.segments[-1]).open("r+b") as f:
        f.truncate(256 << 20)  # the last segment followed by 256 MiB of zeros (sparse)


def _candidates_tail(d: Path, b: Base) -> None:
    """Damage at the start of the last segment's records, then 16 MiB of candidate headers."""
    path = d / b.segments[-1]
    raw = path.read_bytes()[:32]
    first = int(b.segments[-1][:20])
    junk = frame_header(first, b"")  # valid-looking type and pad, wrong position
    fake = struct.pack("<IIQI", 0xDEAD, 1 << 20, first + 5, 1)
    path.write_bytes(raw + b"\xff" * 20 + (fake + junk) * ((16 << 20) // 40))


def _every_unicode_one() -> list[str]:
    """The digit one of every decimal digit class Unicode has (Nd), other than ASCII's."""
    everything = "".join(map(chr, range(0x80, sys.maxunicode + 1)))
    return [ch for ch in re.findall(r"\d", everything) if unicodedata.digit(ch, None) == 1]


def all_cases() -> list[Case]:
    """Every case (the long run); the default run takes :data:`CASES_SHORT` of them."""
    cases = [
        Case(f"name with digit U+{ord(ch):04X}", _stray_copy("0" * 19 + ch + ".wal"), OK3)
        for ch in _every_unicode_one()
    ]
    seq0 = "0" * 20 + ".wal"
    tmp = segment_name(10**6) + ".tmp"
    cases += [
        Case("name with a superscript one", _stray_copy("0" * 19 + "\u00b9.wal"), OK3),
        Case("segment name of seq 0, empty", _stray_bytes(seq0, b""), OK3),
        Case("segment name of seq 0, a header for seq 0", _stray_bytes(seq0, encode_segment_header(0)), OK3),
        Case("the largest 20-digit number", _stray_copy("9" * 20 + ".wal"), OK3),
        Case("19 and 21 digits", _two_strays, OK3),
        Case("the largest seq, empty", _stray_bytes(segment_name(MAX_SEQ), b""), REFUSE3),
        Case(
            "the largest seq, a valid header",
            _stray_bytes(segment_name(MAX_SEQ), encode_segment_header(MAX_SEQ)),
            PIT_ONLY,
        ),
        Case("stray files", _stray_files, OK3),
        Case("leftover tmp files", _leftover_tmp, OK3),
    ]
    for which in ("first", "last", "META", "LOCK", tmp, "META.tmp"):
        for kind in ("fifo", "directory", "symlink-dev-zero", "symlink-outside", "dangling-symlink"):
            cases.append(Case(f"{which} is a {kind}", _replace_with(which, kind), REFUSE3))
    cases += [
        Case("last header: version 2", _header_of(-1, "version 2"), REFUSE3),
        Case("last header: unknown flags", _header_of(-1, "flags"), REFUSE3),
        Case("first header: version 2", _header_of(0, "version 2"), REFUSE3),
        Case("last header: another first seq", _header_of(-1, "another first seq"), REFUSE3),
        Case("last header: bad magic", _header_of(-1, "magic"), REFUSE3),
        Case("last header: checksum", _header_of(-1, "checksum"), PIT_ONLY),
        Case("middle header: checksum", _header_of(1, "checksum"), PIT_ONLY),
        Case("first header: checksum", _header_of(0, "checksum"), PIT_ONLY),
        Case("last segment: 10 bytes", _cut_to(-1, 10), REFUSE3),
        Case("last segment: empty", _cut_to(-1, 0), REFUSE3),
        Case("last segment: torn last frame", _torn_last_frame, PIT_ONLY),
        Case("first segment missing", _remove(0), PIT_ONLY),
        Case("a middle segment missing", _remove(2), PIT_ONLY),
        Case("last segment missing", _remove(-1), PIT_ONLY),
        Case("every segment missing, META kept", _remove_all(meta_too=False), PIT_ONLY),
        Case("every segment and META missing", _remove_all(meta_too=True), OK3),
        Case("a segment copied under a seq inside it", _misnamed_copy, REFUSE3),
        Case("two segments holding one seq", _overlapping_segment, REFUSE3),
        Case("META empty", _meta(lambda b: b""), REFUSE3),
        Case("META cut short", _meta(lambda b: (b.dir / "META").read_bytes()[:30]), REFUSE3),
        Case("META bad magic", _meta(lambda b: b"X" + (b.dir / "META").read_bytes()[1:]), REFUSE3),
        Case("META version 3", _meta(lambda b: _meta_version(b, 3)), REFUSE3),
        Case("META version 1, checkpoint beyond the end", _meta(_meta_v1_beyond), PIT_ONLY),
        Case("META of 1 GiB (sparse)", _sparse_meta, REFUSE3),
        Case("last segment then 256 MiB of zeros (sparse)", _sparse_tail, OK3),
        Case("damage, then 16 MiB of candidate frames", _candidates_tail, PIT_ONLY),
    ]
    return cases


def _meta_version(b: Base, version: int) -> bytes:
    raw = bytearray((b.dir / "META").read_bytes())
    raw[8:12] = struct.pack("<I", version)
    body = bytes(raw[:-4])
    return body + struct.pack("<I", crc32c(body))


#: The cases of the default run: one of each kind (the long run has every digit class).
CASES_SHORT: Final = (
    "name with digit U+0661",
    "name with digit U+FF11",
    "name with a superscript one",
    "segment name of seq 0, a header for seq 0",
    "the largest 20-digit number",
    "the largest seq, empty",
    "the largest seq, a valid header",
    "stray files",
    "leftover tmp files",
    "first is a fifo",
    "last is a directory",
    "last is a symlink-outside",
    "META is a symlink-dev-zero",
    "META is a fifo",
    "LOCK is a symlink-outside",
    f"{segment_name(10**6)}.tmp is a directory",
    "META.tmp is a dangling-symlink",
    "last header: version 2",
    "first header: version 2",
    "last header: another first seq",
    "middle header: checksum",
    "first header: checksum",
    "last segment: empty",
    "first segment missing",
    "a middle segment missing",
    "every segment missing, META kept",
    "two segments holding one seq",
    "META version 3",
    "META version 1, checkpoint beyond the end",
    "META of 1 GiB (sparse)",
)


# -- running a case ------------------------------------------------------------------------------


def _prepare(root: Path, base: Base, case: Case, tag: str) -> Path:
    """A fresh copy of the base log with the case's change applied."""
    d = root / tag
    shutil.copytree(base.dir, d)  # the base holds regular files only
    case.change(d, base)
    return d


def _entries(d: Path) -> dict[str, str]:
    """What each name in ``d`` is: ``file``, ``symlink:TARGET``, ``dir``, ``fifo``, ``other``."""
    out = {}
    for name in os.listdir(d):
        mode = os.lstat(d / name).st_mode
        if stat.S_ISREG(mode):
            out[name] = "file"
        elif stat.S_ISLNK(mode):
            out[name] = "symlink:" + os.readlink(d / name)
        elif stat.S_ISDIR(mode):
            out[name] = "dir"
        elif stat.S_ISFIFO(mode):
            out[name] = "fifo"
        else:
            out[name] = "other"
    return out


class Snapshot:
    """What a directory held: each name's kind, and each regular file's bytes (see _content)."""

    def __init__(self, d: Path) -> None:
        self.kinds = _entries(d)
        self.data: dict[str, bytes] = {}
        for name, kind in self.kinds.items():
            if kind == "file":
                self.data[name] = _content(d / name)

    def same(self, d: Path, name: str) -> bool:
        return _content(d / name) == self.data[name]

    def prefix_of(self, d: Path, name: str) -> bool:
        """The file now holds a prefix of what it held."""
        now = _content(d / name)
        return len(now) <= len(self.data[name]) and self.data[name].startswith(now)


def _content(path: Path) -> bytes:
    """A file's bytes; for one over 32 MiB (the sparse cases, never cut), its first MiB and
    what ``stat`` says of it (any write changes its modification time)."""
    st = path.stat()
    if st.st_size <= 32 << 20:
        return path.read_bytes()
    with path.open("rb") as f:
        head = f.read(1 << 20)
    return b"stat:%d:%d:%d:" % (st.st_size, st.st_mtime_ns, st.st_ino) + head


@dataclass
class Result:
    case: str
    runs: int = 0
    peak: int = 0
    violations: list[str] = field(default_factory=list)


def _measured(result: Result, what: str, call: Callable[[], object]) -> object:
    """Run ``call`` with tracemalloc's peak reset; record it and a violation over the limit."""
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    try:
        return call()
    finally:
        peak = tracemalloc.get_traced_memory()[1] - before
        result.peak = max(result.peak, peak)
        result.runs += 1
        if peak > MEMORY_LIMIT:
            result.violations.append(f"{what}: {peak / 2**20:.0f} MiB of Python allocations")


async def _open_close(d: Path, mode: str) -> asyncwal.RecoveryReport | None:
    log = await asyncwal.open(d, recovery=mode, **OPTIONS)
    report = log.recovery_report
    await log.close()
    return report


def _check_untouched(result: Result, what: str, d: Path, ref: Snapshot, *, lock_too: bool) -> None:
    before, after = dict(ref.kinds), _entries(d)
    if not lock_too:
        before.pop("LOCK", None)
        after.pop("LOCK", None)
    if before != after:
        result.violations.append(f"{what}: names changed {sorted(set(before) ^ set(after))}")
        return
    for name, kind in before.items():
        if kind == "file" and not ref.same(d, name):
            result.violations.append(f"{what}: {name} changed")


def _check_opened(
    result: Result, what: str, d: Path, ref: Snapshot, gone: set[str], cut: tuple[str, int] | None
) -> None:
    """After an open that succeeded: only what the plan names is gone or shortened."""
    before, after = ref.kinds, _entries(d)
    for name, kind in before.items():
        if name in ("META", "LOCK") or name in gone:
            continue
        if name not in after:
            result.violations.append(f"{what}: {name} was removed, and recovery said nothing of it")
        elif after[name] != kind:
            result.violations.append(f"{what}: {name} became a {after[name]}")
        elif kind == "file":
            if cut is not None and name == cut[0]:
                size = (d / name).stat().st_size
                if size != cut[1] or not ref.prefix_of(d, name):
                    result.violations.append(f"{what}: {name} was cut to {size}, not to the plan's {cut[1]}")
            elif not ref.same(d, name):
                result.violations.append(f"{what}: {name} changed")


def _lock_not_regular(ref: Snapshot) -> bool:
    return ref.kinds.get("LOCK", "file") != "file"


def run_case(root: Path, base: Base, case: Case) -> Result:
    result = Result(case.name)
    ops = OsFileOps()
    for mode, expected in zip(MODES_ORDER, case.expect, strict=True):
        d = _prepare(root, base, case, f"open-{mode}")
        ref = Snapshot(d)
        what = f"open({mode})"
        scan = scan_log(ReadOnlyFileOps(ops), str(d), MAX_LENGTH, read="all", count_after=mode != "strict")
        plan = decide(scan, mode)
        outcome = "?"
        try:
            report = _measured(result, what, functools.partial(asyncio.run, _open_close(d, mode)))
            outcome = "ok" if report is None else "cut"
            if plan.error is not None:
                result.violations.append(f"{what}: opened, but the plan said {plan.error}")
            elif report != plan.report:
                result.violations.append(f"{what}: report {report} is not the plan's {plan.report}")
            gone = {os.path.basename(p) for p in (*plan.remove, *plan.unlink)}
            cut = (os.path.basename(plan.truncate[0]), plan.truncate[1]) if plan.truncate else None
            _check_opened(result, what, d, ref, gone, cut)
        except asyncwal.CorruptLogError as exc:
            outcome = "refuse"
            if plan.error is None or str(plan.error) != str(exc):
                result.violations.append(f"{what}: refused with {exc}, the plan said {plan.error or 'open'}")
            _check_untouched(result, what, d, ref, lock_too=False)
        except NotRegularFileError as exc:
            outcome = "refuse"
            if not _lock_not_regular(ref):
                result.violations.append(f"{what}: {exc!r} with a LOCK that is a file")
            _check_untouched(result, what, d, ref, lock_too=True)
        except Exception as exc:
            result.violations.append(f"{what}: raised {exc!r}")
        if outcome != expected:
            result.violations.append(f"{what}: {outcome}, documented: {expected}")
        shutil.rmtree(d)
    for argv in COMMANDS:
        d = _prepare(root, base, case, "cli-" + "-".join(argv))
        ref = Snapshot(d)
        what = "asyncwal " + " ".join(argv)
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                status = _measured(result, what, functools.partial(cli.main, [*argv, str(d)]))
        except BaseException as exc:  # a traceback: the command let an exception out
            result.violations.append(f"{what}: raised {exc!r}")
            status = None
        if status not in (0, 1, 2):
            result.violations.append(f"{what}: exit status {status!r}")
        if argv[0] != "repair":
            _check_untouched(result, what, d, ref, lock_too=True)
        elif status == 0:
            _check_repaired(result, what, d, ref)
        else:
            _check_untouched(result, what, d, ref, lock_too=False)
        shutil.rmtree(d)
    if base.outside is not None and base.outside.read_bytes() != _OUTSIDE:
        result.violations.append("a file outside the log (a symbolic link's target) changed")
    return result


def _check_repaired(result: Result, what: str, d: Path, ref: Snapshot) -> None:
    """After a repair: the bytes gone from a segment are in a .broken copy, nothing else changed."""
    after = _entries(d)
    for name, kind in ref.kinds.items():
        if kind != "file" or name in ("META", "LOCK"):
            continue
        copies = [_content(d / n) for n in after if n.startswith(name + ".broken")]
        if name not in after:
            leftover = is_leftover_tmp(name) or _below_low_water(name, d)
            if ref.data[name] not in copies and not leftover:
                result.violations.append(f"{what}: {name} was removed without a copy")
        elif not ref.same(d, name) and ref.data[name] not in copies:  # (kept whole, a new one made)
            now = _content(d / name)
            if not ref.prefix_of(d, name) or ref.data[name][len(now) :] not in copies:
                result.violations.append(f"{what}: {name} changed, and its cut bytes were not kept")


def _below_low_water(name: str, d: Path) -> bool:
    """A segment below the low-water mark goes without a copy: truncate_before had let it go."""
    first = parse_segment_name(name)
    try:
        low_water = decode_meta((d / "META").read_bytes()).low_water
    except (OSError, FormatError):
        return False
    return first is not None and first < low_water


_OUTSIDE: Final = b"a file outside the log that must never change" * 20
MODES_ORDER: Final = ("tolerate_tail", "strict", "point_in_time")
assert set(MODES_ORDER) == set(MODES)


def run_cases(root: Path, names: Iterator[str] | None = None, *, seed: int = 0) -> Iterator[Result]:
    """Run the named cases (all of them by default), in an order shuffled by ``seed``."""
    base = build_base(root)
    cases = all_cases()
    if names is not None:
        wanted = set(names)
        cases = [c for c in cases if c.name in wanted]
    random.Random(seed).shuffle(cases)
    for i, case in enumerate(cases):
        work = root / f"case-{i}"
        work.mkdir()
        try:
            yield run_case(work, base, case)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.hostile")
    parser.add_argument("dir", help="an empty directory to work in (on a real file system)")
    parser.add_argument("--long", action="store_true", help="every case, not the short selection")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    tracemalloc.start()
    root = Path(args.dir)
    names = None if args.long else iter(CASES_SHORT)
    total = Result("all")
    cases = 0
    for result in run_cases(root, names, seed=args.seed):
        cases += 1
        total.runs += result.runs
        total.peak = max(total.peak, result.peak)
        total.violations += [f"{result.case}: {v}" for v in result.violations]
        print(
            json.dumps({"case": result.case, "runs": result.runs, "violations": result.violations}),
            flush=True,
        )
    print(
        json.dumps(
            {"cases": cases, "runs": total.runs, "peak_bytes": total.peak, "violations": total.violations}
        ),
        flush=True,
    )
    return 1 if total.violations else 0


if __name__ == "__main__":
    sys.exit(main())
