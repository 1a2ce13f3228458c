"""The wire codec of replication (pure: no server): what a message holds and what it refuses."""

from __future__ import annotations

import pytest

import asyncwal
from asyncwal import StreamMismatchError
from asyncwal.replication._wire import (
    MAX_RECORDS,
    decode,
    encode,
    fence_headers,
    fence_position,
    fence_subject,
    is_fence,
    last_seq_of,
    order_headers,
    stream_subjects,
)

LOG = "0f6e7d5c-1111-4222-8333-944445555666"


@pytest.mark.parametrize("payloads", [[b"x"], [b""], [b"a", b"", b"ccc" * 1000]])
def test_packed_round_trip(payloads: list[bytes]) -> None:
    msg = encode(LOG, 7, payloads, "packed")
    assert (msg.first, msg.last) == (7, 7 + len(payloads) - 1)
    assert decode(LOG, msg.headers, msg.body, "m") == (LOG, 7, payloads)
    assert decode(None, msg.headers, msg.body, "m") == (LOG, 7, payloads)


def test_record_layout_keeps_the_payload_as_the_body() -> None:
    msg = encode(LOG, 3, [b"payload"], "record")
    assert msg.body == b"payload" and msg.msg_id == f"{LOG}:3"
    assert decode(LOG, msg.headers, msg.body, "m") == (LOG, 3, [b"payload"])
    with pytest.raises(ValueError, match="exactly one"):
        encode(LOG, 3, [b"a", b"b"], "record")


def test_message_ids_name_the_range() -> None:
    two = encode(LOG, 5, [b"a", b"b"], "packed")
    three = encode(LOG, 5, [b"a", b"b", b"c"], "packed")
    assert two.msg_id != three.msg_id


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda h, b: ({}, b), "no headers"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "Asyncwal-Log"}, b), "not written by asyncwal"),
        (lambda h, b: (h | {"Asyncwal-Log": "other"}, b), "belongs to log other"),
        (lambda h, b: (h | {"Asyncwal-Seq": "x"}, b), "bad or missing Asyncwal-Seq"),
        (lambda h, b: (h | {"Asyncwal-Seq": "0"}, b), "bad or missing Asyncwal-Seq"),
        (lambda h, b: (h | {"Asyncwal-Last-Seq": "1"}, b), "below first"),
        (lambda h, b: (h | {"Asyncwal-Last-Seq": "12"}, b), "headers say"),
        (lambda h, b: (h, b[:-1]), "checksum"),
        (lambda h, b: (h | {"Asyncwal-Crc": "zz"}, b), "bad Asyncwal-Crc"),
    ],
)
def test_malformed_messages_are_refused(change: object, match: str) -> None:
    msg = encode(LOG, 10, [b"a", b"bb"], "packed")
    headers, body = change(dict(msg.headers), msg.body)  # type: ignore[operator]
    with pytest.raises(StreamMismatchError, match=match):
        decode(LOG, headers, body, "m")


def test_a_packed_body_that_does_not_parse_is_refused() -> None:
    msg = encode(LOG, 10, [b"a", b"bb"], "packed")
    body = msg.body + b"extra"
    headers = dict(msg.headers) | {"Asyncwal-Crc": f"{asyncwal._format.crc32c(body):08x}"}
    with pytest.raises(StreamMismatchError, match="does not parse"):
        decode(LOG, headers, body, "m")


def test_order_headers_name_the_position_and_the_fence() -> None:
    assert order_headers(4) == {"Nats-Expected-Last-Sequence": "4"}
    fence = (fence_subject("asyncwal.x", 3), 17)
    assert order_headers(40, fence) == {
        "Nats-Expected-Last-Sequence": "40",
        "Nats-Expected-Last-Subject-Sequence": "17",
        "Nats-Expected-Last-Subject-Sequence-Subject": "asyncwal.x.fence.3",
    }
    # The stream takes the fences' subjects (the server refuses a message on any other).
    assert stream_subjects("asyncwal.x") == ["asyncwal.x", "asyncwal.x.fence.*"]
    with pytest.raises(ValueError, match="packed message holds"):
        encode(LOG, 1, [b""] * (MAX_RECORDS + 1), "packed")


def test_a_fence_records_where_the_stream_was() -> None:
    headers = fence_headers(LOG, 2, 120, 37)
    assert is_fence(headers) and not is_fence(encode(LOG, 1, [b"x"], "packed").headers)
    assert fence_position(headers, "m") == (120, 37)
    assert last_seq_of(headers, "m") == 120
    # Before any record: zeros, and last_seq_of never goes down along a stream.
    assert last_seq_of(fence_headers(LOG, 0, 0, 0), "m") == 0
    with pytest.raises(StreamMismatchError, match="Asyncwal-Data-Seq"):
        fence_position(headers | {"Asyncwal-Data-Seq": "-1"}, "m")


def test_replication_errors_are_wal_errors() -> None:
    for exc in (
        asyncwal.ReplicationError,
        asyncwal.ReplicationTimeoutError,
        asyncwal.StreamMismatchError,
        asyncwal.DivergedError,
    ):
        assert issubclass(exc, asyncwal.WALError)
    assert issubclass(asyncwal.ReplicationTimeoutError, TimeoutError)
    assert issubclass(asyncwal.StreamMismatchError, asyncwal.ReplicationError)
