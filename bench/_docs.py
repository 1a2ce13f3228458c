"""``python -m bench docs``: the benchmark pages' figures and tables, made from saved results.

Every number the documentation quotes from a benchmark run sits in a *generated block* of a
Markdown page, between two HTML comments that name the block's kind and the results files it
was made from::

    <!-- bench:summary bench/results/headline/20261124T131115Z.json -->
    | ... the table ... |
    <!-- /bench:summary -->

This module renders each kind from those files (:func:`render_block`), rewrites every block of
``docs/*.md`` and ``README.md`` from the runs chosen on the command line (by default the latest
of each kind), and draws the pictures into ``docs/assets/bench/`` with the results file they
were drawn from in their PNG metadata (``Source``). The docs test re-renders every block from
the files it names and compares, so a quoted number can only change with its results file.

Invariant: rendering is a pure function of the results files (no clock, no machine state), so
the same files always give the same page.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._fmt import fmt_rate, fmt_ratio, fmt_size, fmt_us
from ._http import render_docs as render_http
from ._plots import cell_at, ok_cells, plot_latency, plot_ratios, plot_throughput
from ._report import render_stalls_markdown, render_targets_markdown
from ._runner import REPO_ROOT, RESULTS_DIR
from ._subjects import SUBJECTS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from ._harness import CellResult

__all__ = (
    "ASSETS",
    "Block",
    "KINDS",
    "blocks_in",
    "main",
    "render_block",
    "resolve_latest",
    "update_page",
)

ASSETS = REPO_ROOT / "docs" / "assets" / "bench"
PAGES = (REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")))
MODES = ("sync", "batch", "none")

_OPEN = re.compile(r"^<!-- bench:(?P<kind>[a-z]+)(?P<paths>(?: \S+)*) -->$")


# -- loading ---------------------------------------------------------------------------------


def resolve_latest(path: Path) -> Path:
    """``latest*.json`` is a copy of the newest run: name the timestamped file it copies."""
    if not path.name.startswith("latest"):
        return path
    data = path.read_bytes()
    suffix = path.name.removeprefix("latest")  # ".json", "-replay.json", "-memory.json"
    twins = sorted(
        p
        for p in path.parent.glob(f"*{suffix}")
        if not p.name.startswith("latest") and p.name[:1].isdigit() and p.read_bytes() == data
    )
    if not twins:
        raise FileNotFoundError(f"{path} copies no timestamped results file beside it")
    return twins[-1]


def _load(rel: str) -> dict[str, Any]:
    with (REPO_ROOT / rel).open() as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def _rel(path: Path) -> str:
    return path.resolve().relative_to(REPO_ROOT).as_posix()


def _table(header: list[str], rows: list[list[str]], right_from: int = 1) -> str:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _spread(c: CellResult) -> str:
    """The kept rate, and the range over the repetitions when there were several."""
    if len(c.samples) < 2:
        return fmt_rate(c.appends_per_s)
    return f"{fmt_rate(c.appends_per_s)} ({fmt_rate(min(c.samples))}-{fmt_rate(max(c.samples))})"


# -- the kinds of block ----------------------------------------------------------------------

#: Rows of the benchmarks page's one table: (subject, how the page names it).
SUMMARY_ROWS = (
    ("asyncwal-sync", "asyncwal `sync`"),
    ("asyncwal-batch", "asyncwal `batch`"),
    ("asyncwal-none", "asyncwal `none`"),
    ("tothread", "lock + to_thread"),
    ("aiofiles", "lock + aiofiles"),
    ("sqlite-full", "aiosqlite, FULL"),
    ("redis-always", "Redis always, redis.asyncio"),
    ("redisbench-always", "Redis always, redis-benchmark"),
    ("raw-fdatasync", "pwrite + fdatasync loop"),
    ("raw-group", "perfect group commit"),
)


def render_summary(headline: dict[str, Any]) -> str:
    """One compact table: appends/s and p99 at W = 1 and 256, uvloop, 128 B records."""
    cells = ok_cells(headline)
    rows = []
    for subject, name in SUMMARY_ROWS:
        one = cell_at(cells, subject, "uvloop", 128, 1)
        many = cell_at(cells, subject, "uvloop", 128, 256)
        if one is None and many is None:
            continue
        rows.append(
            [
                name,
                "yes" if SUBJECTS[subject].durable else "no",
                fmt_rate(one.appends_per_s) if one else "-",
                fmt_us(one.p99_us) if one else "-",
                fmt_rate(many.appends_per_s) if many else "-",
                fmt_us(many.p99_us) if many else "-",
            ]
        )
    header = ["128 B, uvloop", "durable", "W = 1: appends/s", "p99", "W = 256: appends/s", "p99"]
    return _table(header, rows, right_from=2)


def render_modes(headline: dict[str, Any]) -> str:
    """asyncwal's three modes at W = 1 and 256 (uvloop): rate (range of the repetitions),
    p50 / p99, and the group size reached at 256."""
    cells = ok_cells(headline)
    rows = []
    for mode in MODES:
        one = cell_at(cells, f"asyncwal-{mode}", "uvloop", 128, 1)
        many = cell_at(cells, f"asyncwal-{mode}", "uvloop", 128, 256)
        if one is None or many is None:
            continue
        rows.append(
            [
                f'`"{mode}"`',
                f"{_spread(one)}, {fmt_us(one.p50_us)} / {fmt_us(one.p99_us)}",
                f"{_spread(many)}, {fmt_us(many.p50_us)} / {fmt_us(many.p99_us)}",
            ]
        )
    header = ["`sync_mode`", "1 writer: appends/s, p50 / p99", "256 writers: appends/s, p50 / p99"]
    return _table(header, rows, right_from=3)


def render_machine(headline: dict[str, Any]) -> str:
    """What the runs ran on, from the results file."""
    m = headline.get("machine", {})
    v = headline.get("versions", {})
    fs = m.get("filesystem", {})
    uname = str(m.get("uname", "")).split()
    kernel = uname[2].split("-")[0] if len(uname) > 2 else "?"
    sched = re.search(r"\[(\S+)\]", str(fs.get("scheduler", "")))
    disk = f"{fs.get('fstype', '?')} on `{fs.get('device', '?')}`, write cache: {fs.get('write_cache', '?')}"
    if sched:
        disk += f", I/O scheduler {sched.group(1)}"
    software = ", ".join(
        f"{name} {v[key]}"
        for name, key in (
            ("Python", "python"), ("uvloop", "uvloop"), ("aiofiles", "aiofiles"),
            ("aiosqlite", "aiosqlite"), ("SQLite", "sqlite"), ("redis-py", "redis-py"),
            ("redis-server", "redis-server"),
        )
        if v.get(key)
    )  # fmt: skip
    rows = [
        ["CPU", f"{m.get('cpu_model', '?')}, {m.get('cpus', '?')} vCPUs"],
        ["memory", f"{m.get('mem_gib', '?')} GiB"],
        ["OS", f"{m.get('os', '?')}, Linux {kernel}"],
        ["disk", disk],
        ["software", software],
        ["asyncwal", str(v.get("asyncwal", "?"))],
    ]
    return _table(["part", "what the runs ran on"], rows, right_from=2)


def render_where(headline: dict[str, Any]) -> str:
    """The machine in one sentence, for the top of the benchmarks page."""
    m = headline.get("machine", {})
    v = headline.get("versions", {})
    fs = m.get("filesystem", {})
    cache = f" with a {fs['write_cache'].replace(' ', '-')} cache" if fs.get("write_cache") else ""
    text = (
        f"Measured on a {m.get('cpus', '?')}-vCPU {m.get('cpu_model', '?')} virtual machine with "
        f"{m.get('mem_gib', '?')} GiB of memory, {fs.get('fstype', '?')} on a virtual disk{cache}, "
        f"Python {v.get('python', '?')} and uvloop {v.get('uvloop', '?')}, starting "
        f"{str(headline.get('started_utc', '?')).replace('T', ' ').removesuffix('Z')} UTC."
    )
    raw = cell_at(ok_cells(headline), "raw-fdatasync", "uvloop", 128, 1)
    if raw is not None and raw.p50_us is not None:
        text += f" One `pwrite` + `fdatasync` of a record took {fmt_us(raw.p50_us)} there (median)."
    return text


def _block_tables(cells: list[CellResult], size: int, w: int) -> str:
    block = [c for c in cells if c.size == size and c.workers == w]
    order = list(SUBJECTS)
    block.sort(key=lambda c: (order.index(c.subject), c.loop or ""))
    speed = [
        [
            f"`{c.subject}`" + (f" {c.loop}" if c.loop else ""),
            _spread(c),
            fmt_us(c.p50_us),
            fmt_us(c.p99_us),
            fmt_us(c.p999_us),
            "-" if c.records_per_fsync is None else f"{c.records_per_fsync:,.1f}",
        ]
        for c in block
    ]
    cost = [
        [
            f"`{c.subject}`" + (f" {c.loop}" if c.loop else ""),
            f"{c.mb_per_s:,.1f}",
            fmt_rate(c.fsyncs_per_s),
            "-" if c.cpu_us_per_append is None else f"{c.cpu_us_per_append:,.1f}",
            "-"
            if c.rss_peak_mib is None
            else f"{c.rss_peak_mib:,.0f}"
            + (f" + {c.server_rss_peak_mib:,.0f}" if c.server_rss_peak_mib else ""),
        ]
        for c in block
    ]
    ratios = []
    for peer in block:
        if peer.subject.startswith("asyncwal-") or peer.subject == "null":
            continue
        row = [peer.subject + {"asyncio": " aio", "uvloop": " uv", None: ""}[peer.loop]]
        for mode in MODES:
            for loop in ("asyncio", "uvloop"):
                mine = (
                    cell_at(block, f"asyncwal-{mode}", loop, size, w) if peer.loop in (None, loop) else None
                )
                row.append(fmt_ratio(mine.appends_per_s / peer.appends_per_s) if mine else "")
        ratios.append(row)
    out = [
        _table(["subject", "appends/s", "p50", "p99", "p99.9", "rec/fsync"], speed),
        "",
        _table(["subject", "MB/s", "fsyncs/s", "CPU us/append", "RSS MiB (+ server)"], cost),
    ]
    if ratios:
        out += [
            "",
            "asyncwal's appends/s ÷ the subject's, per mode and loop (aio: asyncio, uv: uvloop):",
            "",
            _table(["subject", *(f"{m} {lp}" for m in MODES for lp in ("aio", "uv"))], ratios),
        ]
    return "\n".join(out)


def _indent(text: str) -> str:
    return "\n".join(("    " + line) if line else "" for line in text.split("\n"))


def render_matrix(doc: dict[str, Any]) -> str:
    """Every (size, W) block of a run, each in a collapsed admonition."""
    cells = ok_cells(doc)
    reps = doc.get("config", {}).get("repeat", 1)
    out = []
    for size, w in sorted({(c.size, c.workers) for c in cells}):
        note = f", median of {reps} repetitions (range in brackets)" if reps > 1 else ""
        out.append(f'??? note "{fmt_size(size)} records, W = {w:,}{note}"\n')
        out.append(_indent(_block_tables(cells, size, w)))
        out.append("")
    return "\n".join(out).rstrip("\n")


def render_replay(doc: dict[str, Any]) -> str:
    rows = [
        [
            fmt_size(r["size"]),
            r["loop"],
            r["cache"],
            f"{r['records_per_s']:,.0f}",
            f"{r['mb_per_s']:,.0f}",
            f"{r['open_s'] * 1e3:,.0f} ms",
            f"{r['rss_peak_mib']:,.0f}",
        ]
        for r in doc.get("rows", [])
    ]
    header = ["record", "loop", "cache", "records/s", "MB/s", "open", "peak RSS MiB"]
    return _table(header, rows, right_from=3)


def render_memory(doc: dict[str, Any]) -> str:
    flat = [
        [
            f"`{r['mode']}`",
            f"{r['appends']:,}",
            f"{r['appends_per_s']:,.0f}",
            f"{r['rss_start_mib']:.0f} MiB",
            f"{r['rss_min_mib']:.0f}-{r['rss_max_mib']:.0f} MiB",
            f"{r['spread'] * 100:.1f}%",
            "yes" if r["flat"] else "NO",
        ]
        for r in doc.get("rows", [])
        if r.get("test") == "flatness"
    ]
    bound = [
        [
            f"{r['max_pending_bytes']:,}",
            f"{r['workers']} x {fmt_size(r['size'])}",
            f"{r['appends']:,}",
            f"{r['max_queued_bytes']:,}",
            "yes" if r["holds"] else "NO",
            f"{r['rss_growth_mib']:.0f} MiB",
        ]
        for r in doc.get("rows", [])
        if r.get("test") == "max_pending_bytes"
    ]
    out = [
        _table(["mode", "appends", "appends/s", "RSS at start", "RSS after 10%", "spread", "flat"], flat),
    ]
    if bound:
        out += [
            "",
            _table(
                ["`max_pending_bytes`", "appenders x record", "appends", "max queued", "holds", "RSS growth"],
                bound,
                right_from=0,
            ),
        ]
    return "\n".join(out)


_NATS_COLUMNS = (
    ("asyncwal-disk", "asyncwal `DISK`"),
    ("replicated-packed", "`REPLICATED`, packed"),
    ("replicated-record", "`REPLICATED`, record"),
    ("direct-publish", "direct publish"),
)
_NATS_SETTINGS = {"always": "`always`", "default": "default"}


def render_nats(doc: dict[str, Any]) -> str:
    """``python -m bench nats``: appends/s per subject, with the p50 latency at W = 1."""
    rows = doc.get("rows", [])
    out = []
    for setting in dict.fromkeys(r["setting"] for r in rows):
        for w in sorted({r["workers"] for r in rows if r["setting"] == setting}):
            cells = []
            for subject, _ in _NATS_COLUMNS:
                r = next(
                    (r for r in rows if (r["setting"], r["subject"], r["workers"]) == (setting, subject, w)),
                    None,
                )
                if r is None:
                    cells.append("-")
                elif w == 1:
                    cells.append(f"{r['rate']:,.0f}/s, p50 {r['p50_ms']:.2f} ms")
                else:
                    cells.append(f"{r['rate']:,.0f}/s")
            out.append([_NATS_SETTINGS.get(setting, setting), f"{w:,}", *cells])
    return _table(["`sync_interval`", "W", *(name for _, name in _NATS_COLUMNS)], out)


def render_replication(doc: dict[str, Any]) -> str:
    """``python -m bench nats``, packed ``REPLICATED`` with W > 1: where each record's time goes
    (the local fsync and the stream's acknowledgement of the shipper's messages, both
    measured in the same cell) and the closed-loop bounds they set."""
    out = []
    for r in doc.get("rows", []):
        if r["subject"] != "replicated-packed" or r["workers"] == 1 or "ack_p50_ms" not in r:
            continue
        w, fsync, ack = r["workers"], r["fsync_p50_ms"] / 1000, r["ack_p50_ms"] / 1000
        out.append(
            [
                _NATS_SETTINGS.get(r["setting"], r["setting"]),
                f"{w:,}",
                f"{r['rate']:,.0f}/s",
                f"{r['p50_ms']:.2f} ms",
                f"{r['fsync_p50_ms']:.2f} ms",
                f"{r['ack_p50_ms']:.2f} ms",
                f"{r['records_per_message']:.0f}",
                f"{w / (fsync + ack):,.0f}/s",
                f"{w / ack:,.0f}/s",
            ]
        )
    header = [
        "`sync_interval`",
        "W",
        "packed",
        "p50",
        "fsync p50",
        "ack p50",
        "records / msg",
        "W ÷ (fsync + ack)",
        "W ÷ ack",
    ]
    return _table(header, out)


def render_targets(headline: dict[str, Any], matrix: dict[str, Any]) -> str:
    """The targets, from the headline run's cells and the matrix's cells at W = 4096 (the
    loop steps are judged there)."""
    cells = [*headline.get("cells", []), *(c for c in matrix.get("cells", []) if c.get("workers") == 4096)]
    return render_targets_markdown({"cells": cells})


def _command(doc: dict[str, Any], kind: str) -> str:
    argv = doc.get("argv")
    if argv:
        args = list(argv[1:])
        if "--out" in args:  # where it was written is in the file column
            i = args.index("--out")
            del args[i : i + 2]
        return "`" + " ".join(["python -m bench", *args]) + "`"
    extra = " --cold" if any(r.get("cache") == "cold" for r in doc.get("rows", [])) else ""
    return f"`python -m bench {kind}{extra}`"


def _what(doc: dict[str, Any]) -> str:
    kind = str(doc.get("kind", "matrix"))
    if kind != "matrix":
        return kind
    cfg = doc.get("config", {})
    sizes = ", ".join(fmt_size(s) for s in cfg.get("sizes", []))
    ws = ", ".join(f"{w:,}" for w in cfg.get("workers", []))
    reps = cfg.get("repeat", 1)
    return f"{sizes}; W = {ws}; {reps} repetition{'s' if reps > 1 else ''}"


def render_runs(docs: list[tuple[str, dict[str, Any]]]) -> str:
    """The results files behind the pages, with the command that made each."""
    rows = [
        [
            _what(doc),
            _command(doc, str(doc.get("kind"))),
            f"`{path}`",
            doc.get("started_utc") or _stamp_of(path),
        ]
        for path, doc in docs
    ]
    return _table(["run", "command", "file", "started (UTC)"], rows, right_from=9)


def _stamp_of(path: str) -> str:
    m = re.search(r"(\d{8})T(\d{2})(\d{2})(\d{2})Z", path)
    if not m:
        return "-"
    d = m.group(1)
    return f"{d[:4]}-{d[4:6]}-{d[6:]}T{m.group(2)}:{m.group(3)}:{m.group(4)}Z"


@dataclass(frozen=True, slots=True)
class Kind:
    roles: tuple[str, ...]  #: which run each named file is: headline, matrix, replay, memory
    render: Callable[[list[tuple[str, dict[str, Any]]]], str]


KINDS: dict[str, Kind] = {
    "summary": Kind(("headline",), lambda d: render_summary(d[0][1])),
    "modes": Kind(("headline",), lambda d: render_modes(d[0][1])),
    "machine": Kind(("headline",), lambda d: render_machine(d[0][1])),
    "where": Kind(("headline",), lambda d: render_where(d[0][1])),
    "headline": Kind(("headline",), lambda d: render_matrix(d[0][1])),
    "matrix": Kind(("matrix",), lambda d: render_matrix(d[0][1])),
    "replay": Kind(("replay",), lambda d: render_replay(d[0][1])),
    "memory": Kind(("memory",), lambda d: render_memory(d[0][1])),
    "nats": Kind(("nats",), lambda d: render_nats(d[0][1])),
    "replication": Kind(("nats",), lambda d: render_replication(d[0][1])),
    "runs": Kind(("headline", "matrix", "replay", "memory"), render_runs),
    "http": Kind(("http",), lambda d: render_http(d[0][1])),
    "stalls": Kind(("matrix",), lambda d: render_stalls_markdown(d[0][1])),
    "targets": Kind(("headline", "matrix"), lambda d: render_targets(d[0][1], d[1][1])),
}


def render_block(kind: str, paths: list[str]) -> str:
    """The body of a generated block of ``kind`` made from the results files ``paths``
    (repository-relative), without its two marker lines."""
    spec = KINDS[kind]
    if len(paths) != len(spec.roles):
        raise ValueError(f"bench:{kind} takes {len(spec.roles)} results file(s), not {paths}")
    return spec.render([(p, _load(p)) for p in paths]).strip("\n")


# -- pages -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Block:
    page: Path
    line: int  #: 1-based line of the opening marker
    kind: str
    paths: list[str]
    body: str  #: the lines between the markers


def blocks_in(page: Path) -> Iterator[Block]:
    """The generated blocks of a Markdown page."""
    lines = page.read_text(encoding="utf-8").split("\n")
    i = 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if m is None:
            i += 1
            continue
        kind = m["kind"]
        end = lines.index(f"<!-- /bench:{kind} -->", i + 1)
        body = "\n".join(lines[i + 1 : end]).strip("\n")
        yield Block(page, i + 1, kind, m["paths"].split(), body)
        i = end + 1


def update_page(page: Path, sources: dict[str, str]) -> int:
    """Rewrite every generated block of ``page`` from ``sources`` (role -> path); return how
    many blocks it has."""
    text = page.read_text(encoding="utf-8")
    count = 0

    def replace(m: re.Match[str]) -> str:
        nonlocal count
        count += 1
        kind = m["kind"]
        paths = [sources[role] for role in KINDS[kind].roles]
        body = render_block(kind, paths)
        return f"<!-- bench:{kind} {' '.join(paths)} -->\n\n{body}\n\n<!-- /bench:{kind} -->"

    pattern = re.compile(
        r"^<!-- bench:(?P<kind>[a-z]+)(?: \S+)* -->\n.*?^<!-- /bench:(?P=kind) -->", re.M | re.S
    )
    new = pattern.sub(replace, text)
    if new != text:
        page.write_text(new, encoding="utf-8")
    return count


# -- pictures --------------------------------------------------------------------------------


def draw(headline_path: str, matrix_path: str, outdir: Path = ASSETS) -> list[Path]:
    """The pictures the benchmarks page shows, each tagged with its results file."""
    headline, matrix = _load(headline_path), _load(matrix_path)
    written: list[Path | None] = []
    for mode in MODES:
        written.append(plot_ratios(headline, mode, outdir / f"ratio_{mode}.png", source=headline_path))
    for size in sorted({c.size for c in ok_cells(matrix)}):
        written.append(
            plot_throughput(
                matrix, size, outdir / f"throughput_{size}B.png", mb_per_s=size >= 16384, source=matrix_path
            )
        )
    for w in sorted({c.workers for c in ok_cells(headline)}):
        written.append(plot_latency(headline, w, outdir / f"latency_W{w}.png", source=headline_path))
    return [p for p in written if p is not None]


def png_source(path: Path) -> str | None:
    """The ``Source`` text of a PNG drawn by :func:`draw` (read from its tEXt chunks)."""
    data = path.read_bytes()
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        ctype = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if ctype == b"tEXt":
            key, _, value = body.partition(b"\0")
            if key == b"Source":
                return value.decode("latin-1")
        pos += 12 + length
    return None


# -- command ---------------------------------------------------------------------------------


def main(
    headline: Path | None,
    matrix: Path | None,
    replay: Path | None,
    memory: Path | None,
    nats: Path | None = None,
) -> int:
    """Redraw the pictures and rewrite every generated block from the chosen runs."""
    sources = {
        "headline": _rel(resolve_latest(headline or RESULTS_DIR / "headline" / "latest.json")),
        "matrix": _rel(resolve_latest(matrix or RESULTS_DIR / "latest.json")),
        "replay": _rel(resolve_latest(replay or RESULTS_DIR / "latest-replay.json")),
        "memory": _rel(resolve_latest(memory or RESULTS_DIR / "latest-memory.json")),
        # python -m bench nats keeps only its latest run: quote that file itself.
        "nats": _rel(nats or RESULTS_DIR / "latest-nats.json"),
        "http": _rel(resolve_latest(RESULTS_DIR / "latest-http.json")),
    }
    for role, path in sources.items():
        print(f"{role}: {path}")
    for png in draw(sources["headline"], sources["matrix"]):
        print(f"picture: {_rel(png)}")
    for page in PAGES:
        n = update_page(page, sources)
        if n:
            print(f"page: {_rel(page)} ({n} generated block{'s' if n > 1 else ''})")
    return 0
