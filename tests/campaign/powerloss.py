"""The power-loss campaign.

A seeded workload runs on a :class:`~asyncwal.testing.PowerLossFileOps`. For every crash point
(after each recorded file operation) the worst-case image (only synced data under only synced
names) and ``samples`` random images are reopened with the real engine and checked
(:func:`~tests.campaign.checker.check_reopened`); for one image in 16, the recovery of that
image (and an append after it) is itself crashed at every point and checked again.
Deterministic: a failure names the seed, the crash point and the sample, and prints the
command that replays it. A deliberately broken disk (:data:`~tests.campaign.broken.BROKEN`)
is caught.
"""

from __future__ import annotations

import dataclasses
import random
from typing import TYPE_CHECKING

import asyncwal
from asyncwal import Durability
from asyncwal.testing import PowerLossFileOps

from . import LOG_DIR
from .broken import BROKEN
from .checker import CampaignFailure, Expectations, NewImages, Stats, Violation, check_image
from .workload import Recorder, run_workload

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from asyncwal._fileops import FileOps

__all__ = "powerloss_trial"


async def powerloss_trial(
    seed: int,
    *,
    steps: int = 40,
    samples: int = 3,
    mode: str | None = None,
    broken: str | None = None,
    points: Sequence[int] | None = None,
    only_sample: str | None = None,
) -> Stats:
    """Record one seeded run on a PowerLossFileOps and check every crash point.

    :param samples: random images per crash point, besides the worst-case one
    :param mode: the sync mode the run starts in (it changes at random reopens)
    :param broken: a key of :data:`BROKEN`: run on a deliberately broken FileOps
    :param points: check only these crash points (replaying a failure)
    :param only_sample: check only this sample (``"durable"`` or a number)
    :raises CampaignFailure: an image broke an invariant; the message says how to replay it
    """
    plops = PowerLossFileOps()
    ops: FileOps = plops if broken is None else BROKEN[broken](plops)
    rec = Recorder(plops.crash_points)
    await run_workload(ops, rec, seed, steps, mode=mode)
    stats = Stats(trials=1, crash_points=plops.crash_points() + 1)
    for at, state in plops.states(points):
        images: list[tuple[str, dict[str, bytes]]] = [("durable", state.durable())]
        if state.unsynced():
            images += [(str(k), state.sample(random.Random(f"{seed}/{at}/{k}"))) for k in range(samples)]
        seen = NewImages()
        expect = rec.expectations(at, Durability.DISK)
        for label, image in images:
            if only_sample is not None and label != only_sample:
                continue
            if not seen.first_time(image):
                continue
            try:
                # Also append after recovery for one image in 8 (chosen per image, so a
                # replay of one crash point does the same).
                post = random.Random(f"{seed}/{at}/{label}/post").random() < 0.125
                stats.acked_checked += await check_image(image, expect, append_after=post)
                # And for one image in 16, crash again during its recovery (and the first
                # append after it), at every point.
                if random.Random(f"{seed}/{at}/{label}/double").random() < 1 / 16:
                    stats.add(await _crash_during_recovery(image, expect, f"{seed}/{at}/{label}"))
            except Violation as exc:
                raise CampaignFailure(
                    f"power loss: seed={seed} crash point {at} of {plops.crash_points()} "
                    f"({plops.describe(at)}), sample {label}"
                    f"{f', broken={broken}' if broken else ''}: {exc}\n"
                    f"replay: python -m bench.crash_campaign powerloss --seed {seed} --steps {steps} "
                    f"--at {at} --sample {label}{f' --mode {mode}' if mode else ''}"
                    f"{f' --broken {broken}' if broken else ''}"
                ) from exc
            stats.states_checked += 1
    return stats


_AFTER_RECOVERY = b"appended after recovery"


async def _crash_during_recovery(image: Mapping[str, bytes], expect: Expectations, tag: str) -> Stats:
    """Reopen ``image`` on a PowerLossFileOps, append one record at DISK, close; then check
    the worst case and one random image of every crash point of that (recovery included)."""
    plops = PowerLossFileOps(image)
    plops.makedirs(LOG_DIR)
    async with asyncwal.open(LOG_DIR, file_ops=plops) as log:
        post_seq = await log.append(_AFTER_RECOVERY, Durability.DISK)
        acked_at = plops.crash_points()
    stats = Stats(second_crash_points=plops.crash_points() + 1)

    def payload(seq: int, data: bytes) -> str | None:
        if seq == post_seq and data == _AFTER_RECOVERY:
            return None
        return expect.payload(seq, data)

    for at, state in plops.states():
        required = max(expect.required, post_seq if at >= acked_at else 0)
        # Seqs from post_seq on were given again after recovery: earlier, unrecovered batches
        # that used them say nothing any more.
        batches = [b for b in expect.batches if b[1] < post_seq]
        again = dataclasses.replace(expect, required=required, payload=payload, batches=batches)
        seen = NewImages()
        for label, image2 in (
            ("durable", state.durable()),
            ("0", state.sample(random.Random(f"{tag}/{at}"))),
        ):
            if not seen.first_time(image2):
                continue
            try:
                stats.acked_checked += await check_image(image2, again)
            except Violation as exc:
                raise Violation(
                    f"after a second crash, during recovery, at point {at} ({plops.describe(at)}), "
                    f"sample {label}: {exc}"
                ) from exc
            stats.states_checked += 1
    return stats
