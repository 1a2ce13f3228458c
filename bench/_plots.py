"""The benchmark's pictures, drawn to be read where the documentation shows them.

Every figure is laid out for the documentation's text column (720 px at 1280 px wide): it is
:data:`WIDTH_IN` inches wide at :data:`SHOWN_DPI`, saved at :data:`SAVE_DPI` so that the
page can link to a sharper full-size file, and its fonts are sized for the column (10-11 pt,
about 14 px on the page). One picture per claim:

* :func:`plot_ratios`: asyncwal in one mode ÷ each alternative, appends/s, at two W, as bars
  with the spread of the repetitions as whiskers;
* :func:`plot_throughput`: appends/s (or MB/s) against W, asyncwal and a few key peers drawn
  strong, every other subject faint;
* :func:`plot_latency`: latency CDFs at one W, on a "nines" axis so the tail gets room.

Subjects that serve one caller at a time (the raw loops) have no queue: their latency
excludes the waiting that concurrent callers do, so the CDFs at W > 1 leave them out.
Pure functions of a results document; matplotlib is imported only when drawing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._fmt import fmt_ratio, fmt_size
from ._harness import CellResult
from ._subjects import SUBJECTS

if TYPE_CHECKING:
    from pathlib import Path

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = (
    "KEY_SUBJECTS",
    "LABELS",
    "cell_at",
    "ok_cells",
    "plot_latency",
    "plot_ratios",
    "plot_run",
    "plot_throughput",
)

WIDTH_IN = 7.2
SHOWN_DPI = 100
SAVE_DPI = 200

#: Readable names, used by the plots and the documentation's tables.
LABELS: dict[str, str] = {
    "asyncwal-sync": "asyncwal sync",
    "asyncwal-batch": "asyncwal batch",
    "asyncwal-none": "asyncwal none",
    "raw-fdatasync": "pwrite+fdatasync loop",
    "raw-fdatasync-grow": "write+fdatasync loop, growing file",
    "raw-write": "os.write loop (page cache)",
    "raw-group": "perfect group commit (no Python)",
    "tothread": "lock + to_thread(write+fsync)",
    "aiofiles": "lock + aiofiles",
    "sqlite-full": "aiosqlite, synchronous=FULL",
    "sqlite-off": "aiosqlite, synchronous=OFF",
    "redis-always": "redis.asyncio, appendfsync always",
    "redis-everysec": "redis.asyncio, appendfsync everysec",
    "redis-no": "redis.asyncio, appendfsync no",
    "redisbench-always": "redis-benchmark (C), always",
    "redisbench-everysec": "redis-benchmark (C), everysec",
    "redisbench-no": "redis-benchmark (C), no",
    "null": "harness ceiling",
}


@dataclass(frozen=True, slots=True)
class _Line:
    color: str
    linestyle: str
    marker: str


#: Drawn strong in the throughput and latency plots; every other subject is drawn faint.
KEY_SUBJECTS: dict[str, _Line] = {
    "asyncwal-sync": _Line("#c0392b", "-", "o"),
    "asyncwal-batch": _Line("#e67e22", "--", "s"),
    "asyncwal-none": _Line("#8e44ad", ":", "^"),
    "tothread": _Line("#6d4c41", "-", "v"),
    "sqlite-full": _Line("#1f77b4", "-", "D"),
    "redisbench-always": _Line("#2e7d32", "-", "P"),
    "raw-group": _Line("#222222", "-.", "x"),
}
_FAINT = "#9e9e9e"

#: Subjects whose every append is one call of a plain loop: one caller at a time, no queue.
SINGLE_CALLER = ("raw-fdatasync", "raw-fdatasync-grow", "raw-write", "raw-group")

_DURABLE_BAR = "#c0392b"
_VOLATILE_BAR = "#f5b7b1"


def ok_cells(doc: dict[str, Any]) -> list[CellResult]:
    """The cells of a results document that measured something."""
    return [c for c in (CellResult.from_json(x) for x in doc.get("cells", [])) if c.ok]


def cell_at(cells: list[CellResult], subject: str, loop: str, size: int, w: int) -> CellResult | None:
    """The cell of ``subject`` at (size, W) on ``loop``, or its loop-free cell."""
    for c in cells:
        if (c.subject, c.size, c.workers) == (subject, size, w) and c.loop in (loop, None):
            return c
    return None


def _formatter(fn: Any) -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(fn)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 10,
            "axes.titlesize": 11,
            "axes.labelsize": 10,
            "xtick.labelsize": 9.5,
            "ytick.labelsize": 9.5,
            "legend.fontsize": 9,
            "figure.dpi": SHOWN_DPI,
        }
    )
    return plt


def _save(fig: Figure, path: Path, source: str | None) -> Path:
    """Write the PNG; ``source`` (the results file it was drawn from) goes in its metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=SAVE_DPI, metadata={"Source": source} if source else None)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _fmt_w(w: int) -> str:
    return f"{w:,}"


# -- ratios ----------------------------------------------------------------------------------


def ratio_rows(
    cells: list[CellResult], mode: str, loop: str, size: int, w: int
) -> list[tuple[str, float, float, float]]:
    """``(peer, ratio, low, high)`` for asyncwal ``mode`` ÷ each peer measured at (size, W).

    The ratio is of the kept (median) repetitions; low/high pair the slowest repetition of
    one with the fastest of the other, so they bound what any pairing of repetitions gave.
    Event-loop peers are compared on ``loop`` only; loop-free peers against asyncwal on it.
    """
    mine = cell_at(cells, f"asyncwal-{mode}", loop, size, w)
    if mine is None:
        return []
    rows = []
    for name in SUBJECTS:
        if name.startswith("asyncwal-") or name == "null":
            continue
        peer = cell_at(cells, name, loop, size, w)
        if peer is None or not peer.appends_per_s:
            continue
        a = mine.samples or [mine.appends_per_s]
        b = peer.samples or [peer.appends_per_s]
        rows.append((name, mine.appends_per_s / peer.appends_per_s, min(a) / max(b), max(a) / min(b)))
    return rows


def plot_ratios(
    doc: dict[str, Any],
    mode: str,
    path: Path,
    *,
    loop: str = "uvloop",
    size: int = 128,
    source: str | None = None,
) -> Path | None:
    """Bars of asyncwal ``mode`` ÷ each peer, appends/s, one panel per W measured (at most 2)."""
    cells = ok_cells(doc)
    ws = sorted({c.workers for c in cells if c.size == size and c.subject == f"asyncwal-{mode}"})[:2]
    panels = [(w, ratio_rows(cells, mode, loop, size, w)) for w in ws]
    panels = [(w, rows) for w, rows in panels if rows]
    if not panels:
        return None
    plt = _pyplot()
    names = [n for n in SUBJECTS if any(n == r[0] for _, rows in panels for r in rows)]
    height = 1.6 + 0.27 * len(names)
    fig, axes = plt.subplots(1, len(panels), figsize=(WIDTH_IN, height), sharey=True, squeeze=False)
    lo = min(r[2] for _, rows in panels for r in rows)
    hi = max(r[3] for _, rows in panels for r in rows)
    from matplotlib.ticker import LogLocator

    ys = list(range(len(names)))
    for ax, (w, rows) in zip(axes[0], panels, strict=True):
        by_name = {r[0]: r for r in rows}
        for y, name in zip(ys, names, strict=True):
            if name not in by_name:
                continue
            _, ratio, low, high = by_name[name]
            color = _DURABLE_BAR if SUBJECTS[name].durable else _VOLATILE_BAR
            # Bars grow from 1x: right where asyncwal is faster, left where it is slower.
            ax.barh(y, abs(ratio - 1.0), left=min(ratio, 1.0), color=color, height=0.7)
            ax.plot([low, high], [y, y], color="#333333", linewidth=1)
            if ratio >= 1.0:
                ax.text(max(ratio, high) * 1.15, y, fmt_ratio(ratio), va="center", ha="left", fontsize=9)
            else:
                ax.text(min(ratio, low) / 1.15, y, fmt_ratio(ratio), va="center", ha="right", fontsize=9)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlim(min(lo, 1.0) / 25, max(hi, 1.0) * 8)  # room for the labels
        ax.xaxis.set_major_locator(LogLocator(base=10, numticks=4))
        ax.xaxis.set_major_formatter(_formatter(lambda v, _: f"{v:g}x"))
        ax.minorticks_off()
        ax.set_title(f"W = {_fmt_w(w)}")
        ax.grid(True, axis="x", which="major", alpha=0.3)
    axes[0][0].set_yticks(ys, [LABELS.get(n, n) for n in names])
    axes[0][0].invert_yaxis()  # shared: once for all panels
    fig.supxlabel("asyncwal appends/s ÷ the alternative's (log scale)", fontsize=10, y=0.075)
    import matplotlib.patches as mpatches

    fig.legend(
        handles=[
            mpatches.Patch(color=_DURABLE_BAR, label="alternative durable at ack"),
            mpatches.Patch(color=_VOLATILE_BAR, label="alternative not durable at ack"),
        ],
        loc="lower center",
        ncol=2,
        frameon=False,
    )
    fig.suptitle(f"asyncwal {mode} mode against each alternative, {size} B records, {loop}")
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    return _save(fig, path, source)


# -- throughput against W --------------------------------------------------------------------


def _series(cells: list[CellResult], subject: str, loop: str, size: int) -> list[CellResult]:
    pts = [c for c in cells if c.subject == subject and c.size == size and c.loop in (loop, None)]
    return sorted(pts, key=lambda c: c.workers)


def plot_throughput(
    doc: dict[str, Any],
    size: int,
    path: Path,
    *,
    loop: str = "uvloop",
    mb_per_s: bool = False,
    source: str | None = None,
) -> Path | None:
    """appends/s (or payload MB/s) against W on log-log axes, ticks at the measured W only."""
    cells = [c for c in ok_cells(doc) if c.size == size and c.loop in (loop, None) and c.subject != "null"]
    if not cells:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 5.4))
    unit = "MB/s of payload" if mb_per_s else "appends/s"
    faint_drawn = False
    for subject in SUBJECTS:
        pts = _series(cells, subject, loop, size)
        if not pts:
            continue
        xs = [c.workers for c in pts]
        ys = [c.mb_per_s if mb_per_s else c.appends_per_s for c in pts]
        style = KEY_SUBJECTS.get(subject)
        if style is None:
            ax.plot(
                xs, ys, color=_FAINT, linewidth=0.9, alpha=0.6, marker=".", markersize=4,
                label=None if faint_drawn else "other subjects (tables on the details page)",
            )  # fmt: skip
            faint_drawn = True
            continue
        ax.plot(
            xs, ys, color=style.color, linestyle=style.linestyle, marker=style.marker,
            linewidth=2.0, markersize=6, label=LABELS.get(subject, subject), zorder=3,
        )  # fmt: skip
    ws = sorted({c.workers for c in cells})
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(ws, [_fmt_w(w) for w in ws])
    ax.minorticks_off()
    ax.set_xlabel("W: concurrent appenders")
    ax.set_ylabel(unit)
    ax.yaxis.set_major_formatter(_formatter((lambda v, _: f"{v:,.0f}") if mb_per_s else _fmt_count))
    ax.grid(True, which="major", alpha=0.3)
    ax.set_title(f"{unit} against W, {fmt_size(size)} records, {loop}")
    _legend_below(ax)
    fig.tight_layout()
    return _save(fig, path, source)


def _legend_below(ax: Axes) -> None:
    """The legend under the axes, in two columns, the faint "other subjects" entry last."""
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("other subjects"))
    ax.legend(
        [handles[i] for i in order], [labels[i] for i in order],
        loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False,
    )  # fmt: skip


def _fmt_count(v: float, _pos: object = None) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= scale:
            return f"{v / scale:g}{suffix}"
    return f"{v:g}"


def _fmt_micros(v: float, _pos: object = None) -> str:
    if v >= 1e6:
        return f"{v / 1e6:g} s"
    if v >= 1e3:
        return f"{v / 1e3:g} ms"
    return f"{v:g} us"


# -- latency ---------------------------------------------------------------------------------


def _nines(p: float) -> float:
    return -math.log10(1.0 - p / 100.0)


def plot_latency(
    doc: dict[str, Any],
    w: int,
    path: Path,
    *,
    loop: str = "uvloop",
    size: int = 128,
    source: str | None = None,
) -> Path | None:
    """Latency CDFs at one W on a "nines" y axis; key subjects strong, the others faint.

    At W > 1 the single-caller loops (:data:`SINGLE_CALLER`) are left out: they never queue.
    """
    cells = [
        c
        for c in ok_cells(doc)
        if c.size == size and c.workers == w and c.loop in (loop, None) and c.subject != "null"
    ]
    if w > 1:
        cells = [c for c in cells if c.subject not in SINGLE_CALLER]
    if not cells:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 5.0))
    faint_drawn = False
    for subject in SUBJECTS:
        c = next((c for c in cells if c.subject == subject), None)
        curve = [(us, p) for p, us in c.cdf if p < 100.0 and us > 0] if c else []
        if not curve:
            continue
        xs = [us for us, _ in curve]
        ys = [_nines(p) for _, p in curve]
        style = KEY_SUBJECTS.get(subject)
        if style is None:
            ax.plot(
                xs, ys, color=_FAINT, linewidth=0.9, alpha=0.6,
                label=None if faint_drawn else "other subjects",
            )  # fmt: skip
            faint_drawn = True
            continue
        ax.plot(
            xs, ys, color=style.color, linestyle=style.linestyle, linewidth=2.0,
            label=LABELS.get(subject, subject), zorder=3,
        )  # fmt: skip
    ticks = [0.0, 50.0, 90.0, 99.0, 99.9, 99.99]
    ax.set_yticks([_nines(p) for p in ticks], [f"{p:g}" for p in ticks])
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(_formatter(_fmt_micros))
    ax.set_xlabel("latency of one append, taken by the caller (log scale)")
    ax.set_ylabel("percentile")
    ax.grid(True, which="major", alpha=0.3)
    ax.set_title(f"Latency CDF, W = {_fmt_w(w)}, {fmt_size(size)} records, {loop}")
    _legend_below(ax)
    fig.tight_layout()
    return _save(fig, path, source)


# -- one run's pictures ----------------------------------------------------------------------


def plot_run(doc: dict[str, Any], outdir: Path) -> list[Path]:
    """The pictures of one run, as ``python -m bench`` writes them next to its results:
    ``throughput_<size>B.png`` per record size (16 KiB and up in MB/s) and
    ``latency_cdf_W<w>_<size>B.png`` for the smallest size, uvloop where it was measured."""
    cells = ok_cells(doc)
    loops = {c.loop for c in cells if c.loop}
    loop = "uvloop" if "uvloop" in loops else "asyncio"
    written: list[Path] = []
    sizes = sorted({c.size for c in cells})
    for size in sizes:
        p = plot_throughput(doc, size, outdir / f"throughput_{size}B.png", loop=loop, mb_per_s=size >= 16384)
        if p is not None:
            written.append(p)
    if sizes:
        size = sizes[0]
        for w in sorted({c.workers for c in cells if c.size == size}):
            p = plot_latency(doc, w, outdir / f"latency_cdf_W{w}_{size}B.png", loop=loop, size=size)
            if p is not None:
                written.append(p)
    return written
