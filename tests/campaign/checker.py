"""The checker of the campaigns: what a reopened log must show, given what was acknowledged.

The invariants checked after every reopen (the contract of docs/durability.md):

* the log reopens under the default recovery;
* seqs are dense from ``first_seq`` to ``last_seq`` and every record has exactly the bytes
  appended under its seq (nothing that was never appended appears);
* every record acknowledged at the campaign's level (``DISK`` for a power cut, ``OS`` for a
  process crash) and not below an issued ``truncate_before`` is present;
* every batch is all or nothing;
* the newest acknowledged checkpoint (or a newer one) is ``last_checkpoint``, with its seq;
* for some images, the recovered log also takes a new record that survives another reopen.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import struct
from typing import TYPE_CHECKING

import asyncwal
from asyncwal.testing import MemoryFileOps

from . import LOG_DIR

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from asyncwal._fileops import FileOps

__all__ = (
    "CampaignFailure",
    "Expectations",
    "Stats",
    "Violation",
    "check_reopened",
    "NewImages",
    "check_image",
)


class Violation(AssertionError):
    """A reopened log broke an invariant of the durability contract."""


class CampaignFailure(AssertionError):
    """A campaign found a violation; the message says how to replay it."""


@dataclasses.dataclass
class Stats:
    """Figures of a campaign, added up over trials."""

    trials: int = 0
    crash_points: int = 0
    second_crash_points: int = 0  # crash points during the recovery of a crashed image
    states_checked: int = 0  # distinct (crash point, image) pairs reopened and checked
    kills: int = 0
    faults_fired: int = 0
    acked_checked: int = 0  # acknowledged records that a check required (and found)
    acked_lost: int = 0  # always 0 unless a check failed (the campaign then raises)
    corrupt_cases: int = 0
    corrupt_recovered: int = 0
    corrupt_rejected: int = 0

    def add(self, other: Stats) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclasses.dataclass
class Expectations:
    """The acknowledgements that bind a reopened log.

    :ivar required: every seq in ``[max(truncated, 1), required]`` must be present
    :ivar truncated: the highest seq given to ``truncate_before`` (records below may be gone)
    :ivar payload: checks one record; returns what is wrong with it, or None
    :ivar batches: ``(first, last)`` seqs of every batch appended (acknowledged or not)
    :ivar checkpoints: every checkpoint requested, in order: ``(data, seq it covers)``
    :ivar checkpoint_acked: index in ``checkpoints`` of the newest acknowledged one, or -1
    """

    required: int
    truncated: int
    payload: Callable[[int, bytes], str | None]
    batches: Sequence[tuple[int, int]] = ()
    checkpoints: Sequence[tuple[bytes, int]] = ()
    checkpoint_acked: int = -1


async def check_reopened(
    ops: FileOps | None, path: str, expect: Expectations, *, append_after: bool = False
) -> int:
    """Reopen the log at ``path`` with the default options and check it against ``expect``.

    :param append_after: also append a record, reopen again and check it is there, after
        every record recovered the first time
    :raises Violation: an invariant does not hold (opening failing is one)
    :return: how many acknowledged records the check required
    """
    try:
        log = await asyncwal.open(path, file_ops=ops)
    except Exception as exc:
        raise Violation(f"the log does not reopen under the default recovery: {exc!r}") from exc
    try:
        records = [(r.seq, r.data) async for r in log.replay()]
        first, last = log.first_seq, log.last_seq
        cp = log.last_checkpoint
        _check_records(records, first, last, expect)
        _check_checkpoint(cp, last, expect)
        post = None
        if append_after:
            post = (await log.append(b"after the crash"), b"after the crash")
    finally:
        await log.close()
    if post is not None:
        async with asyncwal.open(path, file_ops=ops) as again:
            replayed = [(r.seq, r.data) async for r in again.replay()]
        if replayed != [*records, post]:
            raise Violation(
                f"a record appended after recovery did not survive a reopen cleanly: "
                f"{len(records)} records + {post[0]} expected, replay gave {len(replayed)} "
                f"ending at {replayed[-1][0] if replayed else None}"
            )
    low = max(expect.truncated, 1)
    return max(0, expect.required - low + 1)


def _check_records(records: list[tuple[int, bytes]], first: int, last: int, expect: Expectations) -> None:
    seqs = [s for s, _ in records]
    if seqs != list(range(first, last + 1)):
        gaps = [(a, b) for a, b in itertools.pairwise(seqs) if b != a + 1]
        raise Violation(
            f"seqs are not dense: first_seq={first} last_seq={last}, replay gave {len(seqs)} records"
            f"{f' with gaps {gaps[:3]}' if gaps else ''}"
        )
    for seq, data in records:
        problem = expect.payload(seq, data)
        if problem is not None:
            raise Violation(f"record {seq}: {problem}")
    low = max(expect.truncated, 1)
    if expect.required >= low and not (first <= low and last >= expect.required):
        lost = [s for s in range(low, expect.required + 1) if not first <= s <= last]
        raise Violation(
            f"{len(lost)} acknowledged records lost: seqs {lost[:5]}{'...' if len(lost) > 5 else ''} "
            f"(acknowledged up to {expect.required}, log holds {first}..{last})"
        )
    for b0, b1 in expect.batches:
        if first <= b0 <= last < b1:
            raise Violation(f"batch {b0}..{b1} is torn: the log ends at {last}")
        if b0 < first <= b1:
            raise Violation(f"batch {b0}..{b1} is torn: the log starts at {first}")


def _check_checkpoint(cp: asyncwal.Checkpoint | None, last: int, expect: Expectations) -> None:
    if cp is None:
        if expect.checkpoint_acked >= 0:
            raise Violation(f"acknowledged checkpoint #{expect.checkpoint_acked} is missing")
        return
    matches = [i for i, (data, _) in enumerate(expect.checkpoints) if data == cp.data]
    if not matches:
        raise Violation(f"checkpoint {cp!r} was never requested")
    index = matches[0]
    if index < expect.checkpoint_acked:
        raise Violation(f"checkpoint #{index} found, but #{expect.checkpoint_acked} was acknowledged")
    if cp.seq != expect.checkpoints[index][1]:
        raise Violation(
            f"checkpoint #{index} covers seq {cp.seq}, requested at {expect.checkpoints[index][1]}"
        )
    if cp.seq > last:
        raise Violation(f"checkpoint covers seq {cp.seq} but the log ends at {last}")


class NewImages:
    """Remembers crash images by content: a campaign reopens each distinct image once."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def first_time(self, image: Mapping[str, bytes]) -> bool:
        """True the first time an image with these files and contents is given."""
        h = hashlib.blake2b(digest_size=16)
        for path in sorted(image):
            h.update(path.encode() + b"\0" + struct.pack("<Q", len(image[path])) + image[path])
        key = h.digest()
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


async def check_image(image: Mapping[str, bytes], expect: Expectations, *, append_after: bool = False) -> int:
    """Reopen the log of a crash image (``{path: contents}``, the log at :data:`LOG_DIR`) on a
    new MemoryFileOps and check it: :func:`check_reopened`."""
    fs = MemoryFileOps.from_image(image)
    fs.makedirs(LOG_DIR)
    return await check_reopened(fs, LOG_DIR, expect, append_after=append_after)
