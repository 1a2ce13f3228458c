"""Smoke test of the benchmark suite (bench/): every subject runs for a fraction of a second.

It goes through the same code as ``python -m bench`` (``run_cell``, in-process here to stay
fast; one cell also through the child-process path), so a subject cannot rot unnoticed.
The Redis subjects are skipped only when ``redis-server``/``redis-benchmark`` are not
installed (``python -m bench --setup`` installs them); a missing Python package of a peer is
a failure, not a skip.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# bench/ is a top-level package of the repository, not part of the installed distribution.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from asyncwal._measure import MAX_WINDOWS, MIN_ROUNDS, Window  # noqa: E402
from bench._cell import run_cell  # noqa: E402
from bench._harness import CellResult, CellSpec  # noqa: E402
from bench._redis import parse_redis_benchmark  # noqa: E402
from bench._report import evaluate_targets, render_markdown, render_text  # noqa: E402
from bench._runner import merge_repeats, plan_cells, run_child  # noqa: E402
from bench._subjects import SUBJECTS, select_subjects  # noqa: E402

if TYPE_CHECKING:
    from bench._subjects import SubjectInfo

SECONDS = 0.1
WARMUP = 0.05
WORKERS = 4


def _spec(name: str, loop: str | None, tmp_path: Path, workers: int = WORKERS, size: int = 128) -> CellSpec:
    return CellSpec(
        subject=name,
        loop=loop,
        workers=workers,
        size=size,
        seconds=SECONDS,
        warmup=WARMUP,
        workdir=str(tmp_path / "cell"),
    )


def _skip_if_tools_missing(info: SubjectInfo) -> None:
    missing = [t for t in info.needs_tools if shutil.which(t) is None]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not installed (python -m bench --setup, or apt-get install redis-server)"
        )


def _check(result: CellResult, spec: CellSpec) -> None:
    assert result.skipped is None, result.skipped
    assert result.error is None, result.error
    assert (result.subject, result.loop, result.workers, result.size) == (
        spec.subject,
        spec.loop,
        spec.workers,
        spec.size,
    )
    assert result.appends > 0
    assert result.appends_per_s > 0
    assert result.mb_per_s == pytest.approx(result.appends_per_s * spec.size / 1e6)
    assert result.p50_us is not None
    assert result.p99_us is not None
    assert result.p999_us is not None
    assert 0 < result.p50_us <= result.p99_us <= result.p999_us
    assert len(result.cdf) > 10
    assert result.cpu_us_per_append is not None
    assert result.cpu_us_per_append > 0
    assert result.rss_peak_mib is not None
    assert result.rss_peak_mib > 0
    if result.fsyncs is not None and result.fsyncs > 0:
        assert result.records_per_fsync is not None
        assert result.records_per_fsync >= 1.0
    # The JSON form round-trips.
    again = CellResult.from_json(json.loads(json.dumps(result.to_json())))
    assert again == result


@pytest.mark.parametrize("name", list(SUBJECTS))
def test_every_subject_runs(name: str, tmp_path: Path) -> None:
    info = SUBJECTS[name]
    _skip_if_tools_missing(info)
    spec = _spec(name, "asyncio" if info.has_loop else None, tmp_path)
    result = run_cell(spec)
    _check(result, spec)
    assert not (tmp_path / "cell").exists(), "a cell must remove its files"
    if info.group in ("raw", "byhand", "asyncwal") and name not in ("raw-write", "asyncwal-none"):
        # Exact or engine-reported fsync counts; a durable raw loop syncs at least once a step.
        assert result.fsyncs is not None
        assert result.fsyncs > 0


@pytest.mark.parametrize("name", ["asyncwal-sync", "sqlite-full"])
def test_uvloop_cells(name: str, tmp_path: Path) -> None:
    pytest.importorskip("uvloop")
    spec = _spec(name, "uvloop", tmp_path, workers=16)
    _check(run_cell(spec), spec)


def test_group_commit_counts_are_exact(tmp_path: Path) -> None:
    spec = _spec("raw-group", None, tmp_path, workers=8)
    result = run_cell(spec)
    _check(result, spec)
    assert result.records_per_fsync == 8.0


def test_child_process_path(tmp_path: Path) -> None:
    # The path `python -m bench` takes: a fresh interpreter per cell, result via JSON.
    spec = _spec("raw-fdatasync", None, tmp_path)
    result = run_child(spec, timeout=60)
    _check(result, spec)


def test_window_is_extended_by_whole_steps_until_enough_rounds() -> None:
    w = Window(10, SECONDS, 100)
    step = int(SECONDS * 1e9)
    assert w.end == 10 + step
    assert w.over(MIN_ROUNDS * 100 - 1) is False  # too few rounds: one more step
    assert w.end == 10 + 2 * step
    assert MAX_WINDOWS == 3
    assert w.over(0) is False
    assert w.over(0) is True  # capped at MAX_WINDOWS steps
    assert w.end == 10 + 3 * step
    assert Window(0, SECONDS, 100).over(MIN_ROUNDS * 100) is True


def test_repeats_keep_the_median_and_every_sample() -> None:
    runs = [CellResult.from_json(_fake("tothread", "uvloop", 256, rate)) for rate in (3000.0, 1000.0, 2000.0)]
    runs.append(CellResult.from_json(_fake("tothread", "asyncio", 256, 500.0)))
    merged = {(r.subject, r.loop): r for r in merge_repeats(runs)}
    assert merged[("tothread", "uvloop")].appends_per_s == 2000.0
    assert merged[("tothread", "uvloop")].samples == [3000.0, 1000.0, 2000.0]
    assert merged[("tothread", "asyncio")].samples == [500.0]
    cells = plan_cells(["raw-write"], ["asyncio"], [1, 2], [128], 1.0, 0.1, Path("/nonexistent"), repeat=2)
    assert [c.workers for c in cells] == [1, 1, 2, 2]


def test_unknown_subject_is_an_error_not_a_crash(tmp_path: Path) -> None:
    result = run_cell(_spec("no-such-subject", None, tmp_path))
    assert result.error is not None
    assert not result.ok


def test_selection_and_plan(tmp_path: Path) -> None:
    assert select_subjects("sqlite,raw-write") == ["raw-write", "sqlite-full", "sqlite-off"]
    assert select_subjects("peers") == [n for n in SUBJECTS if not n.startswith("asyncwal-") and n != "null"]
    assert "null" not in select_subjects("all")
    assert select_subjects("harness") == ["null"]
    with pytest.raises(ValueError, match="unknown subject"):
        select_subjects("nope")
    cells = plan_cells(
        ["asyncwal-sync", "raw-write"], ["asyncio", "uvloop"], [1, 256], [128], 1.0, 0.1, tmp_path
    )
    # Async subjects once per loop, loop-free ones once; all W of a size before the next size.
    assert [(c.subject, c.loop, c.workers) for c in cells] == [
        ("asyncwal-sync", "asyncio", 1),
        ("asyncwal-sync", "uvloop", 1),
        ("raw-write", None, 1),
        ("asyncwal-sync", "asyncio", 256),
        ("asyncwal-sync", "uvloop", 256),
        ("raw-write", None, 256),
    ]
    assert len({c.workdir for c in cells}) == len(cells)


_REDIS_BENCHMARK_OUTPUT = """\
====== RPUSH ======
  1000 requests completed in 0.05 seconds
  16 parallel clients
  128 bytes payload
  keep alive: 1

Latency by percentile distribution:
0.000% <= 0.247 milliseconds (cumulative count 1)
50.000% <= 0.471 milliseconds (cumulative count 503)
75.000% <= 0.551 milliseconds (cumulative count 752)
99.219% <= 0.903 milliseconds (cumulative count 993)
99.902% <= 1.103 milliseconds (cumulative count 1000)
100.000% <= 1.103 milliseconds (cumulative count 1000)

Cumulative distribution of latencies:
0.000% <= 0.103 milliseconds (cumulative count 0)
100.000% <= 1.103 milliseconds (cumulative count 1000)

Summary:
  throughput summary: 20000.00 requests per second
  latency summary (msec):
          avg       min       p50       p95       p99       max
        0.480     0.240     0.471     0.703     0.887     1.103
"""


def test_redis_benchmark_report_is_parsed() -> None:
    rep = parse_redis_benchmark(_REDIS_BENCHMARK_OUTPUT)
    assert rep["rps"] == 20000.0
    assert rep["mean_us"] == pytest.approx(480.0)
    assert rep["p50_us"] == pytest.approx(471.0)
    assert rep["p99_us"] == pytest.approx(887.0)
    assert rep["p999_us"] == pytest.approx(1103.0)  # first printed point at or above 99.9%
    assert rep["max_us"] == pytest.approx(1103.0)
    with pytest.raises(ValueError, match="no redis-benchmark report"):
        parse_redis_benchmark("Could not connect to Redis")


def _fake(subject: str, loop: str | None, workers: int, rate: float) -> dict[str, Any]:
    r = CellResult(subject=subject, loop=loop, workers=workers, size=128, seconds=1.0)
    r.appends = int(rate)
    r.appends_per_s = rate
    r.p50_us, r.p99_us, r.p999_us = 100.0, 500.0, 900.0
    r.cdf = [(0.0, 50.0), (50.0, 100.0), (99.0, 500.0), (99.9, 900.0), (100.0, 1000.0)]
    return r.to_json()


def test_report_tables_ratios_targets_and_plots(tmp_path: Path) -> None:
    doc: dict[str, Any] = {
        "started_utc": "2026-01-01T00:00:00Z",
        "cells": [
            _fake("asyncwal-sync", "uvloop", 256, 600_000),
            _fake("asyncwal-sync", "uvloop", 1, 7_000),
            _fake("tothread", "uvloop", 256, 5_000),
            _fake("raw-fdatasync", None, 1, 8_000),
            _fake("redisbench-always", None, 256, 100_000),
        ],
    }
    text = render_text(doc)
    assert "120x" in text  # 600k / 5k, same loop
    assert "6.00x" in text  # 600k / 100k, loop-free peer
    md = render_markdown(doc)
    assert md.count("| asyncwal-sync |") == 2
    targets = {(t.name, t.loop): t for t in evaluate_targets([CellResult.from_json(c) for c in doc["cells"]])}
    assert targets[("sync W=256 ÷ lock+to_thread", "uvloop")].met is True
    assert targets[("sync W=1 ÷ raw write+fdatasync (zero-filled)", "uvloop")].met is True
    assert targets[("sync W=256 p99", "uvloop")].met is True
    assert targets[("batch W=256 ÷ sync W=256", "uvloop")].met is None  # not measured
    pytest.importorskip("matplotlib")
    from bench._report import plot_all

    paths = plot_all(doc, tmp_path)
    assert {p.name for p in paths} == {
        "throughput_128B.png",
        "latency_cdf_W1_128B.png",
        "latency_cdf_W256_128B.png",
    }
    assert all(p.stat().st_size > 1000 for p in paths)


# -- the sub-benchmarks: replay, memory, profile, each for a moment --------------------------


def test_replay_sub_benchmark_reads_back_every_record(tmp_path: Path) -> None:
    from bench._replay import run_replay
    from bench._runner import REPO_ROOT, _child_env

    doc = run_replay(
        sizes=[128],
        loops=["asyncio"],
        workdir=tmp_path,
        records=2000,
        cold=False,
        env=_child_env(),
        cwd=REPO_ROOT,
    )
    (row,) = doc["rows"]
    assert row["size"] == 128 and row["records"] == 2000
    assert row["records_per_s"] > 0


def test_memory_sub_benchmark_runs_both_checks(tmp_path: Path) -> None:
    from bench._memory import run_memory
    from bench._runner import REPO_ROOT, _child_env

    doc = run_memory(
        modes=["sync"], appends=2000, workers=8, loop="asyncio", workdir=tmp_path, env=_child_env(),
        cwd=REPO_ROOT, pending_seconds=0.3,
    )  # fmt: skip
    flatness, pending = doc["rows"]
    assert flatness["appends"] == 2000
    assert pending["holds"] is True  # max_pending_bytes held under a writer that outruns the disk


def test_profile_sub_benchmark_writes_a_call_tree(tmp_path: Path) -> None:
    from bench._profile import run_profile  # needs pyinstrument: asyncwal[bench], a test extra
    from bench._runner import _child_env

    (doc,) = run_profile(
        ["sync"], 4, 128, 0.2, "asyncio", tmp_path, "t", _child_env(), tmp_path / "w", warmup=0.05
    )
    report = Path(doc["path"]).read_text()
    # The event-loop thread was sampled, engine frames named (which ones a 0.2 s sample of a
    # busy machine catches varies: append itself, or the hand-off to the I/O thread).
    assert "asyncwal/" in report
    assert doc["plain_appends_per_s"] > 0 and doc["appends_per_s"] > 0
    assert 0 < doc["plain_loop_busy"] <= 1.5
