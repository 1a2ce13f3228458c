"""Command line of ``python -m bench``.

::

    python -m bench --setup                      # install the peers (pip + apt-get)
    python -m bench                              # the full matrix (~13 min)
    python -m bench --quick                      # W=1,256, 128 B, 0.5 s cells (~1 min)
    python -m bench --subjects asyncwal,sqlite --workers 1,256 --sizes 128 --seconds 2 --loops uvloop
    python -m bench replay [--sizes 128,16384] [--cold]
    python -m bench memory [--appends 10000000] [--modes sync,batch,none]
    python -m bench profile [--modes sync,batch,none] [--workers 256] [--seconds 3]
    python -m bench nats [--workers 1,256] [--seconds 3]   # REPLICATED vs direct JetStream publish
    python -m bench report [bench/results/latest.json] [--markdown]
    python -m bench list                         # the subjects and groups
    python -m bench docs [--headline F] [--matrix F] [--replay F] [--memory F]
                                                 # the docs' pictures and tables from saved runs
    python -m bench http [--rounds 3] [--seconds 5]  # HTTP servers under wrk (see bench/_http.py)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from ._runner import REPO_ROOT, RESULTS_DIR, plan_cells, run_matrix, save_document, timestamp
from ._subjects import GROUPS, SUBJECTS, select_subjects

__all__ = ("main",)

FULL_WORKERS = (1, 16, 256, 4096)
FULL_SIZES = (128, 1024, 16384)
DEFAULT_SECONDS = 1.25
DEFAULT_WARMUP = 0.25


def _ints(text: str) -> list[int]:
    try:
        values = [
            int(x.strip().lower().replace("k", "000").replace("ki", "")) for x in text.split(",") if x.strip()
        ]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, not {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, not {text!r}")
    return values


def _sizes(text: str) -> list[int]:
    out: list[int] = []
    for tok in (t.strip().lower() for t in text.split(",") if t.strip()):
        mult = 1
        for suffix, m in (("kib", 1024), ("k", 1024), ("b", 1)):
            if tok.endswith(suffix):
                tok, mult = tok[: -len(suffix)], m
                break
        try:
            out.append(int(tok) * mult)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad record size {tok!r}") from None
    return out


def _loops(text: str) -> list[str]:
    loops = [t.strip() for t in text.split(",") if t.strip()]
    for lp in loops:
        if lp not in ("asyncio", "uvloop"):
            raise argparse.ArgumentTypeError(f"unknown event loop {lp!r} (asyncio, uvloop)")
    return loops


def _available_loops() -> list[str]:
    return ["asyncio", "uvloop"] if importlib.util.find_spec("uvloop") is not None else ["asyncio"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="asyncwal's benchmark: asyncwal vs the disk's physics and its peers, side by side.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="subjects and groups: " + ", ".join([*GROUPS, *SUBJECTS]),
    )
    p.add_argument(
        "command",
        nargs="?",
        default="run",
        choices=("run", "replay", "memory", "profile", "report", "list", "docs", "nats"),
    )
    p.add_argument("path", nargs="?", help="report: the results JSON (default: bench/results/latest.json)")
    p.add_argument("--setup", action="store_true", help="install the peers (pip, apt-get) and exit")
    p.add_argument("--subjects", default="all", help="comma-separated subjects or groups (default: all)")
    p.add_argument("--workers", type=_ints, help="W values (default 1,16,256,4096; memory: 256)")
    p.add_argument("--sizes", type=_sizes, help="record sizes, e.g. 128,1KiB,16KiB (replay: 128,16KiB)")
    p.add_argument("--seconds", type=float, help=f"measured seconds per cell (default {DEFAULT_SECONDS})")
    p.add_argument(
        "--warmup", type=float, help=f"unmeasured seconds before each cell (default {DEFAULT_WARMUP})"
    )
    p.add_argument(
        "--loops", type=_loops, help="event loops: asyncio,uvloop (default: both, if uvloop is installed)"
    )
    p.add_argument("--repeat", type=int, default=1, help="run each (size, W) block N times; keep the median")
    p.add_argument(
        "--quick", action="store_true", help="W=1,256, 128 B, 0.5 s cells: a one-minute sanity run"
    )
    p.add_argument(
        "--dir", type=Path, default=RESULTS_DIR / "tmp", help="where cells put their files (local disk)"
    )
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="where results JSON and plots go")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-save", action="store_true", help="print only; write no results files")
    p.add_argument("--in-process", action="store_true", help="run cells in this process (debugging only)")
    p.add_argument("--markdown", action="store_true", help="report: print Markdown tables")
    p.add_argument("--records", type=int, help="replay: records to write per size")
    p.add_argument("--cold", action="store_true", help="replay: drop the page cache before reading (root)")
    p.add_argument("--appends", type=int, default=10_000_000, help="memory: appends per mode (default 10M)")
    p.add_argument(
        "--modes", default="sync,batch,none", help="memory, profile: asyncwal modes (default sync,batch,none)"
    )
    docs = p.add_argument_group("docs: the results files to quote (default: the latest of each)")
    docs.add_argument("--headline", type=Path, help="default bench/results/headline/latest.json")
    docs.add_argument("--matrix", type=Path, help="default bench/results/latest.json")
    docs.add_argument("--replay", type=Path, help="default bench/results/latest-replay.json")
    docs.add_argument("--memory", type=Path, help="default bench/results/latest-memory.json")
    docs.add_argument("--nats", type=Path, help="default bench/results/latest-nats.json")
    return p


def _save(doc: dict[str, Any], out: Path, suffix: str) -> Path:
    stamp = timestamp()
    path = out / f"{stamp}{suffix}.json"
    save_document(doc, path)
    save_document(doc, out / f"latest{suffix}.json")
    return path


def _cmd_run(a: argparse.Namespace) -> int:
    try:
        subjects = select_subjects(a.subjects)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    workers = a.workers or ([1, 256] if a.quick else list(FULL_WORKERS))
    sizes = a.sizes or ([128] if a.quick else list(FULL_SIZES))
    seconds = a.seconds if a.seconds is not None else (0.5 if a.quick else DEFAULT_SECONDS)
    warmup = a.warmup if a.warmup is not None else (0.2 if a.quick else DEFAULT_WARMUP)
    loops = a.loops or _available_loops()
    workdir: Path = a.dir.resolve()
    cells = plan_cells(subjects, loops, workers, sizes, seconds, warmup, workdir, repeat=max(1, a.repeat))
    config = {
        "subjects": subjects,
        "workers": workers,
        "sizes": sizes,
        "loops": loops,
        "seconds": seconds,
        "warmup": warmup,
        "repeat": max(1, a.repeat),
        "in_process": a.in_process,
    }
    print(f"{len(cells)} cells of {warmup:g}+{seconds:g} s; data in {workdir}", flush=True)
    stamp_path = None if a.no_save else a.out / f"{timestamp()}.json"
    doc = run_matrix(cells, config=config, out_path=stamp_path, in_process=a.in_process)
    from ._report import render_text

    print(render_text(doc))
    if stamp_path is not None:
        save_document(doc, a.out / "latest.json")
        print(f"results: {stamp_path} and {a.out / 'latest.json'}")
        if not a.no_plots:
            _plots(doc, a.out)
    return 0 if all(c.get("error") is None for c in doc["cells"]) else 1


def _plots(doc: dict[str, Any], out: Path) -> None:
    if importlib.util.find_spec("matplotlib") is None:
        print("plots skipped: matplotlib is not installed (python -m bench --setup)")
        return
    from ._report import plot_all

    for path in plot_all(doc, out):
        print(f"plot: {path}")


def _child_env() -> dict[str, str]:
    from ._runner import _child_env as env

    return env()


def _cmd_replay(a: argparse.Namespace) -> int:
    from ._replay import render_replay_markdown, run_replay

    loops = a.loops or [_available_loops()[-1]]
    doc = run_replay(
        sizes=a.sizes or [128, 16384], loops=loops, workdir=a.dir.resolve(), records=a.records, cold=a.cold,
        env=_child_env(), cwd=REPO_ROOT,
    )  # fmt: skip
    print(render_replay_markdown(doc))
    if not a.no_save:
        print(f"results: {_save(doc, a.out, '-replay')}")
    return 0 if all(r["complete"] for r in doc["rows"]) else 1


def _cmd_memory(a: argparse.Namespace) -> int:
    from ._memory import render_memory_markdown, run_memory

    loop = (a.loops or [_available_loops()[-1]])[0]
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    doc = run_memory(
        modes=modes, appends=a.appends, workers=(a.workers or [256])[0], loop=loop, workdir=a.dir.resolve(),
        env=_child_env(), cwd=REPO_ROOT,
    )  # fmt: skip
    print(render_memory_markdown(doc))
    if not a.no_save:
        print(f"results: {_save(doc, a.out, '-memory')}")
    ok = all(r.get("flat", True) and r.get("holds", True) for r in doc["rows"])
    return 0 if ok else 1


def _cmd_profile(a: argparse.Namespace) -> int:
    from ._profile import run_profile

    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    if any(m not in ("sync", "batch", "none") for m in modes):
        print(f"error: unknown mode in {a.modes!r} (sync, batch, none)", file=sys.stderr)
        return 2
    workers = (a.workers or [256])[0]
    size = (a.sizes or [128])[0]
    loop = (a.loops or _available_loops())[-1]  # uvloop when installed
    seconds = a.seconds if a.seconds is not None else 3.0
    out = a.out / "profile" if not a.no_save else Path(tempfile.mkdtemp(prefix="asyncwal-profile-"))
    docs = run_profile(modes, workers, size, seconds, loop, out, timestamp(), _child_env(), a.dir.resolve())
    for doc in docs:
        print(f"== {doc['summary']}")
        print("\n".join(doc["lines"]))
        print(f"full report: {doc['path']}\n")
    return 0


def _cmd_nats(a: argparse.Namespace) -> int:
    from ._nats import render_nats_markdown, run_nats, save

    doc = run_nats(
        workers=a.workers or [1, 256],
        seconds=a.seconds if a.seconds is not None else 3.0,
        warmup=a.warmup if a.warmup is not None else 0.5,
        workdir=a.dir.resolve(),
        settings=["always", "default"],
    )
    print(render_nats_markdown(doc))
    if not a.no_save:
        print(f"results: {save(doc, a.out)}")
    return 0


def _cmd_report(a: argparse.Namespace) -> int:
    from ._report import render_markdown, render_targets_markdown, render_text

    path = Path(a.path) if a.path else a.out / "latest.json"
    with path.open() as f:
        doc = json.load(f)
    if a.markdown:
        print(render_markdown(doc))
        print(render_targets_markdown(doc))
    else:
        print(render_text(doc))
    if not a.no_plots and not a.markdown:
        _plots(doc, a.out)
    return 0


def _cmd_list() -> int:
    for info in SUBJECTS.values():
        reason = info.unavailable()
        state = f"  [{reason}]" if reason else ""
        loop = "per loop" if info.has_loop else "no loop "
        print(f"{info.name:<20} {info.group:<10} {loop} {info.description}{state}")
    print("\ngroups: " + ", ".join(f"{g} ({len(m)})" for g, m in GROUPS.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["http"]:  # a benchmark of its own, with its own options
        from ._http import main as http_main

        return http_main(args[1:])
    a = build_parser().parse_args(argv)
    if a.setup:
        from ._setup import setup

        return setup()
    if a.command == "list":
        return _cmd_list()
    if a.command == "replay":
        return _cmd_replay(a)
    if a.command == "memory":
        return _cmd_memory(a)
    if a.command == "report":
        return _cmd_report(a)
    if a.command == "profile":
        return _cmd_profile(a)
    if a.command == "nats":
        return _cmd_nats(a)
    if a.command == "docs":
        from ._docs import main as docs_main

        return docs_main(a.headline, a.matrix, a.replay, a.memory, a.nats)
    return _cmd_run(a)
