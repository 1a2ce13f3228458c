"""Restore: rebuild or extend a local log from its stream, record for record, with the same seqs.

A host that lost its disk (or a log that lost a ``batch``/``none`` tail in a power cut) comes
back with every record the stream holds. A directory that holds no log gets a new one with
the stream's log id (so it knows where it came from, and ships to the same stream again) and
the stream's first seq (so the seqs are the same even when the stream starts after seq 1).
The local log is then opened normally (recovery runs), every record after its last seq is
read from the stream, checked (log id, checksum, seq continuity) and appended with
``append_batch`` (so each chunk is on ``DISK``, all or nothing, before the next is read).
The records the log already has are compared with the stream's copy of them, where the
stream still holds them, so a log that was *rewritten* after shipping is reported, not
extended.

What restore never does: change or remove a local record; append a record whose seq would
differ from its seq in the stream; go on past a message that fails its checks; take over a
directory that holds another log. When it stops on an error, the records appended before it
stay: they are the stream's, byte for byte. A new log is built in a sibling directory and
renamed into place, so a crash leaves either no log or an empty log with the stream's id.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import DivergedError, ReplicationError, StreamMismatchError
from .._filenames import META_NAME, parse_segment_name
from .._fileops import OsFileOps
from .._format import max_frame_length
from .._log import open as open_log
from .._options import Options
from .._segment import SegmentWriter
from . import _wire
from ._jetstream import META_LOG_ID, StreamLink, import_nats

if TYPE_CHECKING:
    from .._fileops import FileOps
    from .._log import Log
    from ._settings import Settings

__all__ = ("RestoreReport", "restore")

#: Records appended per append_batch() call (bounded by bytes too, see _CHUNK_BYTES).
_CHUNK_RECORDS = 4096
_CHUNK_BYTES = 4 * 1024 * 1024
#: A new log is built in ``<path><_BUILDING>`` and renamed into place.
_BUILDING = ".restoring"


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """What :func:`restore` did."""

    path: str
    stream: str
    log_id: str
    created: bool  #: the directory held no log: a new one was made with the stream's id
    local_before: int  #: the log's last seq before the restore (0: it was empty or new)
    last_seq: int  #: its last seq after
    records: int  #: records appended
    messages: int  #: stream messages read


async def restore(
    path: str | os.PathLike[str],
    replication: Settings,
    *,
    log_id: str | None = None,
    **open_options: Any,
) -> RestoreReport:
    """Bring the log in ``path`` up to date with its stream (create it if there is none).

    Which stream: ``replication.stream`` if set (its metadata names the log), else the
    default stream of ``log_id``, else the default stream of the local log's own id.

    :param open_options: options for :func:`asyncwal.open` (e.g. ``sync_mode``)
    :raises ValueError: the directory holds no log and neither ``log_id`` nor a stream name
        says which to restore
    :raises ReplicationError: the server is unreachable or the stream does not exist
    :raises StreamMismatchError: the stream belongs to another log (or to another log than
        the one in ``path``), or a message in it fails its checks (records before it are
        restored)
    :raises DivergedError: the local log holds a record that differs from the stream's
    """
    import_nats()
    where = os.fspath(path)
    options = Options(**open_options)
    ops: FileOps = options.file_ops if options.file_ops is not None else OsFileOps()
    if not await asyncio.to_thread(_holds_a_log, ops, where):
        if log_id is None and replication.stream is None:
            raise ValueError(f"{where} holds no log: give the log id (or the stream) of the log to restore")
        owner = await _stream_owner(replication, log_id or "-", log_id is not None)
        first = await _first_seq_of(replication, owner)
        await asyncio.to_thread(_create, ops, where, options, owner, first)
        created = True
    else:
        created = False
    log = await open_log(path, **open_options)
    try:
        own = log.log_id
        owner = await _stream_owner(replication, log_id if log_id is not None else own, True)
        if owner != own:
            raise StreamMismatchError(
                f"the log in {where} is log {own}, the stream holds log {owner}: restore into an "
                "empty directory instead"
            )
        return await _restore_into(log, replication, owner, where, created)
    finally:
        await log.close()


def _holds_a_log(ops: FileOps, path: str) -> bool:
    """Does ``path`` hold a log (a META or a segment)? (I/O: run on a thread.)"""
    if not ops.exists(path):
        return False
    return any(name == META_NAME or parse_segment_name(name) is not None for name in ops.listdir(path))


def _create(ops: FileOps, path: str, options: Options, log_id: str, first_seq: int) -> None:
    """Make an empty log in ``path`` with this id whose first record will be ``first_seq``.

    Built in a sibling directory (a leftover one from a crash is reused) and renamed into
    place: ``path`` is either left as it was or becomes the whole new log. (I/O: run on a
    thread.)
    """
    building = path.rstrip(os.sep) + _BUILDING
    ops.makedirs(building)
    for name in ops.listdir(building):
        ops.unlink(os.path.join(building, name))
    max_frame = max_frame_length(options.max_record_size, options.max_batch_bytes)
    writer = SegmentWriter(ops, building, options.segment_size, options.preallocate, max_frame, log_id=log_id)
    writer.create(first_seq)
    try:
        # Records below first_seq are not in the stream: to recovery they were truncated.
        writer.write_meta(first_seq if first_seq > 1 else 0, None)
    finally:
        writer.close(sync=True)
    ops.rename(building, path)
    ops.sync_dir(os.path.dirname(os.path.abspath(path)))


async def _first_seq_of(replication: Settings, log_id: str) -> int:
    """The first seq the stream of ``log_id`` holds (or, holding none, the seq it was created
    to start at)."""
    link = StreamLink(replication, log_id)
    await link.connect()
    try:
        info = await link.stream_info()
        if info is None:
            raise ReplicationError(f"stream {link.stream} does not exist")
        pos = await link.position(create_at=None)
        if pos.log_last:
            async for sseq, headers, body in link.read(pos.stream_first, pos.data_seq):
                return _wire.decode(log_id, headers, body, f"stream {link.stream} seq {sseq}")[1]
        return max(1, int(info.config.first_seq or 1))
    finally:
        await link.close()


async def _stream_owner(replication: Settings, log_id: str, explicit: bool) -> str:
    """The log id the stream belongs to (from its metadata), checked against ``log_id`` when
    the stream is named by it or the caller gave it explicitly."""
    link = StreamLink(replication, log_id)
    try:
        await link.connect()
        info = await link.stream_info()
        if info is None:
            raise ReplicationError(f"stream {link.stream} does not exist")
        owner = (info.config.metadata or {}).get(META_LOG_ID)
        if owner is None:
            raise StreamMismatchError(f"stream {link.stream} was not created by asyncwal")
        if (explicit or replication.stream is None) and owner != log_id:
            raise StreamMismatchError(f"stream {link.stream} belongs to log {owner}, not to log {log_id}")
        return str(owner)
    finally:
        await link.close()


async def _restore_into(
    log: Log, replication: Settings, log_id: str, path: str, created: bool
) -> RestoreReport:
    link = StreamLink(replication, log_id)
    await link.connect()
    try:
        pos = await link.position(create_at=None)
        before = log.last_seq
        if not pos.log_last:
            return RestoreReport(path, link.stream, log_id, created, before, before, 0, 0)
        start = await _first_message_for(link, pos.stream_first, pos.data_seq, max(before, log.first_seq - 1))
        nxt = before + 1
        records = 0
        messages = 0
        chunk: list[bytes] = []
        chunk_bytes = 0

        async def flush() -> None:
            nonlocal chunk, chunk_bytes, records
            if not chunk:
                return
            want = log.last_seq + 1
            seqs = await log.append_batch(chunk)
            if seqs[0] != want:  # impossible while restore holds the log's lock
                raise AssertionError(f"restore appended at seq {seqs[0]}, expected {want}")
            records += len(chunk)
            chunk, chunk_bytes = [], 0

        try:
            async for sseq, headers, body in link.read(start, pos.data_seq):
                where = f"stream {link.stream} seq {sseq}"
                _, first, payloads = _wire.decode(log_id, headers, body, where)
                last = first + len(payloads) - 1
                messages += 1
                if last < nxt:
                    await _compare(log, first, payloads, where)
                    continue
                if first > nxt:
                    raise StreamMismatchError(f"{where}: seqs {nxt}..{first - 1} are missing from the stream")
                if first < nxt:
                    await _compare(log, first, payloads[: nxt - first], where)
                for p in payloads[nxt - first :]:
                    chunk.append(p)
                    chunk_bytes += len(p)
                    if len(chunk) >= _CHUNK_RECORDS or chunk_bytes >= _CHUNK_BYTES:
                        await flush()
                nxt = last + 1
        finally:
            await flush()
        return RestoreReport(path, link.stream, log_id, created, before, log.last_seq, records, messages)
    finally:
        await link.close()


async def _first_message_for(link: StreamLink, lo: int, hi: int, have: int) -> int:
    """The first stream sequence whose message holds a seq above ``have`` (binary search on
    the messages' headers; log seqs grow with stream sequences). Falls back to ``lo`` when a
    probed message is missing."""
    while lo < hi:
        mid = (lo + hi) // 2
        msg = await link.get(mid)
        if msg is None:
            return lo
        if _wire.last_seq_of(msg.headers, f"stream {link.stream} seq {mid}") <= have:
            lo = mid + 1
        else:
            hi = mid
    return lo


async def _compare(log: Log, first: int, payloads: list[bytes], where: str) -> None:
    """Check that the local log holds ``payloads`` at ``first..``, where it still has them."""
    start = max(first, log.first_seq)
    if start > first + len(payloads) - 1:
        return
    i = start - first
    async for rec in log.replay(start):
        if i >= len(payloads):
            break
        if rec.seq != first + i or rec.data != payloads[i]:
            raise DivergedError(
                f"{where}: the local log's record {first + i} differs from the stream's",
                local_seq=log.last_seq,
                stream_seq=first + len(payloads) - 1,
            )
        i += 1
