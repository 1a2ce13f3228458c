"""The codec alone: round trips and the validity rules of docs/format.md."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from asyncwal import _format as fmt


@given(st.integers(min_value=1, max_value=2**63), st.binary(max_size=300), st.sampled_from([fmt.DATA]))
def test_frame_round_trip(seq: int, payload: bytes, rtype: int) -> None:
    frame = fmt.frame_header(seq, payload, rtype) + payload
    end, got_type, count, reason = fmt.scan_frame(frame, 0, seq, 1 << 20)
    assert (end, got_type, count, reason) == (len(frame), rtype, 1, "")
    # Wrong expected seq, short buffer and a flipped bit are all rejected.
    assert fmt.scan_frame(frame, 0, seq + 1, 1 << 20)[0] == fmt.BAD
    assert fmt.scan_frame(frame[:-1], 0, seq, 1 << 20)[0] in (fmt.NEED_MORE, fmt.BAD)


@given(st.binary(min_size=1, max_size=200), st.integers(min_value=0, max_value=8 * 220 - 1))
def test_any_single_bit_flip_is_detected(payload: bytes, bit: int) -> None:
    frame = bytearray(fmt.frame_header(7, payload) + payload)
    bit %= len(frame) * 8
    frame[bit // 8] ^= 1 << (bit % 8)
    assert fmt.scan_frame(bytes(frame), 0, 7, 1 << 20)[0] in (fmt.BAD, fmt.NEED_MORE, fmt.END)
    assert fmt.scan_frame(bytes(frame), 0, 7, 1 << 20)[0] != len(frame)


@given(st.lists(st.binary(max_size=50), min_size=1, max_size=20))
def test_batch_round_trip(payloads: list[bytes]) -> None:
    body = fmt.encode_batch(payloads)
    assert fmt.decode_batch(body) == payloads
    frame = fmt.frame_header(3, body, fmt.BATCH) + body
    assert fmt.scan_frame(frame, 0, 3, 1 << 20)[:3] == (len(frame), fmt.BATCH, len(payloads))


def test_zero_bytes_are_the_end_not_a_record() -> None:
    assert fmt.scan_frame(bytes(100), 0, 1, 1 << 20)[0] == fmt.END
    assert fmt.scan_frame(b"", 0, 1, 1 << 20)[0] == fmt.END
    assert fmt.crc32c(bytes(16)) != 0


def test_segment_header_and_names() -> None:
    header = fmt.encode_segment_header(42)
    assert len(header) == fmt.SEGMENT_HEADER_SIZE == 32
    assert fmt.decode_segment_header(header) == 42
    assert fmt.parse_segment_name(fmt.segment_name(42)) == 42
    assert fmt.parse_segment_name("LOCK") is None
    assert sorted(map(fmt.segment_name, [10, 9, 100])) == list(map(fmt.segment_name, [9, 10, 100]))


@given(
    st.integers(min_value=0, max_value=2**63),
    st.none() | st.tuples(st.integers(0, 2**63), st.binary(max_size=64)),
)
def test_meta_round_trip(low_water: int, checkpoint: tuple[int, bytes] | None) -> None:
    assert fmt.decode_meta(fmt.encode_meta(low_water, checkpoint)) == (low_water, checkpoint)
