"""``python -m bench http`` in small: wrk's report is read right, and a short real cell (a
server, wrk, the store counted afterwards) gives numbers and no error. Needs wrk (``python
-m bench --setup``); the cells are skipped without it."""

from __future__ import annotations

import shutil
import sys
from typing import TYPE_CHECKING

import pytest

from bench._http import Cell, parse_wrk, plan, render_docs, render_markdown, run_cell

if TYPE_CHECKING:
    from pathlib import Path

WRK_REPORT = """\
Running 5s test @ http://127.0.0.1:40417/e
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.80ms    3.02ms  41.41ms   88.43%
    Req/Sec     5.03k   385.52     5.66k    78.00%
  Latency Distribution
     50%   12.17ms
     75%   13.55ms
     90%   15.38ms
     99%  880.00us
  25034 requests in 5.01s, 3.51MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:   4996.91
Transfer/sec:    717.58KB
"""


def test_parse_wrk() -> None:
    got = parse_wrk(WRK_REPORT)
    assert got["rps"] == 4996.91 and got["requests"] == 25034
    assert got["p50_s"] == pytest.approx(0.01217) and got["p99_s"] == pytest.approx(0.00088)
    assert got["non2xx"] == 7 and got["socket_errors"] == 3
    with pytest.raises(ValueError, match="Requests/sec"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


def test_plan() -> None:
    cells = plan(["uvicorn", "aiohttp"], ["nothing", "asyncwal-sync"], scaling=True)
    assert Cell("aiohttp", "asyncwal-sync") in cells
    assert cells[-2:] == [Cell("uvicorn", "nothing", 2), Cell("uvicorn", "asyncwal-sync", 2)]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (python -m bench --setup)")
@pytest.mark.skipif(sys.platform == "win32", reason="servers under wrk")
def test_short_cells_run_and_count_what_they_stored(tmp_path: Path) -> None:
    runs = []
    for cell in (Cell("aiohttp", "nothing"), Cell("aiohttp", "asyncwal-sync")):
        result = run_cell(cell, seconds=1, warmup=0, workdir=tmp_path, threads=1)
        assert result["error"] is None, result
        assert result["rps"] > 0 and result["p99_s"] > 0 and result["loop_cpu_us_per_request"] > 0
        result["round"] = 0  # one round
        runs.append(result)
    assert runs[1]["stored"] >= runs[1]["requests"] > 0  # every answered POST is in the log
    assert runs[1]["log"]["appends"] >= runs[1]["requests"] and runs[1]["log"]["fsyncs"] > 0
    assert runs[0]["log"] is None  # stores nothing, has no log
    doc = {
        "config": {"connections": 64, "body_bytes": 128, "rounds": 1, "seconds": 1, "warmup": 0},
        "runs": runs,
    }
    assert "asyncwal `sync` (on disk)" in render_docs(doc)
    assert "aiohttp: asyncwal sync is" in render_markdown(doc)
