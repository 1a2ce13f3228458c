"""The ``asyncwal`` command line: info, dump, verify, repair and bench, on real log directories.

Logs are built with the engine and damaged the way tests/test_recovery.py damages them. Every
reading command is checked to leave the directory byte-identical, also while another event
loop (or process) has the log open.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import re
import struct
import subprocess
import sys
import threading
import tracemalloc
import uuid
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

import asyncwal
from asyncwal import cli
from asyncwal._filenames import segment_name
from asyncwal._fileops import OsFileOps
from asyncwal._fileops_wrappers import free_broken_name
from asyncwal._format import FRAME_HEADER_SIZE, SEGMENT_HEADER_SIZE, decode_meta, max_frame_length
from asyncwal._inspect import LogFrames, read_log
from asyncwal._recovery import decide, scan_log
from asyncwal.testing import MemoryFileOps

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

RECORD = 100  # payload bytes of the records written by _build
FRAME = FRAME_HEADER_SIZE + RECORD
MAX_LENGTH = max_frame_length(asyncwal.Options().max_record_size, asyncwal.Options().max_batch_bytes)


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Output must not depend on the terminal the tests run in."""
    for name in ("COLUMNS", "FORCE_COLOR", "NO_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)


def _payload(i: int) -> bytes:
    return b"%03d" % i + b"." * (RECORD - 3)


def _build(path: Path, n: int, **options: Any) -> None:
    """A log of ``n`` records of RECORD bytes (seq i+1 holds _payload(i))."""

    async def fill() -> None:
        async with asyncwal.open(path, **options) as log:
            for i in range(n):
                await log.append(_payload(i))

    asyncio.run(fill())


def _offset(i: int) -> int:
    """File offset of the i-th (0-based) record of a segment made by _build."""
    return SEGMENT_HEADER_SIZE + i * FRAME


def _hashes(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _read_only(capsys: pytest.CaptureFixture[str], path: Path, *argv: str) -> tuple[int, str, str]:
    """Run a reading command and check that it changed no byte of the directory."""
    before = _hashes(path)
    result = _run(capsys, *argv)
    assert _hashes(path) == before, f"{argv[0]} modified the log directory"
    return result


@contextmanager
def _held_open(path: Path, **options: Any) -> Iterator[None]:
    """Keep the log open in an event loop of another thread until the block ends."""
    ready = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    async def hold() -> None:
        async with asyncwal.open(path, **options):
            ready.set()
            await asyncio.get_running_loop().run_in_executor(None, release.wait)

    def run() -> None:
        try:
            asyncio.run(hold())
        except BaseException as exc:
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert ready.wait(10)
        assert not errors, errors
        yield
    finally:
        release.set()
        thread.join(10)
    assert not errors, errors


# -- info -------------------------------------------------------------------------------------


def test_info_describes_the_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "wal"

    async def build() -> None:
        async with asyncwal.open(path, segment_size=4096) as log:
            for i in range(60):
                await log.append(_payload(i))
            await log.append_batch([b"a", b"bc"])
            await log.checkpoint(b"snapshot-7")

    asyncio.run(build())
    code, out, err = _read_only(capsys, path, "info", str(path))
    assert code == 0 and err == ""
    lines = dict(line.split("  ", 1) for line in out.splitlines()[:4])
    lines = {k.strip(): v.strip() for k, v in lines.items()}
    log_id = lines.pop("log id")
    assert lines == {"log": f"{path}", "format": "version 1", "segments": "2 (8.0 KiB on disk)"}

    meta = decode_meta((path / "META").read_bytes())
    assert log_id == meta.log_id and str(uuid.UUID(log_id)) == log_id
    assert "records         seq 1..62 (62 records)" in out
    assert 'checkpoint      seq 62, data "snapshot-7" (10 bytes)' in out
    assert "lock            free\n" in out
    assert segment_name(1) in out and segment_name(34) in out
    assert "last: records end at offset" in out


def test_info_names_the_lock_holder_while_the_log_is_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "wal"
    _build(path, 5)
    with _held_open(path):
        code, out, _ = _read_only(capsys, path, "info", str(path))
        assert code == 0
        assert f"held by pid {os.getpid()}" in out
        assert "seq 1..5 (5 records)" in out
        code, out, _ = _read_only(capsys, path, "dump", str(path), "--format", "json")
        assert code == 0 and [json.loads(line)["seq"] for line in out.splitlines()] == [1, 2, 3, 4, 5]
        code, out, _ = _read_only(capsys, path, "verify", str(path))
        assert code == 0 and "every checksum matches" in out
    # Closed cleanly: the lock is free and names nobody.
    code, out, _ = _read_only(capsys, path, "info", str(path))
    assert "lock            free\n" in out


def test_python_m_asyncwal_in_another_process_while_the_log_is_open(tmp_path: Path) -> None:
    path = tmp_path / "wal"
    _build(path, 3)
    with _held_open(path):
        before = _hashes(path)
        proc = subprocess.run(
            [sys.executable, "-m", "asyncwal", "info", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert _hashes(path) == before
    assert proc.returncode == 0, proc.stderr
    assert f"held by pid {os.getpid()}" in proc.stdout
    assert "seq 1..3 (3 records)" in proc.stdout


def test_info_notes_a_lock_left_by_a_dead_holder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "wal"
    _build(path, 1)
    (path / "LOCK").write_text("4242\n")  # what a SIGKILLed holder leaves behind
    code, out, _ = _read_only(capsys, path, "info", str(path))
    assert code == 0 and "free (pid 4242 held it last and did not close the log cleanly)" in out


# -- dump -------------------------------------------------------------------------------------


async def _mixed_log(path: Path) -> None:
    async with asyncwal.open(path, segment_size=4096) as log:
        for i in range(50):
            await log.append(_payload(i))
        await log.append_batch([b"a", b"\xff\x00", b"caf\xc3\xa9"])
        await log.append(b"")


def _json_data(obj: dict[str, Any]) -> bytes:
    data: str = obj["data"]
    return data.encode() if obj["encoding"] == "utf-8" else base64.b64decode(data)


def test_dump_text_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "wal"
    asyncio.run(_mixed_log(path))
    expected = [(i + 1, _payload(i)) for i in range(50)] + [
        (51, b"a"),
        (52, b"\xff\x00"),
        (53, b"caf\xc3\xa9"),
        (54, b""),
    ]

    code, out, _ = _read_only(capsys, path, "dump", str(path), "--format", "json")
    assert code == 0
    objs = [json.loads(line) for line in out.splitlines()]
    decoded = [
        (o["seq"], o["data"].encode() if o["encoding"] == "utf-8" else base64.b64decode(o["data"]))
        for o in objs
    ]
    assert decoded == expected
    assert all(o["length"] == len(d) for o, (_, d) in zip(objs, expected, strict=True))
    assert [o["type"] for o in objs[49:]] == ["data", "batch", "batch", "batch", "data"]
    assert objs[52]["encoding"] == "utf-8" and objs[52]["data"] == "café"
    assert objs[51]["encoding"] == "base64"

    code, out, _ = _read_only(capsys, path, "dump", str(path), "--from", "50", "--to", "53")
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == ["seq=50", "seq=51", "seq=52", "seq=53"]
    assert lines[1].endswith("batch=1/3 data=a") and "data=hex:ff00" in lines[2]
    assert lines[0].startswith(f"seq=50 len={RECORD} at={segment_name(34)}:")


def test_dump_raw(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    path = tmp_path / "wal"
    asyncio.run(_mixed_log(path))
    before = _hashes(path)
    assert cli.main(["dump", str(path), "--format", "raw", "--from", "52"]) == 0
    raw = capsysbinary.readouterr().out
    assert _hashes(path) == before
    records = []
    while raw:
        (n,) = struct.unpack_from("<I", raw)
        records.append(raw[4 : 4 + n])
        raw = raw[4 + n :]
    assert records == [b"\xff\x00", b"caf\xc3\xa9", b""]


def test_dump_from_beyond_the_end_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "wal"
    _build(path, 3)
    assert _read_only(capsys, path, "dump", str(path), "--from", "99") == (0, "", "")


def test_dump_from_does_not_read_earlier_segments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "wal"
    _build(path, 120, segment_size=4096)
    names = sorted(p.name for p in path.glob("*.wal"))
    # Damage an early segment: dumping from a later one must neither read nor report it.
    early = path / names[0]
    early.write_bytes(b"garbage" + early.read_bytes()[7:])
    start = int(names[-1][:20])
    code, out, err = _read_only(capsys, path, "dump", str(path), "--from", str(start))
    assert code == 0 and err == ""
    assert [int(line.split()[0][4:]) for line in out.splitlines()] == list(range(start, 121))


def test_dump_stops_at_damage_with_status_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "wal"
    _build(path, 10)
    seg = path / segment_name(1)
    data = bytearray(seg.read_bytes())
    data[_offset(6) + FRAME_HEADER_SIZE + 3] ^= 0x01
    seg.write_bytes(bytes(data))
    code, out, err = _read_only(capsys, path, "dump", str(path))
    assert code == 1
    assert len(out.splitlines()) == 6
    assert f"damage in {segment_name(1)} at offset {_offset(6)} (checksum mismatch) after seq 6" in err


def test_dump_into_a_closed_pipe_stops_quietly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "wal"
    _build(path, 3)

    class ClosedPipe(io.StringIO):
        def write(self, s: str) -> int:
            raise BrokenPipeError

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert cli.main(["dump", str(path)]) == 0


# -- memory ------------------------------------------------------------------------------------


def test_reading_a_log_holds_one_chunk_plus_one_frame(tmp_path: Path) -> None:
    """The largest read is a chunk, not a segment, and little is read twice."""
    path = tmp_path / "wal"
    _build(path, 200, preallocate=False)
    reads: list[int] = []
    log = read_log(OsFileOps(), str(path), MAX_LENGTH, read="all", on_bytes=reads.append)
    assert log.segments[0].records == 200
    assert max(reads) <= 1 << 20
    size = (path / segment_name(1)).stat().st_size
    assert size <= sum(reads) <= size + len(reads) * FRAME
    assert sum(frame.count for _, frame in LogFrames(OsFileOps(), log, MAX_LENGTH)) == 200


# -- verify -----------------------------------------------------------------------------------


def test_verify_a_clean_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "wal"
    _build(path, 120, segment_size=4096)
    code, out, err = _read_only(capsys, path, "verify", str(path))
    assert code == 0 and err == ""
    assert "checked 120 records in 120 frames: every checksum matches" in out
    assert "Opening the log would change nothing." in out
    assert out.count(" ok") == len(list(path.glob("*.wal")))


def test_verify_a_torn_tail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "wal"
    _build(path, 10, preallocate=False)
    seg = path / segment_name(1)
    seg.write_bytes(seg.read_bytes()[: _offset(9) + 30])
    code, out, _ = _read_only(capsys, path, "verify", str(path))
    assert code == 1
    assert f"DAMAGED at offset {_offset(9):,}" in out
    assert f"tolerate_tail (default) cuts {segment_name(1)} from offset {_offset(9):,}" in out
    assert "the log then ends at seq 9" in out
    assert "strict                  refuses to open" in out
    assert f"asyncwal repair {path}\n" in out  # the default mode is enough


def test_verify_damage_before_the_last_segment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "wal"
    _build(path, 120, segment_size=4096)
    names = sorted(p.name for p in path.glob("*.wal"))
    victim = path / names[1]
    data = bytearray(victim.read_bytes())
    data[_offset(1) + 30] ^= 0xFF
    victim.write_bytes(bytes(data))
    code, out, _ = _read_only(capsys, path, "verify", str(path))
    assert code == 1
    assert f"{names[1]} at offset {_offset(1):,}: checksum mismatch" in out
    assert "tolerate_tail (default) refuses to open: damage in a segment that is not the last" in out
    later = len(names) - 2
    assert f"point_in_time           cuts {names[1]} from offset {_offset(1):,}" in out
    assert f"removes {later} later segment" in out
    assert f"asyncwal repair {path} --mode point_in_time" in out
    assert "GAP" not in out  # the segments after the damage are not a second problem


@pytest.mark.parametrize("mode", ["tolerate_tail", "point_in_time", "strict"])
def test_the_dry_run_predicts_what_opening_does(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "wal"
    _build(path, 120, segment_size=4096)
    names = sorted(p.name for p in path.glob("*.wal"))
    last = path / names[-1]
    data = bytearray(last.read_bytes())
    data[_offset(2) : _offset(3)] = bytes(FRAME)  # torn: intact records follow the hole
    last.write_bytes(bytes(data))
    (path / "00000000000000000999.wal.tmp").write_bytes(b"partial")
    before = _hashes(path)
    plan = decide(scan_log(OsFileOps(), str(path), MAX_LENGTH, read="all"), mode)
    assert _hashes(path) == before

    async def open_it() -> asyncwal.RecoveryReport | None:
        async with asyncwal.open(path, recovery=mode, segment_size=4096) as log:
            return log.recovery_report

    if mode == "strict":
        assert plan.error is not None
        with pytest.raises(asyncwal.CorruptLogError) as exc_info:
            asyncio.run(open_it())
        assert str(exc_info.value) == str(plan.error)
        assert _hashes(path) == before  # a refusal changes nothing, leftovers included
    else:
        assert plan.error is None and plan.report is not None
        assert plan.report.records_dropped > 0
        assert asyncio.run(open_it()) == plan.report
        assert plan.truncate == (str(last), _offset(2))
        assert str(path / "00000000000000000999.wal.tmp") in plan.remove


def test_verify_progress_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "wal"
    _build(path, 20)
    code, _, err = _read_only(capsys, path, "verify", str(path), "--progress")
    assert code == 0
    assert err.startswith("verify")  # the bar, drawn on stderr, ends full: done == total
    bar = re.search(r"([\d.]+)/([\d.]+) [KMG]?i?B", err)
    assert bar is not None and bar[1] == bar[2] and float(bar[2]) > 0


def test_verify_notes_leftovers_and_they_are_not_damage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "wal"

    async def build() -> None:
        async with asyncwal.open(path, segment_size=4096) as log:
            for i in range(120):
                await log.append(_payload(i))
            removed = [p.read_bytes() for p in sorted(path.glob("*.wal"))[:1]]
            await log.truncate_before(60)
        # A crash after META was written, before the unlink: put the first segment back.
        (path / segment_name(1)).write_bytes(removed[0])

    asyncio.run(build())
    (path / "META.tmp").write_bytes(b"half")
    code, out, _ = _read_only(capsys, path, "verify", str(path))
    assert code == 0
    assert f"note: {segment_name(1)} is below the low-water mark" in out
    assert "note: META.tmp was never renamed into place" in out
    assert f"removes leftovers META.tmp, {segment_name(1)}" in out

    code, out, _ = _run(capsys, "repair", str(path))
    assert code == 0
    assert f"removed leftover {segment_name(1)}" in out and "removed leftover META.tmp" in out
    assert not list(path.glob("*.broken*"))  # leftovers are not damage: no copies kept


# -- repair -----------------------------------------------------------------------------------


def test_repair_a_torn_tail_keeps_exactly_the_cut_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "wal"
    _build(path, 10)
    seg = path / segment_name(1)
    original = bytearray(seg.read_bytes())
    original[_offset(7) + FRAME_HEADER_SIZE + 5] ^= 0x10
    seg.write_bytes(bytes(original))
    code, out, err = _run(capsys, "repair", str(path))
    assert code == 0, err
    assert f"cut {segment_name(1)} at offset {_offset(7):,}: checksum mismatch" in out
    assert "2 valid-looking records after the damage were cut with it" in out
    assert "the log now holds seq 1..7; the next append gets seq 8" in out
    broken = path / (segment_name(1) + ".broken")
    assert broken.read_bytes() == bytes(original[_offset(7) :])
    assert seg.read_bytes() == bytes(original[: _offset(7)])
    assert f"kept bytes {_offset(7):,}..{len(original):,} of {segment_name(1)} in {broken}" in out
    # The repaired log verifies and opens without cutting anything.
    code, out, _ = _run(capsys, "verify", str(path))
    assert code == 0 and f"{segment_name(1)}.broken holds bytes cut by asyncwal repair" in out

    async def reopen() -> None:
        async with asyncwal.open(path) as log:
            assert log.recovery_report is None and log.last_seq == 7

    asyncio.run(reopen())


def test_repair_point_in_time_keeps_whole_removed_segments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "wal"
    _build(path, 120, segment_size=4096)
    names = sorted(p.name for p in path.glob("*.wal"))
    originals = {n: (path / n).read_bytes() for n in names}
    victim = bytearray(originals[names[1]])
    victim[_offset(1) + 30] ^= 0xFF
    (path / names[1]).write_bytes(bytes(victim))

    before = _hashes(path)
    code, _, err = _run(capsys, "repair", str(path))  # tolerate_tail refuses, and changes nothing
    assert code == 1 and "refused" in err and "--mode point_in_time" in err
    assert _hashes(path) == before

    code, out, err = _run(capsys, "repair", str(path), "--mode", "point_in_time")
    assert code == 0, err
    assert sorted(p.name for p in path.glob("*.wal")) == names[:2]
    assert (path / (names[1] + ".broken")).read_bytes() == bytes(victim[_offset(1) :])
    for name in names[2:]:
        assert (path / (name + ".broken")).read_bytes() == originals[name]
        assert f"removed the later segment {name}" in out
    first_of_victim = int(names[1][:20])
    assert (
        f"the log now holds seq 1..{first_of_victim}; the next append gets seq {first_of_victim + 1}" in out
    )


def test_repair_refuses_a_log_that_is_open(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "wal"
    _build(path, 3)
    with _held_open(path):
        code, _, err = _run(capsys, "repair", str(path))
    assert code == 1 and f"held by pid {os.getpid()}" in err


def test_repair_a_clean_log_cuts_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "wal"
    _build(path, 3)
    segments = {n: h for n, h in _hashes(path).items() if n.endswith(".wal")}
    code, out, _ = _run(capsys, "repair", str(path))
    assert code == 0 and "nothing to cut: the log opens cleanly" in out
    assert "the log now holds seq 1..3" in out
    assert {n: h for n, h in _hashes(path).items() if n.endswith(".wal")} == segments


def test_a_second_repair_never_overwrites_the_first_copy(tmp_path: Path) -> None:
    target = tmp_path / "x.wal"
    assert free_broken_name(OsFileOps(), str(target)) == str(target) + ".broken"
    (tmp_path / "x.wal.broken").write_bytes(b"1")
    (tmp_path / "x.wal.broken.2").write_bytes(b"2")
    assert free_broken_name(OsFileOps(), str(target)) == str(target) + ".broken.3"


# -- reading a log while it is written --------------------------------------------------------


def test_reading_commands_on_a_log_being_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "wal"
    _build(path, 1, segment_size=8192)
    stop = threading.Event()
    started = threading.Event()

    async def write() -> None:
        async with asyncwal.open(path, segment_size=8192) as log:
            i = 0
            while not stop.is_set():
                await log.append(_payload(i))
                i += 1
                if i == 50:
                    started.set()
            started.set()

    thread = threading.Thread(target=asyncio.run, args=(write(),))
    thread.start()
    try:
        assert started.wait(10)
        for _ in range(3):
            code, out, err = _run(capsys, "verify", str(path))
            assert code == 0, out + err
            code, out, err = _run(capsys, "dump", str(path), "--format", "json")
            assert code == 0, err
            seqs = [json.loads(line)["seq"] for line in out.splitlines()]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and len(seqs) >= 50
    finally:
        stop.set()
        thread.join(10)


# -- usage, output without rich, bench ----------------------------------------------------------


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "info", str(tmp_path / "missing"))[0] == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _run(capsys, "verify", str(empty))
    assert code == 2 and "not an asyncwal log" in err
    assert not list(empty.iterdir())
    path = tmp_path / "wal"
    _build(path, 1)
    assert _run(capsys, "dump", str(path), "--from", "5", "--to", "2")[0] == 2
    assert _run(capsys, "dump", str(path), "--format", "xml")[0] == 2
    assert _run(capsys, "frobnicate")[0] == 2
    assert _run(capsys)[0] == 2
    code, out, _ = _run(capsys, "--version")
    assert code == 0 and asyncwal.__version__ in out


def test_plain_output_without_rich(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "wal"
    _build(path, 4)
    monkeypatch.setitem(sys.modules, "rich", None)  # import rich -> ImportError
    code, out, err = _read_only(capsys, path, "verify", str(path), "--progress")
    assert code == 0
    assert "pip install 'asyncwal[cli]' for drawn tables and verify's progress bar" in err
    assert "segment                   first seq  last seq  records  status" in out
    assert f"{segment_name(1)}          1         4        4  ok" in out
    code, out, _ = _read_only(capsys, path, "info", str(path))
    assert code == 0 and "seq 1..4 (4 records)" in out


def test_import_asyncwal_does_not_import_rich() -> None:
    code = (
        "import sys, asyncwal, asyncwal.cli\n"
        "assert 'rich' not in sys.modules, 'rich imported at import time'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_bench_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "bench", str(tmp_path), "--seconds", "0.1", "--workers", "2")
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("| ") and "W |" not in line]
    assert [row.split("|")[1].strip() for row in rows] == ["sync", "batch", "none"]
    assert all(row.split("|")[3].strip() == "2" for row in rows)
    assert "measured sync  W=2" in err
    assert list(tmp_path.iterdir()) == []  # bench cleans up after itself


def test_a_missing_segment_and_a_bad_header(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "wal"
    _build(path, 120, segment_size=4096)
    names = sorted(p.name for p in path.glob("*.wal"))
    (path / names[1]).unlink()
    code, out, _ = _read_only(capsys, path, "verify", str(path))
    assert code == 1
    assert (
        f"{names[2]}: gap: segment starts at seq {int(names[2][:20])}, {int(names[1][:20])} expected" in out
    )
    assert f"point_in_time           removes {names[2]} and every later segment" in out
    code, out, err = _run(capsys, "dump", str(path))
    assert code == 1 and "gap" in err and len(out.splitlines()) == int(names[1][:20]) - 1

    # Damage the header checksum of the (new) last segment instead: not a torn write, so
    # only point_in_time removes it (whole, and kept).
    path2 = tmp_path / "wal2"
    _build(path2, 120, segment_size=4096)
    last = path2 / names[-1]
    original = last.read_bytes()
    damaged = original[:20] + bytes([original[20] ^ 1]) + original[21:]
    last.write_bytes(damaged)
    before = _hashes(path2)
    code, out, err = _run(capsys, "repair", str(path2))
    assert code == 1 and "not a torn write" in err
    assert _hashes(path2) == before
    code, out, err = _run(capsys, "repair", str(path2), "--mode", "point_in_time")
    assert code == 0, err
    assert f"removed {names[-1]}: segment header damaged: checksum mismatch" in out
    assert (path2 / (names[-1] + ".broken")).read_bytes() == damaged
    assert f"the log now holds seq 1..{int(names[-1][:20]) - 1}" in out

    # A file with a segment's name that is not a segment (bad magic): no mode touches it.
    path3 = tmp_path / "wal3"
    _build(path3, 120, segment_size=4096)
    (path3 / names[-1]).write_bytes(b"X" + original[1:])
    before = _hashes(path3)
    for mode in ("tolerate_tail", "point_in_time"):
        code, out, err = _run(capsys, "repair", str(path3), "--mode", mode)
        assert code == 1 and "not an asyncwal segment" in err
    assert _hashes(path3) == before


def test_dump_of_a_huge_batch_holds_one_frame_not_its_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``dump --to 3`` of a log whose first frame is a batch of 1.5M records: memory is that
    frame and its length table (it was ~215 MiB), and only three records are printed."""
    path = tmp_path / "wal"

    async def write() -> None:
        async with asyncwal.open(path) as log:
            await log.append_batch([b""] * 1_500_000)

    asyncio.run(write())
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        code = cli.main(["dump", str(path), "--to", "3"])
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    out, _ = capsys.readouterr()
    assert code == 0 and len(out.splitlines()) == 3
    assert peak < 40 << 20, f"{peak / 2**20:.1f} MiB"


# -- the same commands on a file system in memory ----------------------------------------------


def test_every_reading_command_and_repair_on_memory_file_ops(capsys: pytest.CaptureFixture[str]) -> None:
    """The command line works on any FileOps: here MemoryFileOps, with no real file."""
    mem = MemoryFileOps()
    path = "/mem/wal"

    async def build() -> None:
        async with asyncwal.open(path, file_ops=mem, segment_size=4096) as log:
            for i in range(80):
                await log.append(_payload(i))

    asyncio.run(build())
    names = sorted(n for n in mem.files(path) if n.endswith(".wal"))
    before = mem.snapshot()
    for argv in (["info"], ["dump", "--format", "json"], ["verify"]):
        code = cli.main([*argv, path], file_ops=mem)
        out, err = capsys.readouterr()
        assert code == 0, err
        assert mem.snapshot() == before, f"{argv[0]} changed the log"
    assert "seq 1..80 (80 records)" in cli_output(mem, capsys, "info", path)
    # Damage the last segment; verify says what repair will cut, repair keeps the bytes.
    last = f"{path}/{names[-1]}"
    data = bytearray(mem.read_bytes(last))
    data[_offset(1) + 30] ^= 0xFF
    mem.write_bytes(last, bytes(data))
    assert cli.main(["verify", path], file_ops=mem) == 1
    out, _ = capsys.readouterr()
    assert f"tolerate_tail (default) cuts {names[-1]} from offset {_offset(1):,}" in out
    assert cli.main(["repair", path], file_ops=mem) == 0
    out, _ = capsys.readouterr()
    assert mem.read_bytes(last + ".broken") == bytes(data[_offset(1) :])
    assert mem.read_bytes(last) == bytes(data[: _offset(1)])


def cli_output(mem: MemoryFileOps, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert cli.main(list(argv), file_ops=mem) == 0
    return capsys.readouterr().out
