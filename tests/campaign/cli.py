"""``python -m bench.crash_campaign`` (also ``python -m tests.campaign``): the long versions of
the four campaigns, and the figures for the "Evidence" section of docs/durability.md.

Every command takes ``--seed`` and ``--trials``; ``-v`` shows asyncwal's own log messages.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import shutil
import sys
import tempfile
import time
from typing import TYPE_CHECKING

from . import MODES
from .broken import BROKEN
from .checker import Stats
from .corrupt import corrupt_trial
from .faults import FAULTS, fault_trial
from .kill import child_main, kill_trial
from .powerloss import powerloss_trial

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


__all__ = "main"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.crash_campaign",
        description="Crash and fault campaigns: the evidence behind docs/durability.md",
    )
    sub = parser.add_subparsers(dest="cmd")
    p_all = sub.add_parser("all", help="every campaign, long version; prints the figures")
    p_all.add_argument("--trials", type=int, default=40, help="power-loss runs (others scale from it)")
    p_all.add_argument("--seed", type=int, default=1)
    p_all.add_argument("--json", help="also write the figures to this file")
    p_pl = sub.add_parser("powerloss", help="power-loss runs (or replay one crash point)")
    p_pl.add_argument("--seed", type=int, default=1)
    p_pl.add_argument("--trials", type=int, default=1)
    p_pl.add_argument("--steps", type=int, default=40)
    p_pl.add_argument("--samples", type=int, default=3)
    p_pl.add_argument("--at", type=int, help="check only this crash point")
    p_pl.add_argument("--sample", help="check only this sample (durable or a number)")
    p_pl.add_argument("--broken", choices=sorted(BROKEN))
    p_pl.add_argument("--mode", choices=MODES, help="the sync mode the run starts in")
    p_f = sub.add_parser("faults", help="fault matrix")
    p_f.add_argument("--seed", type=int, default=1)
    p_f.add_argument("--trials", type=int, default=1)
    p_f.add_argument("--fault", choices=sorted(FAULTS))
    p_k = sub.add_parser("kill", help="process kills")
    p_k.add_argument("--seed", type=int, default=1)
    p_k.add_argument("--trials", type=int, default=1)
    p_k.add_argument("--mode", choices=MODES)
    p_c = sub.add_parser("corrupt", help="damaged logs")
    p_c.add_argument("--seed", type=int, default=1)
    p_c.add_argument("--trials", type=int, default=1)
    p_c.add_argument("--mutations", type=int, default=1)
    p_child = sub.add_parser("child", help="(internal) the writer process of the kill campaign")
    p_child.add_argument("args", nargs=4)
    parser.add_argument("-v", "--verbose", action="store_true", help="show asyncwal's log messages")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a in sub.choices for a in argv):
        argv.append("all")  # the default command
    args = parser.parse_args(argv)
    if not args.verbose:
        # Recovery cutting torn tails and logs failing on injected faults is the point here.
        logging.getLogger("asyncwal").setLevel(logging.CRITICAL)
    if args.cmd == "child":
        child_main(args.args)
        return 0
    per: dict[str, Stats] = {}
    seconds: dict[str, float] = {}

    def campaign(name: str) -> Stats:
        seconds[name] = time.perf_counter()
        return per.setdefault(name, Stats())

    if args.cmd in ("powerloss", "all"):
        st = campaign("power loss")
        for s in range(args.seed, args.seed + args.trials):
            st.add(
                asyncio.run(
                    powerloss_trial(
                        s,
                        steps=getattr(args, "steps", 40),
                        samples=getattr(args, "samples", 3),
                        mode=getattr(args, "mode", None),
                        broken=getattr(args, "broken", None),
                        points=[args.at] if getattr(args, "at", None) is not None else None,
                        only_sample=getattr(args, "sample", None),
                    )
                )
            )
        seconds["power loss"] = time.perf_counter() - seconds["power loss"]
    if args.cmd in ("faults", "all"):
        st = campaign("faults")
        n = args.trials if args.cmd == "faults" else max(1, args.trials // 2)
        names = [args.fault] if getattr(args, "fault", None) else sorted(FAULTS)
        for s in range(args.seed, args.seed + n):
            for name in names:
                st.add(asyncio.run(fault_trial(s, name)))
        seconds["faults"] = time.perf_counter() - seconds["faults"]
    if args.cmd in ("kill", "all"):
        st = campaign("process kill")
        n = args.trials if args.cmd == "kill" else max(1, args.trials // 4)
        modes = [args.mode] if getattr(args, "mode", None) else list(MODES)
        for s in range(args.seed, args.seed + n):
            for mode in modes:
                d = tempfile.mkdtemp(prefix="asyncwal-kill-")
                try:
                    st.add(kill_trial(s, mode, d))
                finally:
                    shutil.rmtree(d, ignore_errors=True)
        seconds["process kill"] = time.perf_counter() - seconds["process kill"]
    if args.cmd in ("corrupt", "all"):
        st = campaign("corrupt input")
        n = args.trials if args.cmd == "corrupt" else args.trials * 10
        for s in range(args.seed, args.seed + n):
            st.add(asyncio.run(corrupt_trial(s, mutations=getattr(args, "mutations", 1 + s % 3))))
        seconds["corrupt input"] = time.perf_counter() - seconds["corrupt input"]
    _report(per, seconds, getattr(args, "json", None))
    return 0


def _report(per: Mapping[str, Stats], seconds: Mapping[str, float], json_path: str | None) -> None:
    """Print the figures as a Markdown table (one column per campaign), and as JSON."""
    labels = {
        "trials": "trials (seeded runs, damaged logs)",
        "crash_points": "crash points (file operations crashed after)",
        "second_crash_points": "crash points during recovery of a crashed image",
        "states_checked": "crash states reopened and checked",
        "kills": "SIGKILLs of a writer process",
        "faults_fired": "faults injected (fired)",
        "acked_checked": "acknowledged records required (summed over checks)",
        "acked_lost": "acknowledged records lost",
        "corrupt_cases": "damaged logs opened (x3 recovery modes)",
        "corrupt_recovered": "... recovered",
        "corrupt_rejected": "... rejected with CorruptLogError",
    }
    names = list(per)
    print("| | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for field, label in labels.items():
        values = [getattr(per[n], field) for n in names]
        if any(values) or field == "acked_lost":
            print(f"| {label} | " + " | ".join(f"{v:,}" for v in values) + " |")
    print("| seconds | " + " | ".join(f"{seconds[n]:.0f}" for n in names) + " |")
    if json_path:
        payload = {n: dataclasses.asdict(st) | {"seconds": round(seconds[n], 1)} for n, st in per.items()}
        with open(json_path, "w") as out:
            json.dump(payload, out, indent=2)
