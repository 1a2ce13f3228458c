"""The hostile-directory campaign (tests/hostile.py) in a child process with a watchdog, and a
few of its cases as real subprocesses of the command line.

The default run takes one case of each kind; ``pytest -m campaign`` (or
ASYNCWAL_CAMPAIGN_TRIALS=N) takes every case, every Unicode digit class included, on the disk
(the default run uses a RAM file system when there is one: the cases fsync a lot).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.campaign import campaign_trials

ROOT = Path(__file__).resolve().parents[1]
#: A hang (a FIFO read, a lock wait) ends the child here and fails the test.
WATCHDOG_SECONDS = 90.0
#: RSS the child may reach, whatever a case holds (its Python allocations are held to
#: 100 MiB per operation inside it; this bounds what tracemalloc does not see).
RSS_LIMIT_KIB = 400 * 1024


def _work_dir(tmp_path: Path, *, long: bool) -> Path:
    shm = Path("/dev/shm")
    if not long and shm.is_dir() and os.access(shm, os.W_OK):
        d = shm / f"asyncwal-hostile-{os.getpid()}-{tmp_path.name}"
        d.mkdir()
        return d
    return tmp_path


def _run_campaign(
    work: Path, *extra: str, timeout: float = WATCHDOG_SECONDS
) -> tuple[list[dict[str, object]], int]:
    """Run ``python -m tests.hostile`` in a child; its JSON lines, and its peak RSS (KiB)."""
    code = (
        "import resource, sys\n"
        "from tests.hostile import main\n"
        "status = main(sys.argv[1:])\n"
        "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)\n"
        "sys.exit(status)\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, str(work), *extra],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode()
        last = [line for line in out.splitlines() if line.startswith("{")][-1:]
        pytest.fail(f"the campaign hung (watchdog {timeout} s); the last case done: {last}")
    lines = proc.stdout.splitlines()
    rss = int(next(line.split()[1] for line in lines if line.startswith("RSS ")))
    results = [json.loads(line) for line in lines if line.startswith("{")]
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    return results, rss


def _check(results: list[dict[str, object]], rss: int) -> tuple[int, int, int]:
    """Fail on any violation; return the summary's cases, runs and peak of Python allocations."""
    summary = results[-1]
    violations = summary.get("violations")
    assert isinstance(violations, list), results
    assert violations == [], "\n".join(map(str, violations))
    assert rss < RSS_LIMIT_KIB, f"the campaign's child peaked at {rss // 1024} MiB"
    cases, runs, peak = summary["cases"], summary["runs"], summary["peak_bytes"]
    assert isinstance(cases, int) and isinstance(runs, int) and isinstance(peak, int)
    return cases, runs, peak


def test_hostile_directories_short(tmp_path: Path) -> None:
    work = _work_dir(tmp_path, long=False)
    try:
        cases, runs, peak = _check(*_run_campaign(work))
    finally:
        if work != tmp_path:
            shutil.rmtree(work, ignore_errors=True)
    assert (cases, runs) == (30, 30 * 8)  # three recovery modes and five commands per case
    assert peak < 100 << 20


@pytest.mark.campaign
def test_hostile_directories_long(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    trials = campaign_trials(request.config.getoption("markexpr") or "", 1)
    if trials is None:
        pytest.skip("long campaign: run with -m campaign or ASYNCWAL_CAMPAIGN_TRIALS=N")
    for seed in range(trials):
        work = tmp_path / f"seed-{seed}"
        work.mkdir()
        cases, _runs, _peak = _check(*_run_campaign(work, "--long", "--seed", str(seed), timeout=3000))
        assert cases >= 120


# -- a few cases as real subprocesses of the command line --------------------------------------


def _asyncwal(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncwal", *argv], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    from tests.hostile import build_base

    return build_base(tmp_path).dir


@pytest.mark.parametrize("command", ["info", "dump", "verify", "repair"])
def test_a_fifo_named_like_a_segment_is_a_clear_error_not_a_hang(log_dir: Path, command: str) -> None:
    fifo = log_dir / "00000000000000999999.wal"
    os.mkfifo(fifo)
    proc = _asyncwal(command, str(log_dir))
    assert "Traceback" not in proc.stderr, proc.stderr
    if command == "info":
        assert proc.returncode == 0 and "not a regular file" in proc.stdout
    else:
        assert proc.returncode == 1, (proc.stdout, proc.stderr)
        assert "FIFO" in proc.stdout + proc.stderr
    assert fifo.exists()


def test_meta_linked_to_dev_zero_and_a_directory_named_like_a_segment(log_dir: Path) -> None:
    (log_dir / "META").unlink()
    (log_dir / "META").symlink_to("/dev/zero")
    (log_dir / "00000000000000999999.wal.tmp").mkdir()
    for command in ("info", "verify", "dump"):
        proc = _asyncwal(command, str(log_dir))
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode in (0, 1)
    proc = _asyncwal("verify", str(log_dir))
    assert proc.returncode == 1 and "symbolic link, not a regular file" in proc.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["repair", "--max-record-size", "0"],
        ["repair", "--max-record-size", "-5"],
        ["verify", "--max-batch-bytes", str(2**31 + 1)],
        ["dump", "--max-record-size", "lots"],
    ],
)
def test_bad_limits_are_usage_errors(log_dir: Path, argv: list[str]) -> None:
    proc = _asyncwal(*argv, str(log_dir))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "size limit" in proc.stderr or "not a number" in proc.stderr
