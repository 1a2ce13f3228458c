"""The corrupt-input campaign.

A valid log is damaged (bit flips, cuts, duplicated or moved ranges, garbage, huge length
fields, swapped or copied segment files) and opened in each recovery mode: it must recover or
raise ``CorruptLogError`` naming the file and an offset in it; a recovered log replays a
prefix of the original records holding everything before the first damaged byte; and opening
allocates no more than a few times the files' size (tracemalloc, some trials).
"""

from __future__ import annotations

import dataclasses
import os
import random
import struct
import tracemalloc
from typing import TYPE_CHECKING

import asyncwal
from asyncwal._filenames import META_NAME, parse_segment_name, segment_name
from asyncwal._reader import READ_CHUNK, FrameDecoder
from asyncwal.testing import MemoryFileOps

from . import LOG_DIR
from .checker import CampaignFailure, Stats, Violation

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


__all__ = (
    "MUTATIONS",
    "CorruptOutcome",
    "OriginalLog",
    "apply_mutation",
    "build_log",
    "check_damage",
    "corrupt_trial",
    "must_survive",
    "open_damaged",
    "random_mutation",
)


#: Kinds of damage :func:`apply_mutation` does. Byte-level ones keep the file set.
MUTATIONS = (
    "flip",  # flip bits
    "cut",  # truncate the file
    "zero",  # zero a range
    "garbage",  # overwrite a range with ``data``
    "duplicate",  # insert a copy of a range elsewhere
    "move",  # move a range elsewhere
    "length",  # a frame-like length field claiming up to gigabytes
    "append",  # append ``data`` (or a frame header claiming 2 GiB)
    "swap",  # swap two files' contents
    "copy",  # copy a segment under the name of a later seq
)


@dataclasses.dataclass(frozen=True)
class OriginalLog:
    """A valid log built by :func:`build_log`.

    :ivar image: its files, ``{path: contents}`` (no LOCK file)
    :ivar records: every record, ``{seq: payload}``
    :ivar frames: per segment path, ``(end offset, last seq)`` of each frame in file order
    """

    image: dict[str, bytes]
    records: dict[int, bytes]
    frames: dict[str, list[tuple[int, int]]]


@dataclasses.dataclass
class CorruptOutcome:
    """What opening a damaged log did, in one recovery mode."""

    mode: str
    opened: bool
    error: str = ""  # CorruptLogError message when not opened
    records: int = 0


async def build_log(seed: int, *, records: int = 40) -> OriginalLog:
    """A valid log of a few segments, with batches and a checkpoint."""
    rng = random.Random(f"corrupt/{seed}")
    fs = MemoryFileOps()
    data: dict[int, bytes] = {}
    async with asyncwal.open(
        LOG_DIR, file_ops=fs, segment_size=4096, preallocate=rng.random() < 0.5, max_record_size=8192
    ) as log:
        while log.last_seq < records:
            if rng.random() < 0.2:
                batch = [rng.randbytes(rng.randint(0, 300)) for _ in range(rng.randint(1, 4))]
                seqs = await log.append_batch(batch)
                data.update(zip(seqs, batch, strict=True))
            else:
                payload = rng.randbytes(rng.randint(0, 600))
                data[await log.append(payload)] = payload
            if rng.random() < 0.05:
                await log.checkpoint(b"cp")
    image = {p: d for p, d in fs.snapshot().items() if os.path.basename(p) != "LOCK"}
    frames: dict[str, list[tuple[int, int]]] = {}
    for path, buf in image.items():
        first = parse_segment_name(os.path.basename(path))
        if first is None:
            continue
        decoder = FrameDecoder(first, 1 << 20)
        decoder.refill(buf, eof=True)
        frames[path] = [(end, seq + count - 1) for _at, seq, count, _type, _start, end, _ in decoder.scan()]
    return OriginalLog(image, data, frames)


def apply_mutation(
    image: Mapping[str, bytes], kind: str, which: int, pos: int, size: int, data: bytes
) -> tuple[dict[str, bytes], str, tuple[str, int] | None]:
    """Damage ``image``: ``kind`` (one of MUTATIONS) on file number ``which`` (modulo the
    number of files, in name order) at byte ``pos`` (modulo its size) over ``size`` bytes.

    :return: the new image, a description, and for byte-level damage ``(path, first byte
        that differs)`` (None when the files themselves were swapped or copied, or nothing
        changed)
    """
    out = dict(image)
    paths = sorted(out)
    path = paths[which % len(paths)]
    name = os.path.basename(path)
    old = out[path]
    buf = bytearray(old)
    n = len(buf)
    at = pos % (n + 1)
    size = max(1, size)
    if kind == "flip" and n:
        for k in range(min(size, 4)):
            i = (pos + k * 7919) % n
            buf[i] ^= 1 << (k + pos) % 8 or 1
    elif kind == "cut":
        del buf[at:]
    elif kind == "zero":
        buf[at : at + size] = bytes(len(buf[at : at + size]))
    elif kind == "garbage":
        chunk = (data or b"\xa5") * (size // max(1, len(data)) + 1)
        buf[at : at + size] = chunk[: len(buf[at : at + size])]
    elif kind == "duplicate" and n:
        src = pos * 31 % n
        buf[at:at] = buf[src : src + size]
    elif kind == "move" and n:
        src = pos * 31 % n
        moved = bytes(buf[src : src + size])
        del buf[src : src + len(moved)]
        dst = at % (len(buf) + 1)
        buf[dst:dst] = moved
    elif kind == "length" and n >= 8:
        claim = (0xFFFFFFFF, 0x7FFFFFFF, 1 << 30, 8193, n, size)[pos % 6]
        i = min(at, n - 8)
        buf[i + 4 : i + 8] = struct.pack("<I", claim)
    elif kind == "append":
        buf += data if data else struct.pack("<IIQB3x", 0, 1 << 31, 0, 1)
    elif kind == "swap" and len(paths) > 1:
        other = paths[(which + 1 + pos) % len(paths)]
        if other != path:
            out[path], out[other] = out[other], out[path]
            return out, f"swap {name} and {os.path.basename(other)}", None
    elif kind == "copy":
        first = parse_segment_name(name)
        if first is not None:
            seq = first + 1 + pos % 80
            out[os.path.join(os.path.dirname(path), segment_name(seq))] = old
            return out, f"copy {name} as seq {seq}", None
    new = bytes(buf)
    out[path] = new
    if new == old:
        return out, f"{kind} in {name}: no change", None
    first_diff = next(
        (i for i in range(min(len(old), len(new))) if old[i] != new[i]), min(len(old), len(new))
    )
    return out, f"{kind} in {name} at {first_diff}", (path, first_diff)


def random_mutation(image: Mapping[str, bytes], rng: random.Random) -> tuple[str, int, int, int, bytes]:
    """Arguments for :func:`apply_mutation`, drawn with ``rng``."""
    kind = rng.choice(MUTATIONS)
    return (
        kind,
        rng.randrange(1 << 16),
        rng.randrange(1 << 20),
        rng.randint(1, 800),
        rng.randbytes(rng.randint(0, 64)),
    )


def must_survive(original: OriginalLog, damage: Sequence[tuple[str, int] | None]) -> int:
    """The last seq that every opened log must still hold: records wholly before the first
    damaged byte of the earliest damaged segment. -1 if some damage is not byte-level
    (then nothing can be promised)."""
    if any(d is None for d in damage):
        return -1
    keep = max(original.records, default=0)
    for where in damage:
        assert where is not None
        path, offset = where
        if path not in original.frames:
            if os.path.basename(path) == META_NAME:
                continue  # META damage must be reported, never cut records
            return -1
        before = [last for end, last in original.frames[path] if end <= offset]
        first = parse_segment_name(os.path.basename(path))
        assert first is not None
        keep = min(keep, before[-1] if before else first - 1)
    return keep


async def open_damaged(
    image: Mapping[str, bytes], original: OriginalLog, mode: str, *, keep: int = -1, measure: bool = False
) -> CorruptOutcome:
    """Open a damaged log in recovery ``mode`` and check what it does.

    Rules: opening either succeeds or raises CorruptLogError whose ``segment`` is a file of
    the log and whose ``offset`` lies in it; never another exception. An opened log replays
    the original records ``1..last_seq`` (a prefix of the log: nothing invented, nothing
    reordered, nothing skipped), holding at least ``1..keep``, and takes a new record. With
    ``measure``, the memory allocated while opening and replaying is bounded by a few times
    the size of the files, whatever their length fields claim.

    :raises Violation: a rule was broken
    """
    fs = MemoryFileOps.from_image(image)
    fs.makedirs(LOG_DIR)
    if measure:
        tracemalloc.start()
    try:
        outcome = await _open_damaged(fs, image, original, mode, keep)
    finally:
        if measure:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    if measure:
        bound = 4 * sum(map(len, image.values())) + 2 * READ_CHUNK + (1 << 20)
        if peak > bound:
            raise Violation(f"{mode}: opening and replaying allocated {peak} bytes (bound {bound})")
    return outcome


async def _open_damaged(
    fs: MemoryFileOps, image: Mapping[str, bytes], original: OriginalLog, mode: str, keep: int
) -> CorruptOutcome:
    try:
        log = await asyncwal.open(
            LOG_DIR, file_ops=fs, recovery=mode, max_record_size=8192, segment_size=4096
        )
    except asyncwal.CorruptLogError as exc:
        if exc.segment not in image:
            raise Violation(f"{mode}: CorruptLogError names {exc.segment!r}, not a file of the log") from exc
        if not 0 <= exc.offset <= len(image[exc.segment]):
            raise Violation(f"{mode}: CorruptLogError offset {exc.offset} is outside {exc.segment}") from exc
        return CorruptOutcome(mode, False, str(exc))
    except Exception as exc:
        raise Violation(f"{mode}: opening a damaged log raised {exc!r}") from exc
    try:
        try:
            records = [(r.seq, r.data) async for r in log.replay()]
        except Exception as exc:
            raise Violation(f"{mode}: replay of a recovered log raised {exc!r}") from exc
        last = log.last_seq
        if [s for s, _ in records] != list(range(1, last + 1)):
            raise Violation(
                f"{mode}: recovered records are not the prefix 1..{last} "
                f"(first_seq={log.first_seq}, {len(records)} records)"
            )
        for seq, data in records:
            if original.records.get(seq) != data:
                raise Violation(f"{mode}: record {seq} was not written with these bytes")
        if last < keep:
            raise Violation(f"{mode}: records {last + 1}..{keep}, before the damage, were lost")
        seq = await log.append(b"new")
        if seq != last + 1:
            raise Violation(f"{mode}: the next append got seq {seq}, {last + 1} expected")
    finally:
        await log.close()
    return CorruptOutcome(mode, True, records=len(records))


async def check_damage(
    original: OriginalLog, mutations: Sequence[tuple[str, int, int, int, bytes]], *, measure: bool = False
) -> Stats:
    """Apply ``mutations`` to ``original`` and open the result in each recovery mode.

    :raises Violation: a rule of :func:`open_damaged` was broken (the message says what was done)
    """
    image = original.image
    done: list[str] = []
    damage: list[tuple[str, int] | None] = []
    for m in mutations:
        image, what, where = apply_mutation(image, *m)
        done.append(what)
        damage.append(where)
    keep = must_survive(original, damage)
    stats = Stats(trials=1)
    for mode in ("tolerate_tail", "strict", "point_in_time"):
        try:
            outcome = await open_damaged(image, original, mode, keep=keep, measure=measure)
        except Violation as exc:
            raise Violation(f"{'; '.join(done)}: {exc}") from exc
        stats.corrupt_cases += 1
        if outcome.opened:
            stats.corrupt_recovered += 1
        else:
            stats.corrupt_rejected += 1
    return stats


async def corrupt_trial(seed: int, *, mutations: int = 1) -> Stats:
    """Damage a valid log ``mutations`` times at random and open it in each recovery mode.

    :raises CampaignFailure: a rule of :func:`open_damaged` was broken
    """
    original = await build_log(seed)
    rng = random.Random(f"mutate/{seed}")
    chosen = [random_mutation(original.image, rng) for _ in range(mutations)]
    try:
        return await check_damage(original, chosen, measure=seed % 10 == 0)
    except Violation as exc:
        raise CampaignFailure(
            f"corrupt input: seed={seed}: {exc}\n"
            f"replay: python -m bench.crash_campaign corrupt --seed {seed} --mutations {mutations}"
        ) from exc
