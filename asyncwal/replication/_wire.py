"""How log records look on the wire: NATS message headers and bodies. A pure codec, no I/O.

Two layouts, chosen per log (:attr:`NatsReplication.layout`) and fixed per stream:

``"record"``: one message per record, on the log's base subject. The body is the record's
payload, byte for byte, so any NATS consumer reads records directly. The stream sequence of
a record's message *is* the record's seq (the shipper creates the stream with that first
sequence). Headers::

    Asyncwal-Log: <log id>          the log the record belongs to
    Asyncwal-Seq: <seq>             its seq in that log
    Asyncwal-Crc: <crc32c of body>  8 lowercase hex digits
    Nats-Msg-Id:  <log id>:<seq>

``"packed"``: one message per run of at most ``MAX_RECORDS`` consecutive records, on the
subject ``<base>.<last seq mod CHAIN_MOD>``. The body is the records in the log's own BATCH
encoding (a little-endian u32 count, a u32 length per record, then the payloads back to
back; see docs/format.md). Headers::

    Asyncwal-Log:      <log id>
    Asyncwal-Seq:      <first seq>
    Asyncwal-Last-Seq: <last seq>
    Asyncwal-Crc:      <crc32c of body>
    Nats-Msg-Id:       <log id>:<first seq>-<last seq>

A message is valid if and only if: ``Asyncwal-Log`` names the expected log; ``Asyncwal-Seq``
(and ``Asyncwal-Last-Seq`` when present) are decimal integers >= 1 with ``last >= first``;
``Asyncwal-Crc`` matches the body; and a packed body parses exactly (no bytes left over)
into ``last - first + 1`` records. The message id names the seq *range*, so two messages
covering different ranges never deduplicate each other.

**Ordering headers** (:func:`order_headers`, added by the shipper; readers ignore them). Each
message tells the server where it must go, so that the stream can only ever hold the log's
records once each, in order, without gaps, independently of the duplicate window:

* every message: ``Nats-Expected-Last-Sequence: <the stream sequence it must follow>``;
* a packed message also: ``Nats-Expected-Last-Subject-Sequence`` (the same number) with
  ``Nats-Expected-Last-Subject-Sequence-Subject: <base>.<(first seq - 1) mod CHAIN_MOD>``.
  So the message the stream ends with must be the one whose last seq is ``first - 1``
  (modulo ``CHAIN_MOD``, which is larger than any message's record count, so two messages that
  start at the same seq and end differently never share a subject). The check is on
  *content*, not only on position: a stale message from an earlier run that took the place
  this one expected makes it fail. In the record layout the stream sequence is the record's
  seq, so the first header alone checks content.
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
    "H_LAST_SEQ",
    "H_LOG",
    "H_SEQ",
    "Layout",
    "Outgoing",
    "decode",
    "encode",
    "message_id",
    "order_headers",
    "subject_of",
)

Layout = Literal["record", "packed"]

H_LOG: Final = "Asyncwal-Log"
H_SEQ: Final = "Asyncwal-Seq"
H_LAST_SEQ: Final = "Asyncwal-Last-Seq"
H_CRC: Final = "Asyncwal-Crc"
H_MSG_ID: Final = "Nats-Msg-Id"

#: A packed message holds at most this many records.
MAX_RECORDS: Final = 4096
#: Packed messages go to ``<base>.<last seq mod CHAIN_MOD>``; larger than ``MAX_RECORDS``.
CHAIN_MOD: Final = 8192

#: Bytes of headers a message carries besides its body, at most (for packing limits): the
#: NATS/1.0 line, our four headers with a 36-character log id, and the two ordering headers.
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


def subject_of(base: str, layout: Layout, last: int) -> str:
    """The subject of the message whose last record is ``last``."""
    return base if layout == "record" else f"{base}.{last % CHAIN_MOD}"


def order_headers(base: str, layout: Layout, first: int, after: int, empty: bool) -> dict[str, str]:
    """The headers that make the server store a message holding ``first..`` only right
    behind stream sequence ``after``, and only if that message ends at ``first - 1``.

    :param empty: the stream holds no message of the log yet (then nothing may precede it)
    """
    headers = {"Nats-Expected-Last-Sequence": str(after)}
    if layout == "packed":
        headers["Nats-Expected-Last-Subject-Sequence"] = "0" if empty else str(after)
        headers["Nats-Expected-Last-Subject-Sequence-Subject"] = f"{base}.{(first - 1) % CHAIN_MOD}"
    return headers


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
    """Check one message from the stream and split it into records.

    :param log_id: the log it must belong to (None: any asyncwal log)
    :param where: how to name the message in an error (e.g. "stream S seq 12")
    :return: ``(log id, first seq, payloads)``
    :raises StreamMismatchError: the message is not a valid asyncwal message of that log
    """
    if not headers:
        raise StreamMismatchError(f"{where}: not written by asyncwal (no headers)")
    owner = headers.get(H_LOG)
    if owner is None:
        raise StreamMismatchError(f"{where}: not written by asyncwal (no {H_LOG} header)")
    if log_id is not None and owner != log_id:
        raise StreamMismatchError(f"{where}: belongs to log {owner}, not to this log ({log_id})")
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


def last_seq_of(headers: Mapping[str, str] | None, where: str) -> int:
    """The last seq a message covers, from its headers alone (no body needed)."""
    if not headers:
        raise StreamMismatchError(f"{where}: not written by asyncwal (no headers)")
    if H_LAST_SEQ in headers:
        return _seq(headers, H_LAST_SEQ, where)
    return _seq(headers, H_SEQ, where)


def _seq(headers: Mapping[str, str], name: str, where: str) -> int:
    text = headers.get(name)
    if text is None or not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise StreamMismatchError(f"{where}: bad or missing {name} header {text!r}")
    return int(text)
