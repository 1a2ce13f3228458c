"""The fault campaign: ``EIO``/``ENOSPC``/short writes injected through
:class:`~asyncwal.testing.FaultyFileOps` (over a PowerLossFileOps) at a random call.

Checks the failed-state rules, reopens the worst-case power-cut image after every
acknowledgement at ``DISK`` (all of them must be there) and the live files (everything
acknowledged at ``OS`` must be there).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import random
from typing import TYPE_CHECKING, Any

import asyncwal
from asyncwal import Durability, LogFailedError
from asyncwal.testing import FaultyFileOps, PowerLossFileOps

from . import LOG_DIR
from .checker import CampaignFailure, NewImages, Stats, Violation, check_image, check_reopened
from .workload import Recorder, run_workload

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


__all__ = (
    "FAULTS",
    "fault_trial",
)


#: name -> (operation, errno, extra inject() arguments, upper bound of ``after``)
FAULTS: dict[str, tuple[str, int | None, dict[str, Any], int]] = {
    "EIO on write": ("pwrite", errno.EIO, {}, 60),
    "ENOSPC on write": ("pwrite", errno.ENOSPC, {}, 60),
    "short write then ENOSPC": ("pwrite", errno.ENOSPC, {"short": 7, "times": 2}, 60),
    "short write then success": ("pwrite", None, {"short": 5}, 60),
    "EIO on fsync": ("sync", errno.EIO, {}, 30),
    "EIO on directory fsync": ("sync_dir", errno.EIO, {}, 6),
    "ENOSPC on segment creation": ("open", errno.ENOSPC, {"path_contains": ".wal.tmp"}, 4),
    "EIO on rename": ("rename", errno.EIO, {}, 5),
    "EIO on unlink": ("unlink", errno.EIO, {}, 4),
}


async def fault_trial(
    seed: int, fault: str, *, steps: int = 30, ops_class: type[FaultyFileOps] = FaultyFileOps
) -> Stats:
    """Run the workload with one fault injected at a random call and check the failed state.

    Checks: every call either succeeds or raises LogFailedError (no other error, nothing
    hangs: the run is bounded by a hang detector); once failed, every later call raises
    LogFailedError; a failed fsync is never retried; close() releases the lock; reopening the
    live files keeps everything acknowledged at OS; reopening the worst-case power-cut image
    keeps everything acknowledged at DISK (so nothing was acknowledged at DISK past a failed
    fsync).

    :param ops_class: the fault injector (a broken one, for the checker's own tests)
    :raises CampaignFailure: a rule was broken
    """
    op, error, extra, bound = FAULTS[fault]
    rng = random.Random(f"{seed}/{fault}")
    plops = PowerLossFileOps()
    faulty = ops_class(plops)
    injected = faulty.inject(op, error, after=rng.randint(0, bound), **extra)
    rec = Recorder(plops.crash_points)
    where = f"faults: seed={seed} fault={fault!r} (after={injected.after})"
    try:
        async with asyncio.timeout(60):  # a hang detector, not a timing assertion
            log = await run_workload(faulty, rec, seed, steps, tolerate_failure=True)
            stats = Stats(trials=1, faults_fired=injected.fired)
            # A power cut right after any acknowledgement at DISK, and at the end, keeps
            # everything acknowledged at DISK so far: nothing was acknowledged past a failed
            # fsync. (Right after an acknowledgement is where a false one shows: a later
            # successful fsync would cover it.)
            points = sorted({p for p, _ in rec.disk} | {plops.crash_points()})
            seen = NewImages()
            for at, state in plops.states(points):
                image = state.durable()
                if not seen.first_time(image):
                    continue
                try:
                    stats.acked_checked += await check_image(image, rec.expectations(at, Durability.DISK))
                except Violation as exc:
                    raise Violation(f"power cut at point {at} ({plops.describe(at)}): {exc}") from exc
                stats.states_checked += 1
            expected_failure = injected.fired > 0 and error is not None
            if log is None:
                # The fault hit asyncwal.open(): it raised, and must not have kept the lock.
                if not expected_failure:
                    raise Violation(f"asyncwal.open() failed without a fault: {rec.open_error!r}")
            elif log.failed != expected_failure:
                raise Violation(f"log.failed is {log.failed} after the fault fired {injected.fired} times")
            elif log.failed:
                await _check_failed_state(log)
                syncs_after = injected.seen - injected.after - injected.fired
                if op == "sync" and syncs_after:
                    raise Violation(f"fsync was called {syncs_after} times after it failed")
                if not log.closed:
                    await log.close()  # must not raise on a failed log, and must release the lock
            if log is not None and not log.closed:
                raise Violation("the workload ended with the log open")
            faulty.clear()
            # The process lives on: what reached the OS is in the live files.
            stats.acked_checked += await check_reopened(
                faulty, LOG_DIR, rec.expectations(plops.crash_points(), Durability.OS)
            )
    except (Violation, TimeoutError) as exc:
        raise CampaignFailure(
            f"{where}: {exc!r}\nreplay: python -m bench.crash_campaign faults --seed {seed} --fault {fault!r}"
        ) from exc
    except Exception as exc:
        raise CampaignFailure(f"{where}: unexpected {exc!r}") from exc
    return stats


async def _check_failed_state(log: asyncwal.Log) -> None:
    probes: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("append", functools.partial(log.append, b"x")),
        ("append_batch", functools.partial(log.append_batch, [b"x"])),
        ("sync", log.sync),
        ("checkpoint", log.checkpoint),
        ("truncate_before", functools.partial(log.truncate_before, 1)),
        ("wait_for", functools.partial(log.wait_for, 0)),
    ]
    for name, probe in probes:
        try:
            await probe()
        except LogFailedError:
            continue
        except Exception as exc:
            raise Violation(f"{name}() on a failed log raised {exc!r}, not LogFailedError") from exc
        raise Violation(f"{name}() on a failed log succeeded")
