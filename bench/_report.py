"""Tables (text and Markdown), asyncwal's ratios to each peer, the targets, and the plots.

Ratios are ``asyncwal appends/s ÷ peer appends/s`` for the same record size and W, from the
same run. A peer that runs on an event loop is compared with asyncwal on the same loop only;
a peer without one (raw loops, redis-benchmark) with asyncwal on each loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._fmt import _fmt_num, fmt_rate, fmt_ratio, fmt_size, fmt_us
from ._harness import CellResult
from ._subjects import SUBJECTS

if TYPE_CHECKING:
    from pathlib import Path

__all__ = (
    "Target",
    "evaluate_targets",
    "render_stalls_markdown",
    "fmt_rate",
    "fmt_us",
    "load_cells",
    "plot_all",
    "render_markdown",
    "render_text",
)

ASYNCWAL_MODES = ("sync", "batch", "none")
LOOPS = ("asyncio", "uvloop")


def load_cells(doc: dict[str, Any]) -> list[CellResult]:
    return [CellResult.from_json(c) for c in doc.get("cells", [])]


# -- formatting ------------------------------------------------------------------------------


# -- selection ---------------------------------------------------------------------------------


def _key(c: CellResult) -> tuple[int, int]:
    return (c.size, c.workers)


def _order(c: CellResult) -> tuple[int, int]:
    names = list(SUBJECTS)
    idx = names.index(c.subject) if c.subject in names else len(names)
    return (idx, LOOPS.index(c.loop) if c.loop in LOOPS else -1)


def _blocks(cells: list[CellResult]) -> list[tuple[int, int, list[CellResult]]]:
    keys = sorted({_key(c) for c in cells})
    return [(s, w, sorted((c for c in cells if _key(c) == (s, w)), key=_order)) for s, w in keys]


def _find(
    cells: list[CellResult], subject: str, loop: str | None, size: int, workers: int
) -> CellResult | None:
    for c in cells:
        if c.subject == subject and c.loop == loop and c.size == size and c.workers == workers and c.ok:
            return c
    return None


def _ratio(a: CellResult | None, b: CellResult | None) -> float | None:
    if a is None or b is None or not b.appends_per_s:
        return None
    return a.appends_per_s / b.appends_per_s


def _asyncwal_columns(cells: list[CellResult]) -> list[tuple[str, str]]:
    present = {(c.subject, c.loop) for c in cells if c.subject.startswith("asyncwal-") and c.ok}
    return [
        (f"asyncwal-{m}", loop)
        for m in ASYNCWAL_MODES
        for loop in LOOPS
        if (f"asyncwal-{m}", loop) in present
    ]


# -- tables --------------------------------------------------------------------------------------

_COLS = (
    "subject", "loop", "appends/s", "MB/s", "p50", "p99", "p99.9", "fsyncs/s", "rec/fsync", "CPU us/append",
    "RSS MiB",
)  # fmt: skip


def _row(c: CellResult) -> list[str]:
    name = c.subject
    if c.skipped:
        return [name, c.loop or "-", "skipped", "", "", "", "", "", "", "", ""]
    if c.error:
        return [name, c.loop or "-", "error", "", "", "", "", "", "", "", ""]
    rss = c.rss_peak_mib
    rss_s = _fmt_num(rss, 0) + (f" (+{c.server_rss_peak_mib:.0f} srv)" if c.server_rss_peak_mib else "")
    return [
        name,
        c.loop or "-",
        fmt_rate(c.appends_per_s),
        _fmt_num(c.mb_per_s, 2),
        fmt_us(c.p50_us),
        fmt_us(c.p99_us),
        fmt_us(c.p999_us),
        fmt_rate(c.fsyncs_per_s),
        _fmt_num(c.records_per_fsync),
        _fmt_num(c.cpu_us_per_append, 2),
        rss_s,
    ]


def _ratio_rows(block: list[CellResult], columns: list[tuple[str, str]]) -> list[list[str]]:
    rows: list[list[str]] = []
    for peer in block:
        if peer.subject.startswith("asyncwal-") or not peer.ok:
            continue
        row = [peer.subject, peer.loop or "-"]
        for subject, loop in columns:
            if peer.loop is not None and peer.loop != loop:
                row.append("")
                continue
            mine = _find(block, subject, loop, peer.size, peer.workers)
            row.append(fmt_ratio(_ratio(mine, peer)))
        rows.append(row)
    return rows


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    left = 2  # subject and loop columns are left-aligned, the figures right-aligned

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    align = ["---" if i < 2 else "---:" for i in range(len(header))]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _problems(cells: list[CellResult]) -> list[str]:
    return [
        f"{c.subject} {c.loop or '-'} W={c.workers} {fmt_size(c.size)}: {c.skipped or c.error}"
        for c in cells
        if c.skipped or c.error
    ]


def render_text(doc: dict[str, Any]) -> str:
    """The printed report: per (size, W) the figures, then asyncwal's ratios, then targets."""
    cells = load_cells(doc)
    columns = _asyncwal_columns(cells)
    out: list[str] = []
    for size, w, block in _blocks(cells):
        out.append(f"\n== {fmt_size(size)} records, W={w} ==")
        out.append(_text_table(list(_COLS), [_row(c) for c in block]))
        rows = _ratio_rows(block, columns)
        if columns and rows:
            out.append(
                "\nasyncwal appends/s ÷ peer appends/s (same loop; loop-free peers against both loops):"
            )
            out.append(_text_table(["peer", "loop", *(f"{s[9:]}/{lp}" for s, lp in columns)], rows))
    problems = _problems(cells)
    if problems:
        out.append("\nnot measured:\n  " + "\n  ".join(problems))
    stalls = [c for c in cells if c.loop_step_max_us is not None]
    if stalls:
        out.append("\n== asyncwal's own longest steps on the event loop (writer, callbacks, loop writes) ==")
        rows = [
            [
                c.subject,
                c.loop or "-",
                f"{c.size} B",
                str(c.workers),
                fmt_us(c.loop_step_p999_us),
                fmt_us(c.loop_step_max_us),
                fmt_us(c.gc_pause_max_us),
            ]
            for c in sorted(stalls, key=lambda c: (c.size, c.subject, c.loop or "", c.workers))
        ]
        out.append(_text_table(["subject", "loop", "size", "W", "p99.9", "max", "GC pause max"], rows))
    targets = evaluate_targets(cells)
    if targets:
        out.append("\n== targets (128 B records, same run) ==")
        out.append(_text_table(["target", "loop", "measured", "goal", "met"], [t.row() for t in targets]))
    return "\n".join(out) + "\n"


def render_markdown(doc: dict[str, Any], *, only: list[tuple[int, int]] | None = None) -> str:
    """Markdown tables of the run (all blocks, or only the (size, W) pairs given)."""
    cells = load_cells(doc)
    columns = _asyncwal_columns(cells)
    out: list[str] = []
    for size, w, block in _blocks(cells):
        if only is not None and (size, w) not in only:
            continue
        out.append(f"#### {fmt_size(size)} records, W = {w}\n")
        out.append(_md_table(list(_COLS), [_row(c) for c in block]))
        rows = _ratio_rows(block, columns)
        if columns and rows:
            out.append(
                "\nasyncwal appends/s ÷ peer appends/s (same loop; loop-free peers against both loops):\n"
            )
            out.append(_md_table(["peer", "loop", *(f"{s[9:]}/{lp}" for s, lp in columns)], rows))
        out.append("")
    return "\n".join(out) + "\n"


def render_stalls_markdown(doc: dict[str, Any]) -> str:
    """The longest steps asyncwal ran on the event loop, per mode and W (128 B records)."""
    cells = [c for c in load_cells(doc) if c.loop_step_max_us is not None and c.size == 128]
    rows = [
        [
            c.subject,
            c.loop or "-",
            str(c.workers),
            fmt_us(c.loop_step_p999_us),
            fmt_us(c.loop_step_max_us),
            fmt_us(c.gc_pause_max_us),
            "-" if c.gc_full_collections is None else str(c.gc_full_collections),
        ]
        for c in sorted(cells, key=lambda c: (c.subject, c.loop or "", c.workers))
    ]
    header = ["subject", "loop", "W", "loop step p99.9", "max", "longest GC pause", "full GCs"]
    return _md_table(header, rows) + "\n"


def render_targets_markdown(doc: dict[str, Any]) -> str:
    targets = evaluate_targets(load_cells(doc))
    return _md_table(["target", "loop", "measured", "goal", "met"], [t.row() for t in targets]) + "\n"


# -- targets ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    loop: str
    measured: float | None
    goal: float
    unit: str  #: "x" (ratio), "/s", "us"
    below: bool = False  #: the goal is an upper bound

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured < self.goal if self.below else self.measured >= self.goal

    def row(self) -> list[str]:
        def f(v: float | None) -> str:
            if v is None:
                return "not measured"
            if self.unit == "x":
                return fmt_ratio(v)
            if self.unit == "us":
                return fmt_us(v)
            return fmt_rate(v) + "/s"

        goal = ("< " if self.below else ">= ") + f(self.goal)
        met = {True: "yes", False: "NO", None: "-"}[self.met]
        return [self.name, self.loop, f(self.measured), goal, met]


def evaluate_targets(cells: list[CellResult]) -> list[Target]:
    """The issue's throughput and latency targets, from one run's 128 B cells."""
    if not any(c.subject.startswith("asyncwal-") for c in cells):
        return []
    s = 128
    out: list[Target] = []
    for loop in LOOPS:
        if (
            _find(cells, "asyncwal-sync", loop, s, 256) is None
            and _find(cells, "asyncwal-sync", loop, s, 1) is None
        ):
            continue
        sync256 = _find(cells, "asyncwal-sync", loop, s, 256)
        out.append(
            Target(
                "sync W=256 ÷ lock+to_thread",
                loop,
                _ratio(sync256, _find(cells, "tothread", loop, s, 256)),
                50,
                "x",
            )
        )
        out.append(
            Target(
                "sync W=256 ÷ aiosqlite FULL",
                loop,
                _ratio(sync256, _find(cells, "sqlite-full", loop, s, 256)),
                3,
                "x",
            )
        )
        out.append(
            Target(
                "sync W=256 ÷ redis-benchmark always",
                loop,
                _ratio(sync256, _find(cells, "redisbench-always", None, s, 256)),
                5,
                "x",
            )
        )
        out.append(
            Target("sync W=256 p99", loop, sync256.p99_us if sync256 else None, 1000, "us", below=True)
        )
        sync1 = _find(cells, "asyncwal-sync", loop, s, 1)
        out.append(
            Target(
                "sync W=1 ÷ raw write+fdatasync (zero-filled)",
                loop,
                _ratio(sync1, _find(cells, "raw-fdatasync", None, s, 1)),
                0.8,
                "x",
            )
        )
        out.append(
            Target(
                "sync W=1 ÷ raw write+fdatasync (growing file)",
                loop,
                _ratio(sync1, _find(cells, "raw-fdatasync-grow", None, s, 1)),
                0.8,
                "x",
            )
        )
        # batch and none modes against the plain loops and the harness's ceiling, same run.
        out.append(
            Target(
                "batch W=1 ÷ plain loop's batch policy",
                loop,
                _ratio(_find(cells, "asyncwal-batch", loop, s, 1), _find(cells, "seed-batch", None, s, 1)),
                0.8,
                "x",
            )
        )
        out.append(
            Target(
                "batch W=256 ÷ sync W=256",
                loop,
                _ratio(_find(cells, "asyncwal-batch", loop, s, 256), sync256),
                1.0,
                "x",
            )
        )
        for w in (1, 256):
            out.append(
                Target(
                    f"none W={w} ÷ harness ceiling (null)",
                    loop,
                    _ratio(_find(cells, "asyncwal-none", loop, s, w), _find(cells, "null", loop, s, w)),
                    0.5,
                    "x",
                )
            )
        out.append(
            Target(
                "sync W=256 ÷ perfect group commit (raw-group)",
                loop,
                _ratio(sync256, _find(cells, "raw-group", None, s, 256)),
                0.35,
                "x",
            )
        )
        for mode in ("sync", "batch", "none"):
            big = _find(cells, f"asyncwal-{mode}", loop, s, 4096)
            if big is None or big.loop_step_max_us is None:
                continue
            out.append(
                Target(f"{mode} W=4096 loop step p99.9", loop, big.loop_step_p999_us, 200, "us", below=True)
            )
            out.append(
                Target(f"{mode} W=4096 loop step max", loop, big.loop_step_max_us, 1000, "us", below=True)
            )
    return out  # fmt: skip


# -- plots -------------------------------------------------------------------------------------------


def plot_all(doc: dict[str, Any], outdir: Path) -> list[Path]:
    """Throughput-vs-W per record size, and latency CDFs; PNG files in ``outdir`` (see bench._plots)."""
    from ._plots import plot_run

    return plot_run(doc, outdir)
