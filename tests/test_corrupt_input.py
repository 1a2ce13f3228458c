"""Corrupt and hostile input: damaged segment files must never crash, hang or balloon recovery.

Hypothesis flips bits, truncates, zeroes, overwrites, duplicates and moves byte ranges,
appends garbage, plants length fields claiming up to 4 GiB, swaps files and copies segments
under other names; then the log is opened in each recovery mode
(``tests.campaign.corrupt.open_damaged``): it recovers, replaying a prefix of the original
records that holds everything before the first damaged byte, or raises CorruptLogError naming
a file of the log and an offset inside it. Never another exception, and the memory allocated
while opening and replaying stays within a few times the size of the files.
"""

from __future__ import annotations

import asyncio
import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asyncwal
from asyncwal._filenames import META_NAME
from asyncwal._format import FRAME_HEADER_SIZE, SEGMENT_HEADER_SIZE
from asyncwal.testing import MemoryFileOps
from tests.campaign import LOG_DIR, campaign_trials
from tests.campaign.checker import Violation
from tests.campaign.corrupt import (
    MUTATIONS,
    OriginalLog,
    build_log,
    check_damage,
    corrupt_trial,
    open_damaged,
)

EXAMPLES = int(os.environ.get("ASYNCWAL_HYPOTHESIS_EXAMPLES", "60"))
_ORIGINALS: dict[int, OriginalLog] = {}


def original(seed: int) -> OriginalLog:
    """A valid log of a few segments, built once per seed."""
    if seed not in _ORIGINALS:
        _ORIGINALS[seed] = asyncio.run(build_log(seed))
    return _ORIGINALS[seed]


mutations = st.lists(
    st.tuples(
        st.sampled_from(MUTATIONS),
        st.integers(0, 1 << 16),  # which file
        st.integers(0, 1 << 20),  # where
        st.integers(1, 800),  # how many bytes
        st.binary(max_size=64),  # what to write
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2), damage=mutations)
def test_damaged_log_recovers_or_reports(seed: int, damage: list[tuple[str, int, int, int, bytes]]) -> None:
    asyncio.run(check_damage(original(seed), damage, measure=True))


def test_random_damage_campaign() -> None:
    """The seeded random version (``python -m bench.crash_campaign corrupt`` runs it long)."""
    for seed in range(40):
        stats = asyncio.run(corrupt_trial(seed, mutations=1 + seed % 3))
        assert stats.corrupt_cases == 3


def _frames(log: OriginalLog) -> list[tuple[str, int, int]]:
    """``(segment path, frame offset, first seq)`` of every frame, in log order."""
    out = []
    for path in sorted(log.frames):
        start = SEGMENT_HEADER_SIZE
        first = int(os.path.basename(path)[:20])
        for end, last in log.frames[path]:
            out.append((path, start, first))
            start, first = end, last + 1
    return out


def _claim_length(image: dict[str, bytes], path: str, offset: int, length: int) -> dict[str, bytes]:
    buf = bytearray(image[path])
    buf[offset + 4 : offset + 8] = struct.pack("<I", length)
    return {**image, path: bytes(buf)}


# The tests below drive their own event loops (asyncio.run), like the campaign: the originals
# are built once per module, outside any test's loop.


@pytest.mark.parametrize("claim", [0xFFFFFFFF, 0x80000000, 1 << 30, 8193])
def test_a_length_field_claiming_gigabytes_in_the_last_segment_is_cut(claim: int) -> None:
    log = original(0)
    path, offset, first = _frames(log)[-2]  # the last segment's last-but-one frame
    assert path == max(log.frames)
    image = _claim_length(log.image, path, offset, claim)
    for mode in ("tolerate_tail", "point_in_time"):
        outcome = asyncio.run(open_damaged(image, log, mode, keep=first - 1, measure=True))
        assert outcome.opened
        assert outcome.records == first - 1
    with pytest.raises(Violation, match=r"records .* were lost"):
        # The checker's own rule: had recovery cut one more record, it would say so.
        asyncio.run(open_damaged(image, log, "point_in_time", keep=first))


def test_a_length_field_claiming_gigabytes_in_an_earlier_segment_is_reported() -> None:
    log = original(1)
    path, offset, _first = [f for f in _frames(log) if f[0] == min(log.frames)][1]
    assert path != max(log.frames)
    image = _claim_length(log.image, path, offset, 0xFFFFFFF0)

    async def open_default() -> None:
        fs = MemoryFileOps.from_image(image)
        await asyncwal.open(LOG_DIR, file_ops=fs, max_record_size=8192)

    with pytest.raises(asyncwal.CorruptLogError) as exc_info:
        asyncio.run(open_default())
    assert exc_info.value.segment == path
    assert exc_info.value.offset == offset
    outcome = asyncio.run(open_damaged(image, log, "point_in_time", measure=True))
    assert outcome.opened


def test_a_damaged_meta_file_is_reported() -> None:
    log = next(original(s) for s in range(10) if os.path.join(LOG_DIR, META_NAME) in original(s).image)
    image = {**log.image, os.path.join(LOG_DIR, META_NAME): b"AWALMETA" + b"\xff" * 40}
    for mode in ("tolerate_tail", "strict", "point_in_time"):
        outcome = asyncio.run(open_damaged(image, log, mode))
        assert not outcome.opened
        assert META_NAME in outcome.error


def test_the_checker_rejects_records_that_were_never_written() -> None:
    """Another log's valid records under the same seqs are caught as foreign bytes."""
    other = original(1)
    with pytest.raises(Violation, match="was not written with these bytes"):
        asyncio.run(open_damaged(other.image, original(0), "tolerate_tail"))
    assert FRAME_HEADER_SIZE == 20  # the frame layout _claim_length relies on


@pytest.mark.campaign
def test_long_corrupt_campaign(request: pytest.FixtureRequest) -> None:
    """``pytest -m campaign`` or ASYNCWAL_CAMPAIGN_TRIALS=N: N damaged logs per mutation count."""
    trials = campaign_trials(request.config.getoption("markexpr") or "", 2000)
    if trials is None:
        pytest.skip("long campaign: run with -m campaign or ASYNCWAL_CAMPAIGN_TRIALS=N")
    for seed in range(10_000, 10_000 + trials):
        asyncio.run(corrupt_trial(seed, mutations=1 + seed % 4))
