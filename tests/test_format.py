"""The codec and the names alone: round trips, and the rules of docs/format.md that need no reader."""

from __future__ import annotations

import struct
import sys
import unicodedata
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncwal import _filenames as names
from asyncwal import _format as fmt


@given(st.integers(min_value=1, max_value=2**64 - 1), st.binary(max_size=300))
def test_frame_header_covers_length_seq_and_type(seq: int, payload: bytes) -> None:
    header = fmt.frame_header(seq, payload)
    assert len(header) == fmt.FRAME_HEADER_SIZE == 20
    crc, length, got_seq, ftype = fmt.FRAME.unpack(header)
    assert (length, got_seq, ftype) == (len(payload), seq, fmt.SINGLE)
    assert crc == fmt.crc32c(header[4:] + payload)
    assert fmt.frame_size(len(payload)) == len(header) + len(payload)


@given(st.lists(st.binary(max_size=50), min_size=1, max_size=20))
def test_multi_payload_round_trip(payloads: list[bytes]) -> None:
    body = fmt.encode_batch(payloads)
    assert fmt.decode_batch(body) == payloads
    assert list(fmt.multi_lengths(body, 0, len(body))) == [len(p) for p in payloads]
    assert fmt.multi_frame_size(len(payloads), sum(map(len, payloads))) == fmt.FRAME_HEADER_SIZE + len(body)
    header, _got = fmt.encode_frame(3, payloads)
    assert fmt.FRAME.unpack(header)[3] == (fmt.SINGLE if len(payloads) == 1 else fmt.MULTI)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"\x01\x00", "shorter than its count"),
        (struct.pack("<I", 0), "count 0"),
        (struct.pack("<I", 3) + struct.pack("<II", 1, 1), "count 3"),
        (struct.pack("<III", 2, 1, 1) + b"abc", "do not add up"),
        (struct.pack("<III", 2, 1, 1) + b"a", "do not add up"),
    ],
)
def test_a_multi_payload_that_does_not_parse(body: bytes, detail: str) -> None:
    with pytest.raises(fmt.FormatError, match=detail) as exc_info:
        fmt.multi_lengths(body, 0, len(body))
    assert exc_info.value.damage is fmt.Damage.BAD_MULTI


def test_zero_fill_can_never_be_a_record() -> None:
    # An all-zero header has type 0, and even with a valid type its CRC would not be zero.
    assert fmt.crc32c(bytes(16)) != 0
    assert fmt.is_zero(bytes(200_000)) and not fmt.is_zero(bytes(199_999) + b"\x01")
    assert fmt.is_zero(b"\x01" + bytes(10), 1)


def test_segment_header_round_trip_and_every_way_it_is_refused() -> None:
    header = fmt.encode_segment_header(42)
    assert len(header) == fmt.SEGMENT_HEADER_SIZE == 32
    assert fmt.decode_segment_header(header) == 42
    assert fmt.segment_header_version(header) == fmt.FORMAT_VERSION

    def damage(buf: bytes) -> fmt.Damage:
        with pytest.raises(fmt.FormatError) as exc_info:
            fmt.decode_segment_header(buf)
        return exc_info.value.damage

    assert damage(b"") is fmt.Damage.SHORT_HEADER
    assert damage(header[:20]) is fmt.Damage.SHORT_HEADER
    assert damage(b"not a segment") is fmt.Damage.NOT_A_SEGMENT
    assert damage(b"X" + header[1:]) is fmt.Damage.NOT_A_SEGMENT
    assert damage(header[:20] + b"\xff" + header[21:]) is fmt.Damage.BAD_HEADER
    # A header with a valid checksum but a version or flags this code does not know: newer.
    for version, flags in ((2, 0), (1, 1), (0, 0)):
        head = struct.pack("<8sIIQ", b"ASYNCWAL", version, flags, 42)
        newer = head + struct.pack("<I4x", fmt.crc32c(head))
        assert damage(newer) is fmt.Damage.NEWER_FORMAT
        assert fmt.segment_header_version(newer) == version


# -- META ------------------------------------------------------------------------------------


@given(
    st.integers(min_value=0, max_value=2**63),
    st.none() | st.tuples(st.integers(0, 2**63), st.binary(max_size=64)),
)
def test_meta_round_trip(low_water: int, checkpoint: tuple[int, bytes] | None) -> None:
    meta = fmt.Meta(low_water, checkpoint, str(uuid.uuid4()))
    assert fmt.decode_meta(fmt.encode_meta(meta)) == meta
    assert len(fmt.encode_meta(meta)) <= fmt.meta_size_limit(len(checkpoint[1]) if checkpoint else 0)


def _meta_v1(low_water: int, checkpoint: tuple[int, bytes] | None) -> bytes:
    """A META as version 1 wrote it: no log id."""
    cp_seq, data = checkpoint if checkpoint is not None else (0, b"")
    body = struct.pack("<8sIIQQI", b"AWALMETA", 1, int(checkpoint is not None), low_water, cp_seq, len(data))
    return body + data + struct.pack("<I", fmt.crc32c(body + data))


def test_a_version_1_meta_is_read_without_a_log_id() -> None:
    assert fmt.decode_meta(_meta_v1(7, (5, b"cp"))) == fmt.Meta(7, (5, b"cp"), None)
    assert fmt.decode_meta(_meta_v1(0, None)) == fmt.Meta(0, None, None)


def _decode_meta_as_version_1_did(buf: bytes) -> tuple[int, tuple[int, bytes] | None]:
    """The checks asyncwal's version-1 reader made, in its order (format.md, version 1)."""
    magic, version, flags, low_water, cp_seq, cp_len = struct.unpack_from("<8sIIQQI", buf, 0)
    if magic != b"AWALMETA":
        raise ValueError("META file has a bad magic")
    if len(buf) != 36 + cp_len + 4 or struct.unpack_from("<I", buf, len(buf) - 4)[0] != fmt.crc32c(buf[:-4]):
        raise ValueError("META file checksum mismatch")
    if version != 1:
        raise ValueError(f"META format version {version} is not supported")
    return low_water, (cp_seq, buf[36 : 36 + cp_len]) if flags & 1 else None


def test_an_older_asyncwal_refuses_the_new_meta_by_its_version() -> None:
    """The log id is counted in the old checkpoint length, so a version-1 reader finds a META
    of the right size and checksum, and refuses it for its version (not as damage)."""
    new = fmt.encode_meta(fmt.Meta(3, (9, b"snapshot"), str(uuid.uuid4())))
    with pytest.raises(ValueError, match="META format version 2 is not supported"):
        _decode_meta_as_version_1_did(new)
    assert _decode_meta_as_version_1_did(_meta_v1(3, (9, b"snapshot"))) == (3, (9, b"snapshot"))


def test_a_damaged_or_newer_meta_is_refused() -> None:
    good = fmt.encode_meta(fmt.Meta(3, None, str(uuid.uuid4())))
    for bad in (good[:-1], good[:10], b"", b"XWALMETA" + good[8:], good[:-1] + bytes([good[-1] ^ 1])):
        with pytest.raises(fmt.FormatError) as exc_info:
            fmt.decode_meta(bad)
        assert exc_info.value.damage is fmt.Damage.META_DAMAGED
    body = struct.pack("<8sIIQQI", b"AWALMETA", 3, 0, 0, 0, 16) + bytes(16)
    with pytest.raises(fmt.FormatError) as exc_info:
        fmt.decode_meta(body + struct.pack("<I", fmt.crc32c(body)))
    assert exc_info.value.damage is fmt.Damage.META_NEWER
    with pytest.raises(ValueError, match="log id"):
        fmt.encode_meta(fmt.Meta(0, None, None))


# -- file names ------------------------------------------------------------------------------


def test_segment_names_round_trip_and_sort_by_seq() -> None:
    for seq in (1, 42, 10**19, names.MAX_SEQ):
        assert names.parse_segment_name(names.segment_name(seq)) == seq
    assert sorted(map(names.segment_name, [10, 9, 100])) == list(map(names.segment_name, [9, 10, 100]))
    for bad in (0, -1, names.MAX_SEQ + 1):
        with pytest.raises(ValueError, match="is not a seq"):
            names.segment_name(bad)


def _every_unicode_digit() -> list[str]:
    """One character of every decimal digit class Unicode has, other than ASCII."""
    return [
        chr(c)
        for c in range(sys.maxunicode + 1)
        if unicodedata.category(chr(c)) == "Nd" and unicodedata.digit(chr(c)) == 1 and c > 0x7F
    ]


def test_only_ascii_digits_name_a_segment() -> None:
    digits = _every_unicode_digit()
    assert len(digits) > 50  # Arabic-Indic, Devanagari, fullwidth, mathematical...
    for one in [*digits, "\u00b9", "\u2081"]:  # and superscript/subscript one (not Nd, but isdigit())
        name = "0" * 19 + one + ".wal"
        assert names.parse_segment_name(name) is None, ascii(name)
    assert names.parse_segment_name("0" * 19 + "1.wal") == 1


@pytest.mark.parametrize(
    "name",
    [
        "0" * 20 + ".wal",  # seq 0 is not a seq
        "9" * 20 + ".wal",  # beyond the u64 seq space
        str(names.MAX_SEQ + 1).rjust(20, "0") + ".wal",
        "1".rjust(19, "0") + ".wal",  # 19 digits
        "1".rjust(21, "0") + ".wal",
        "+" + "1".rjust(19, "0") + ".wal",
        " " + "1".rjust(19, "0") + ".wal",
        "1".rjust(20, "0") + ".WAL",
        "1".rjust(20, "0") + ".wal.tmp",
        "LOCK",
        "META",
        "",
    ],
)
def test_names_that_are_not_segments(name: str) -> None:
    assert names.parse_segment_name(name) is None


def test_the_leftover_rule_names_only_asyncwal_temporary_files() -> None:
    assert names.is_leftover_tmp(names.tmp_name(names.segment_name(7)))
    assert names.is_leftover_tmp(names.tmp_name(names.META_NAME))
    for other in ("x.tmp", ".tmp", "LOCK.tmp", "0" * 20 + ".wal.tmp", "META.tmp.tmp", names.segment_name(7)):
        assert not names.is_leftover_tmp(other), other
