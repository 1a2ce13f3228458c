"""How log records look on the wire: NATS message headers and bodies. A pure codec, no I/O.

Two layouts, chosen per log (:attr:`NatsReplication.layout`) and fixed per stream. Both put
their messages on the log's base subject.

``"record"``: one message per record. The body is the record's payload, byte for byte, so
any NATS consumer reads records directly. The stream sequence of a record's message *is* the
record's seq (the shipper creates the stream with that first sequence). Headers::

    Asyncwal-Log: <log id>          the log the record belongs to
    Asyncwal-Seq: <seq>             its seq in that log
    Asyncwal-Crc: <crc32c of body>  8 lowercase hex digits
    Nats-Msg-Id:  <log id>:<seq>

``"packed"``: one message per run of at most ``MAX_RECORDS`` consecutive records. The body is
the records in the log's own batch encoding (a little-endian u32 count, a u32 length per
record, then the payloads back to back; see docs/format.md). Headers::

    Asyncwal-Log:      <log id>
    Asyncwal-Seq:      <first seq>
    Asyncwal-Last-Seq: <last seq>
    Asyncwal-Crc:      <crc32c of body>
    Nats-Msg-Id:       <log id>:<first seq>-<last seq>

A packed stream also holds *fences*: ``K`` empty messages on the subjects
``<base>.fence.0`` .. ``<base>.fence.<K-1>``, written together (one atomic batch) each time a
shipper starts shipping, that is at every start and after every error (see _shipper)::

    Asyncwal-Log:       <log id>
    Asyncwal-Fence:     <j>
    Asyncwal-Last-Seq:  <the last seq the stream held before the fence; 0: none>
    Asyncwal-Data-Seq:  <the stream sequence of the message holding it; 0: none>

A data message is valid if and only if: ``Asyncwal-Log`` names the expected log;
``Asyncwal-Seq`` (and ``Asyncwal-Last-Seq`` when present) are decimal integers >= 1 with
``last >= first``; ``Asyncwal-Crc`` matches the body; and a packed body parses exactly (no
bytes left over) into ``last - first + 1`` records. The message id names the seq *range*, so
two messages covering different ranges never deduplicate each other. A fence is valid if its
``Asyncwal-Fence``, ``Asyncwal-Last-Seq`` and ``Asyncwal-Data-Seq`` are decimal integers.
Readers of records skip fences.

**Ordering headers** (:func:`order_headers`, added by the shipper; readers ignore them). Each
message tells the server where it must go, so that the stream can only ever hold the log's
records once each, in order, without gaps, independently of the duplicate window:

* every message: ``Nats-Expected-Last-Sequence: <the stream sequence it must follow>``. In
  the record layout the stream sequence is the record's seq, so this alone checks content.
* a packed message number ``i`` of a shipping run also:
  ``Nats-Expected-Last-Subject-Sequence: <stream sequence of the run's fence j>`` with
  ``Nats-Expected-Last-Subject-Sequence-Subject: <base>.fence.<j>``, ``j = i mod K``: the
  message is refused once a later run has written its fences. (A clustered stream refuses a
  message whose subject check names a subject that a message still in flight names too, so
  ``K`` fences let ``K`` messages be in flight.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from .._errors import StreamMismatchError
from .._format import FormatError, crc32c, decode_batch, encode_batch

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = (
    "H_CRC",
    "H_DATA_SEQ",
    "H_FENCE",
    "H_LAST_SEQ",
    "H_LOG",
    "H_SEQ",
    "Layout",
    "MAX_FENCES",
    "Outgoing",
    "decode",
    "encode",
    "fence_headers",
    "fence_position",
    "fence_subject",
    "is_fence",
    "last_seq_of",
    "message_id",
    "order_headers",
    "stream_subjects",
)

Layout = Literal["record", "packed"]

H_LOG: Final = "Asyncwal-Log"
H_SEQ: Final = "Asyncwal-Seq"
H_LAST_SEQ: Final = "Asyncwal-Last-Seq"
H_CRC: Final = "Asyncwal-Crc"
H_FENCE: Final = "Asyncwal-Fence"
H_DATA_SEQ: Final = "Asyncwal-Data-Seq"
H_MSG_ID: Final = "Nats-Msg-Id"

#: A packed message holds at most this many records.
MAX_RECORDS: Final = 4096
#: At most this many fences (so packed messages in flight): one atomic batch of the server
#: holds at most 1000 messages.
MAX_FENCES: Final = 1000

#: Bytes of headers a message carries besides its body, at most (for packing limits): the
#: NATS/1.0 line, our four headers with a 36-character log id, and the ordering headers.
HEADER_OVERHEAD: Final = 512


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message, encoded: the records ``first..last`` of the log."""

    first: int
    last: int
    msg_id: str
    headers: dict[str, str]
    body: bytes


def message_id(log_id: str, first: int, last: int) -> str:
    """The ``Nats-Msg-Id`` of the message holding ``first..last`` (see the module docstring)."""
    return f"{log_id}:{first}" if first == last else f"{log_id}:{first}-{last}"


def fence_subject(base: str, j: int) -> str:
    """The subject of fence ``j``."""
    return f"{base}.fence.{j}"


def stream_subjects(base: str) -> list[str]:
    """The subjects a log's stream takes: the records' and the fences'."""
    return [base, f"{base}.fence.*"]


def order_headers(after: int, fence: tuple[str, int] | None = None) -> dict[str, str]:
    """The headers that make the server store a message only right behind stream sequence
    ``after`` and, given a fence ``(subject, stream sequence)``, only while that fence is the
    last message on its subject (no later shipping run has begun)."""
    headers = {"Nats-Expected-Last-Sequence": str(after)}
    if fence is not None:
        headers["Nats-Expected-Last-Subject-Sequence"] = str(fence[1])
        headers["Nats-Expected-Last-Subject-Sequence-Subject"] = fence[0]
    return headers


def fence_headers(log_id: str, j: int, log_last: int, data_seq: int) -> dict[str, str]:
    """The headers of fence ``j`` written behind the message at stream sequence
    ``data_seq`` holding records up to ``log_last`` (0, 0: the stream holds no record)."""
    return {H_LOG: log_id, H_FENCE: str(j), H_LAST_SEQ: str(log_last), H_DATA_SEQ: str(data_seq)}


def is_fence(headers: Mapping[str, str] | None) -> bool:
    """True for a fence (which holds no record)."""
    return headers is not None and H_FENCE in headers


def fence_position(headers: Mapping[str, str], where: str) -> tuple[int, int]:
    """``(last log seq, stream sequence of the message holding it)`` that a fence records."""
    return _count(headers, H_LAST_SEQ, where), _count(headers, H_DATA_SEQ, where)


def encode(log_id: str, first: int, payloads: Sequence[bytes], layout: Layout) -> Outgoing:
    """The message holding ``payloads`` as records ``first, first + 1, ...``.

    ``layout == "record"`` takes exactly one payload, ``"packed"`` at most ``MAX_RECORDS``.
    """
    last = first + len(payloads) - 1
    if layout == "record":
        if len(payloads) != 1:
            raise ValueError("the record layout carries exactly one record per message")
        body = payloads[0]
        headers = {H_LOG: log_id, H_SEQ: str(first)}
    else:
        if not 0 < len(payloads) <= MAX_RECORDS:
            raise ValueError(f"a packed message holds 1..{MAX_RECORDS} records, not {len(payloads)}")
        body = encode_batch(payloads)
        headers = {H_LOG: log_id, H_SEQ: str(first), H_LAST_SEQ: str(last)}
    headers[H_CRC] = f"{crc32c(body):08x}"
    msg_id = message_id(log_id, first, last)
    headers[H_MSG_ID] = msg_id
    return Outgoing(first, last, msg_id, headers, body)


def decode(
    log_id: str | None, headers: Mapping[str, str] | None, body: bytes, where: str
) -> tuple[str, int, list[bytes]]:
    """Check one data message from the stream and split it into records (skip fences first:
    :func:`is_fence`).

    :param log_id: the log it must belong to (None: any asyncwal log)
    :param where: how to name the message in an error (e.g. "stream S seq 12")
    :return: ``(log id, first seq, payloads)``
    :raises StreamMismatchError: the message is not a valid asyncwal message of that log
    """
    owner = owner_of(log_id, headers, where)
    assert headers is not None
    first = _seq(headers, H_SEQ, where)
    last_text = headers.get(H_LAST_SEQ)
    crc_text = headers.get(H_CRC, "")
    try:
        crc = int(crc_text, 16)
    except ValueError:
        raise StreamMismatchError(f"{where}: bad {H_CRC} header {crc_text!r}") from None
    if crc != crc32c(body):
        raise StreamMismatchError(f"{where}: the body does not match its checksum (damaged)")
    if last_text is None:
        return owner, first, [body]
    last = _seq(headers, H_LAST_SEQ, where)
    if last < first:
        raise StreamMismatchError(f"{where}: last seq {last} below first seq {first}")
    try:
        payloads = decode_batch(body)
    except FormatError as exc:
        raise StreamMismatchError(f"{where}: the packed body does not parse: {exc}") from None
    if len(payloads) != last - first + 1 or len(payloads) > MAX_RECORDS:
        raise StreamMismatchError(
            f"{where}: holds {len(payloads)} records, its headers say {last - first + 1}"
        )
    return owner, first, payloads


def owner_of(log_id: str | None, headers: Mapping[str, str] | None, where: str) -> str:
    """The log a message (data or fence) belongs to, checked against ``log_id`` if given.

    :raises StreamMismatchError: not asyncwal's, or another log's
    """
    if not headers:
        raise StreamMismatchError(f"{where}: not written by asyncwal (no headers)")
    owner = headers.get(H_LOG)
    if owner is None:
        raise StreamMismatchError(f"{where}: not written by asyncwal (no {H_LOG} header)")
    if log_id is not None and owner != log_id:
        raise StreamMismatchError(f"{where}: belongs to log {owner}, not to this log ({log_id})")
    return owner


def last_seq_of(headers: Mapping[str, str] | None, where: str) -> int:
    """The last seq a message covers, from its headers alone (no body needed); for a fence,
    the last seq the stream held before it (0: none). Never decreases along a stream."""
    if not headers:
        raise StreamMismatchError(f"{where}: not written by asyncwal (no headers)")
    if H_FENCE in headers:
        return _count(headers, H_LAST_SEQ, where)
    if H_LAST_SEQ in headers:
        return _seq(headers, H_LAST_SEQ, where)
    return _seq(headers, H_SEQ, where)


def _seq(headers: Mapping[str, str], name: str, where: str) -> int:
    value = _count(headers, name, where)
    if value < 1:
        raise StreamMismatchError(f"{where}: bad or missing {name} header {headers.get(name)!r}")
    return value


def _count(headers: Mapping[str, str], name: str, where: str) -> int:
    text = headers.get(name)
    if text is None or not (text.isascii() and text.isdigit()):
        raise StreamMismatchError(f"{where}: bad or missing {name} header {text!r}")
    return int(text)
