"""The benchmark pages' generator (``python -m bench docs``) and redis-benchmark's sizing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench._docs import (
    blocks_in,
    png_source,
    render_block,
    resolve_latest,
    update_page,
)
from bench._redis import next_request_count

ROOT = Path(__file__).resolve().parents[1]
HEADLINE = "bench/results/headline/20261124T131115Z.json"
MATRIX = "bench/results/20261124T131728Z.json"


def test_a_calibration_run_shorter_than_the_target_asks_for_a_longer_one() -> None:
    # 2,000 requests in 56 ms (mostly connection set-up) must not size a 1.25 s window.
    nxt = next_request_count(2000, 0.056, 0.25)
    assert nxt is not None and nxt * 0.056 / 2000 >= 0.25
    assert next_request_count(2000, 0.30, 0.25) is None  # long enough: use its rate
    assert next_request_count(2000, 0.0001, 0.25) == 100_000  # at most 50-fold per run
    assert next_request_count(2000, 0.2, 0.25) == 4000  # at least double


def test_latest_names_the_timestamped_file_it_copies(tmp_path: Path) -> None:
    (tmp_path / "20260101T000000Z.json").write_text('{"a": 1}')
    (tmp_path / "20260102T000000Z.json").write_text('{"a": 2}')
    shutil.copy(tmp_path / "20260101T000000Z.json", tmp_path / "latest.json")
    assert resolve_latest(tmp_path / "latest.json") == tmp_path / "20260101T000000Z.json"
    assert resolve_latest(tmp_path / "20260102T000000Z.json") == tmp_path / "20260102T000000Z.json"
    (tmp_path / "latest.json").write_text('{"a": 3}')
    with pytest.raises(FileNotFoundError):
        resolve_latest(tmp_path / "latest.json")


def test_update_page_fills_each_block_from_the_chosen_runs(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\nText.\n\n<!-- bench:summary old/file.json -->\nstale\n<!-- /bench:summary -->\n\n"
        "<!-- bench:where old/file.json -->\n<!-- /bench:where -->\n\nEnd.\n"
    )
    assert update_page(page, {"headline": HEADLINE}) == 2
    blocks = list(blocks_in(page))
    assert [(b.kind, b.paths) for b in blocks] == [("summary", [HEADLINE]), ("where", [HEADLINE])]
    assert blocks[0].body == render_block("summary", [HEADLINE])
    assert "| asyncwal `sync` | yes |" in blocks[0].body
    text = page.read_text()
    assert "stale" not in text and text.endswith("End.\n")
    update_page(page, {"headline": HEADLINE})
    assert page.read_text() == text  # rendering is a pure function of the files


def test_summary_quotes_the_median_repetition_of_the_run() -> None:
    doc = json.loads((ROOT / HEADLINE).read_text())
    cell = next(
        c for c in doc["cells"] if (c["subject"], c["loop"], c["workers"]) == ("asyncwal-sync", "uvloop", 256)
    )
    body = render_block("summary", [HEADLINE])
    row = next(line for line in body.splitlines() if line.startswith("| asyncwal `sync`"))
    assert f"| {round(cell['appends_per_s'] / 1000)}k |" in row


def test_a_block_with_the_wrong_number_of_files_is_refused() -> None:
    with pytest.raises(ValueError, match="takes 4 results file"):
        render_block("runs", [HEADLINE])


def test_pictures_carry_the_results_file_they_were_drawn_from(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from bench._plots import plot_ratios

    doc = json.loads((ROOT / HEADLINE).read_text())
    png = plot_ratios(doc, "sync", tmp_path / "ratio_sync.png", source=HEADLINE)
    assert png is not None and png_source(png) == HEADLINE
    bare = plot_ratios(doc, "none", tmp_path / "ratio_none.png")
    assert bare is not None and png_source(bare) is None
