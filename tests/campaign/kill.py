"""The process-kill campaign.

A child process runs a workload on real files with real fsyncs and reports every
acknowledgement on its stdout; the parent SIGKILLs it after a random number of reports,
reopens the log and checks it, and starts the next child on the same directory. One kill in
three waits for a ``truncate_before`` request; segments are small, so kills also land during
rotation. The child is ``python -m tests.campaign child DIR MODE SEED START_ID``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import random
import signal
import struct
import subprocess
import sys
from typing import TYPE_CHECKING, Any, Final

import asyncwal
from asyncwal import Durability

from .checker import CampaignFailure, Expectations, Stats, Violation, check_reopened

if TYPE_CHECKING:
    from collections.abc import Sequence


__all__ = (
    "KillHistory",
    "check_after_kill",
    "child_main",
    "kill_payload",
    "kill_trial",
)

#: The checkout the campaign runs from: the child process imports ``tests.campaign`` from here.
REPO_ROOT: Final = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


_HEADER = struct.Struct("<QQHH")  # id, batch id (0: none), batch size, index in batch


def kill_payload(seed: int, ident: int, batch: int = 0, size: int = 1, index: int = 0) -> bytes:
    """A self-describing record: a reader can tell it was written by this campaign, unchanged."""
    digest = hashlib.blake2b(b"%d/%d" % (seed, ident), digest_size=32).digest()
    n = digest[0] * 3 + (digest[1] % 4) * 700
    body = (digest * (n // 32 + 1))[:n]
    return _HEADER.pack(ident, batch, size, index) + body


def _parse_payload(seed: int, data: bytes) -> tuple[int, int, int, int] | None:
    if len(data) < _HEADER.size:
        return None
    ident, batch, size, index = _HEADER.unpack_from(data)
    if data != kill_payload(seed, ident, batch, size, index):
        return None
    return ident, batch, size, index


async def _child(path: str, mode: str, seed: int, start_id: int) -> None:
    """The writer process: append forever, report every acknowledgement on stdout.

    Lines: ``a <seq> <id> <level>`` an append reached ``level``; ``b <first> <last>`` a batch
    is on disk; ``w <written_seq> <durable_seq>`` the log's levels after a step; ``t <seq>`` a
    truncate_before is being requested; ``c <index> <seq>`` a checkpoint is being requested,
    ``C <index>`` it was acknowledged.
    """
    rng = random.Random(f"child/{seed}/{start_id}")
    out = sys.stdout
    ident = start_id
    n_cp = 0

    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    def say_when_done(fut: asyncio.Future[Any], line: str) -> None:
        def done(f: asyncio.Future[Any]) -> None:
            if not f.cancelled() and f.exception() is None:
                say(line)

        fut.add_done_callback(done)

    async with asyncwal.open(
        path, sync_mode=mode, segment_size=8192, batch_size=8, batch_interval=0.002
    ) as log:
        say(f"o {log.first_seq} {log.last_seq}")
        default = log.options.default_durability
        while True:
            futs: list[asyncio.Future[Any]] = []
            for _ in range(rng.randint(1, 12)):
                level = rng.choice((None, None, None, Durability.OS, Durability.DISK))
                fut = log.append(kill_payload(seed, ident), level)
                seq = log.last_seq
                lv = int(default if level is None else level)
                say_when_done(fut, f"a {seq} {ident} {lv}")
                futs.append(fut)
                ident += 1
            if rng.random() < 0.2:
                size = rng.randint(1, 4)
                batch = [kill_payload(seed, ident + k, ident, size, k) for k in range(size)]
                ident += size
                bfut = log.append_batch(batch)
                last = log.last_seq
                say_when_done(bfut, f"b {last - size + 1} {last}")
                futs.append(bfut)
            r = rng.random()
            if r < 0.08:
                seq = rng.randint(log.first_seq, log.last_seq + 1)
                say(f"t {seq}")
                futs.append(asyncio.ensure_future(log.truncate_before(seq)))
            elif r < 0.12:
                say(f"c {n_cp} {log.last_seq}")
                cp = asyncio.ensure_future(log.checkpoint(b"cp%d/%d" % (start_id, n_cp)))
                say_when_done(cp, f"C {n_cp}")
                futs.append(cp)
                n_cp += 1
            await asyncio.gather(*futs)
            say(f"w {log.written_seq} {log.durable_seq}")


def child_main(argv: Sequence[str]) -> None:
    path, mode, seed, start_id = argv
    asyncio.run(_child(path, mode, int(seed), int(start_id)))


@dataclasses.dataclass
class KillHistory:
    """What the killed writers reported, accumulated over the rounds on one directory."""

    acked: dict[int, int] = dataclasses.field(default_factory=dict)  # seq -> id, acked at >= OS
    os_mark: int = 0  # highest written_seq reported
    truncated: int = 0
    checkpoints: list[tuple[bytes, int]] = dataclasses.field(default_factory=list)
    checkpoint_acked: int = -1
    max_id: int = 0


def _read_reports(lines: Sequence[str], hist: KillHistory, start_id: int) -> None:
    for line in lines:
        kind, *args = line.split()
        nums = [int(a) for a in args]
        if kind == "a" and nums[2] >= Durability.OS:
            hist.acked[nums[0]] = nums[1]
        elif kind == "b":
            hist.os_mark = max(hist.os_mark, nums[1])
        elif kind == "w":
            hist.os_mark = max(hist.os_mark, nums[0])
        elif kind == "t":
            hist.truncated = max(hist.truncated, nums[0])
        elif kind == "c":
            hist.checkpoints.append((b"cp%d/%d" % (start_id, nums[0]), nums[1]))
        elif kind == "C":
            data = b"cp%d/%d" % (start_id, nums[0])
            hist.checkpoint_acked = max(
                hist.checkpoint_acked, next(i for i, (d, _) in enumerate(hist.checkpoints) if d == data)
            )


def kill_trial(seed: int, mode: str, directory: str, *, rounds: int = 3, max_reports: int = 120) -> Stats:
    """Kill a writer child ``rounds`` times on one directory, checking the log after each kill.

    :raises CampaignFailure: a reopened log broke an invariant
    """
    rng = random.Random(f"kill/{seed}/{mode}")
    hist = KillHistory()
    stats = Stats(trials=1)
    path = os.path.join(directory, "wal")
    for rnd in range(rounds):
        start_id = hist.max_id + 1_000_000 * (rnd + 1)
        kill_after = rng.randint(1, max_reports)
        # One kill in three waits, after that, for a truncate_before request: the kill then
        # lands while its META write and unlinks are in flight.
        at_truncation = rng.random() < 1 / 3
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.campaign", "child", path, mode, str(seed), str(start_id)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
        )
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            if len(lines) >= kill_after and (not at_truncation or line.startswith("t ")):
                break
        proc.send_signal(signal.SIGKILL)
        rest, err = proc.communicate()
        lines += rest.splitlines(keepends=True)
        complete = [ln for ln in lines if ln.endswith("\n")]  # a line cut by the kill says nothing
        if proc.returncode != -signal.SIGKILL:
            raise CampaignFailure(f"kill: seed={seed} mode={mode}: the child exited {proc.returncode}: {err}")
        stats.kills += 1
        _read_reports(complete, hist, start_id)
        try:
            stats.acked_checked += asyncio.run(check_after_kill(path, seed, hist))
        except Violation as exc:
            raise CampaignFailure(
                f"process kill: seed={seed} mode={mode} round {rnd}, killed after {kill_after} "
                f"reports: {exc}\n"
                f"replay: python -m bench.crash_campaign kill --seed {seed} --mode {mode}"
            ) from exc
    return stats


async def check_after_kill(path: str, seed: int, hist: KillHistory) -> int:
    """Reopen a killed writer's log and check it against the reports it made.

    :raises Violation: an invariant does not hold
    :return: how many acknowledged records the check required
    """
    acked = dict(hist.acked)

    def payload(seq: int, data: bytes) -> str | None:
        parsed = _parse_payload(seed, data)
        if parsed is None:
            return "was never appended (not a payload of this campaign)"
        if seq in acked and acked[seq] != parsed[0]:
            return f"holds record id {parsed[0]}, id {acked[seq]} was acknowledged"
        return None

    expect = Expectations(
        required=max([hist.os_mark, *hist.acked]),
        truncated=hist.truncated,
        payload=payload,
        checkpoints=hist.checkpoints,
        checkpoint_acked=hist.checkpoint_acked,
    )
    checked = await check_reopened(None, path, expect)
    # Batches are atomic and ids grow with seqs: read the payloads back.
    async with asyncwal.open(path) as log:
        records = [(r.seq, r.data) async for r in log.replay()]
    last_id = -1
    batches: dict[int, list[int]] = {}
    for seq, data in records:
        parsed = _parse_payload(seed, data)
        assert parsed is not None  # checked above
        ident, batch, size, _ = parsed
        if ident <= last_id:
            raise Violation(f"record {seq} holds id {ident} after id {last_id}: out of order")
        last_id = ident
        hist.max_id = max(hist.max_id, ident)
        if batch:
            batches.setdefault(batch, []).append(size)
    for batch, sizes in batches.items():
        if len(sizes) != sizes[0]:
            raise Violation(f"batch {batch} is torn: {len(sizes)} of {sizes[0]} records survived")
    return checked
