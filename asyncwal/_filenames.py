"""Every name asyncwal gives a file in a log directory, and the rule for the ones it may remove.

One module for all of them (LevelDB keeps its ``filename.cc`` for the same reason): a reader
of recovery, of the writer or of the command line finds here what each name means, and no
other module writes a suffix out or parses a name itself.

A log directory holds (the log owns it: anything else in it is a stray file, never touched)::

    <first_seq:020d>.wal      a segment: the records from first_seq on (see _format.py)
    META                      low-water mark, last checkpoint and log id (see _format.py)
    LOCK                      the directory lock; holds the holder's pid
    <segment or META>.tmp     a file being written, renamed over its final name when complete
    <name>.broken[.N]         bytes ``asyncwal repair`` cut, kept for a human (never read)

Invariants:

* A segment name is exactly 20 ASCII digits ``0-9`` and ``.wal``, and its value is a seq:
  at least 1 and at most :data:`MAX_SEQ`. Nothing else is a segment name: not seq 0, not a
  number beyond the u64 seq space, not digits of another script (``str.isdigit`` accepts
  Arabic-Indic and superscript digits; ``int()`` even parses some of them).
* ``segment_name(parse_segment_name(name)) == name`` for every segment name, so a name maps
  to one seq and a seq to one name.
* Recovery removes only :func:`is_leftover_tmp` names (the temporary files asyncwal itself
  writes) and segment files; it never removes a name this module does not recognise.
"""

from __future__ import annotations

from typing import Final

__all__ = (
    "BROKEN_SUFFIX",
    "LOCK_NAME",
    "MAX_SEQ",
    "META_NAME",
    "SEGMENT_DIGITS",
    "SEGMENT_SUFFIX",
    "SHARD_DIGITS",
    "TMP_SUFFIX",
    "is_leftover_tmp",
    "parse_segment_name",
    "parse_shard_name",
    "segment_name",
    "shard_name",
    "tmp_name",
)

SEGMENT_SUFFIX: Final = ".wal"
#: Digits of the first seq in a segment name: enough for any u64, so names sort by seq.
SEGMENT_DIGITS: Final = 20
META_NAME: Final = "META"
LOCK_NAME: Final = "LOCK"
#: A file being written under this suffix is renamed over its final name once it is durable.
TMP_SUFFIX: Final = ".tmp"
#: ``asyncwal repair`` keeps what it cuts as ``<name>.broken`` (then ``.broken.2``, ...).
BROKEN_SUFFIX: Final = ".broken"
#: A sharded log's directory holds one directory per shard, ``shard-0000`` upwards.
SHARD_PREFIX: Final = "shard-"
SHARD_DIGITS: Final = 4
#: The largest seq: seqs are u64 fields on disk, and 0 means "no record".
MAX_SEQ: Final = (1 << 64) - 1

_ASCII_DIGITS: Final = frozenset("0123456789")
_NAME_LENGTH: Final = SEGMENT_DIGITS + len(SEGMENT_SUFFIX)


def segment_name(first_seq: int) -> str:
    """File name of the segment whose first record has ``first_seq``; names sort by seq.

    :raises ValueError: ``first_seq`` is not a seq (below 1 or above :data:`MAX_SEQ`)
    """
    if not 1 <= first_seq <= MAX_SEQ:
        raise ValueError(f"{first_seq} is not a seq (1..{MAX_SEQ})")
    return f"{first_seq:0{SEGMENT_DIGITS}d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    """The first seq a segment file name encodes, or None if ``name`` is not a segment name.

    Only 20 ASCII digits ``0-9`` followed by ``.wal``, of a value from 1 to :data:`MAX_SEQ`.
    """
    if len(name) != _NAME_LENGTH or not name.endswith(SEGMENT_SUFFIX):
        return None
    digits = name[:SEGMENT_DIGITS]
    if not _ASCII_DIGITS.issuperset(digits):
        return None
    seq = int(digits)
    return seq if 1 <= seq <= MAX_SEQ else None


def tmp_name(name: str) -> str:
    """The name ``name`` is written under until it is complete and durable."""
    return name + TMP_SUFFIX


def is_leftover_tmp(name: str) -> bool:
    """True for the temporary names asyncwal writes (a segment's or META's), which recovery
    removes: what they hold was never renamed into place, so nothing in them was acknowledged.
    Any other ``*.tmp`` name is not asyncwal's and is left alone."""
    if not name.endswith(TMP_SUFFIX):
        return False
    final = name[: -len(TMP_SUFFIX)]
    return final == META_NAME or parse_segment_name(final) is not None


def shard_name(index: int) -> str:
    """The directory name of shard ``index`` of a sharded log (``shard-0007``); names sort by index."""
    return f"{SHARD_PREFIX}{index:0{SHARD_DIGITS}d}"


def parse_shard_name(name: str) -> int | None:
    """The index of the shard named ``name``, or None if ``name`` is not a shard's name."""
    digits = name[len(SHARD_PREFIX) :]
    if (
        not name.startswith(SHARD_PREFIX)
        or len(digits) != SHARD_DIGITS
        or not _ASCII_DIGITS.issuperset(digits)
    ):
        return None
    return int(digits)
