"""The one place that talks to NATS: a connection, the log's stream, publishes and reads.

Everything here has its own deadline. ``nats-py`` futures can wait forever (an async publish
whose acknowledgement was lost, a connect that retries without end), so every await on the
client is bounded by ``request_timeout`` (or an explicit timeout) and a missed deadline is a
:class:`LinkError` like any other failure of the link.

Publishing is split in two so that the shipper can keep several messages in flight:
:meth:`StreamLink.publish` hands a message to the client's buffer and returns; its
acknowledgement (or error) arrives later through the ``on_ack`` callback given to the
constructor, identified by the token the shipper chose. Acknowledgements may arrive in any
order (a refusal before the proposal returns at once; a stored message after its Raft commit).
:meth:`StreamLink.write_fences` writes a packed stream's fences as one atomic batch (see
_wire): all of them are stored, in order, or none.

The ``nats`` package is imported lazily, when a link is made: ``import asyncwal.replication``
works without it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import ReplicationError, StreamMismatchError
from . import _wire

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from ._settings import Settings

__all__ = ("Ack", "LinkError", "Position", "StreamLink", "import_nats")

logger = logging.getLogger("asyncwal.replication")

#: Stream metadata keys: the log a stream belongs to, and the wire layout it holds.
META_LOG_ID = "asyncwal_log_id"
META_LAYOUT = "asyncwal_layout"

#: JetStream API error codes the shipper tells apart.
ERR_WRONG_LAST_SEQUENCE = 10071
ERR_STREAM_NOT_FOUND = 10059


def import_nats() -> Any:
    """The ``nats`` package, or an ImportError that names the extra to install."""
    try:
        import nats
    except ImportError as exc:
        raise ImportError("asyncwal replication needs the NATS client: pip install 'asyncwal[nats]'") from exc
    return nats


class LinkError(ReplicationError):
    """A request to the cluster failed or timed out. The shipper retries after it."""


@dataclass(frozen=True, slots=True)
class Ack:
    """The answer to one publish: ``seq`` and ``duplicate`` if stored, else ``error``."""

    seq: int = 0
    duplicate: bool = False
    stream: str = ""
    error: str | None = None
    err_code: int = 0


@dataclass(frozen=True, slots=True)
class Position:
    """What the stream holds of the log, read from the stream itself.

    :ivar stream_last: the stream's last sequence (0 if it never held a message)
    :ivar log_last: the last log seq the stream holds (0 if none)
    :ivar data_seq: the stream sequence of the message holding ``log_last`` (0 if none;
        below ``stream_last`` when fences follow it)
    :ivar stream_first: the stream's first sequence still stored
    :ivar messages: messages stored
    :ivar layout: the wire layout the stream holds
    """

    stream_last: int
    log_last: int
    data_seq: int
    stream_first: int
    messages: int
    layout: str


class StreamLink:
    """A NATS connection and the stream of one log.

    :param options: the replication settings
    :param log_id: the log's id: the stream must belong to it
    :param on_ack: called on the loop thread with ``(token, Ack)`` for every acknowledgement
    """

    def __init__(
        self, options: Settings, log_id: str, on_ack: Callable[[int, Ack], None] | None = None
    ) -> None:
        self.options = options
        self.log_id = log_id
        self.stream = options.stream_for(log_id)
        self.subject = options.subject_for(log_id)
        self._on_ack = on_ack
        self._timeout = options.request_timeout
        self._nc: Any = None
        self._js: Any = None
        self._inbox = ""
        self.max_payload = 1024 * 1024

    # -- connection -------------------------------------------------------------------

    async def connect(self, within: float | None = None) -> None:
        """Connect to the cluster (trying every server) within ``within`` seconds (default:
        ``request_timeout``).

        :raises LinkError: no server answered in time
        """
        nats = import_nats()
        from nats.aio.client import Client

        nc = Client()

        async def quiet(exc: Exception) -> None:
            logger.debug("asyncwal replication: NATS client: %r", exc)

        opts = dict(self.options.connect_options)
        opts.update(
            servers=list(self.options.servers),
            name=f"asyncwal shipper {self.log_id}",
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            connect_timeout=min(self._timeout, 2.0),
            error_cb=quiet,
        )
        limit = within if within is not None else self._timeout
        try:
            await asyncio.wait_for(nc.connect(**opts), limit)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            await _close_quietly(nc)
            servers = ", ".join(self.options.servers)
            raise LinkError(f"cannot reach the NATS server(s) {servers} within {limit} s: {exc!r}") from exc
        self._nc = nc
        self._js = nc.jetstream(timeout=self._timeout)
        self.max_payload = int(nc.max_payload or self.max_payload)
        self._inbox = nc.new_inbox()
        if self._on_ack is not None:
            await nc.subscribe(self._inbox + ".*", cb=self._on_reply)

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None:
            await _close_quietly(nc)

    @property
    def connected(self) -> bool:
        return self._nc is not None and bool(self._nc.is_connected)

    # -- the stream -------------------------------------------------------------------

    async def _request(self, what: str, coro: Any) -> Any:
        """Await one client call within ``request_timeout``; map its failures to LinkError."""
        nats = import_nats()
        try:
            return await asyncio.wait_for(coro, self._timeout)
        except TimeoutError as exc:
            raise LinkError(f"{what}: no answer within {self._timeout} s") from exc
        except nats.js.errors.NotFoundError:
            raise
        except nats.js.errors.APIError as exc:
            if exc.err_code == ERR_STREAM_NOT_FOUND:
                raise
            raise LinkError(f"{what}: {exc.description or exc!r} (error {exc.err_code})") from exc
        except (OSError, nats.errors.Error) as exc:
            raise LinkError(f"{what}: {exc!r}") from exc

    async def stream_info(self) -> Any | None:
        """The stream's info, or None if it does not exist."""
        nats = import_nats()
        try:
            return await self._request(f"stream {self.stream}", self._js.stream_info(self.stream))
        except nats.js.errors.NotFoundError:
            return None

    async def ensure_stream(self, first_seq: int) -> Any:
        """The stream's info after checking it belongs to this log and holds the configured
        layout; create it if allowed.

        :param first_seq: the log seq the stream's sequence starts at if it is created (so that
            in the record layout stream sequence == log seq)
        :raises StreamMismatchError: it belongs to another log or is not asyncwal's
        :raises ReplicationError: it does not exist and ``create_stream`` is off
        """
        info = await self.stream_info()
        if info is None:
            if not self.options.create_stream:
                raise ReplicationError(f"stream {self.stream} does not exist (and create_stream is off)")
            from nats.js.api import StorageType, StreamConfig

            config = StreamConfig(
                name=self.stream,
                subjects=_wire.stream_subjects(self.subject),
                num_replicas=self.options.replicas,
                storage=StorageType.FILE,
                first_seq=first_seq,
                allow_direct=True,
                allow_atomic=self.options.layout == "packed" or None,
                metadata={META_LOG_ID: self.log_id, META_LAYOUT: self.options.layout},
                description=f"asyncwal log {self.log_id}",
            )
            nats = import_nats()
            try:
                info = await self._request(f"create stream {self.stream}", self._js.add_stream(config))
            except nats.js.errors.BadRequestError:
                info = None
            if info is None:  # created meanwhile by someone else: check it like any other
                info = await self.stream_info()
                if info is None:
                    raise LinkError(f"stream {self.stream} could not be created")
        self._check_owner(info)
        layout = (info.config.metadata or {}).get(META_LAYOUT)
        if layout != self.options.layout:
            raise StreamMismatchError(
                f"stream {self.stream} holds the {layout!r} layout, not {self.options.layout!r}: a stream "
                "keeps the layout it was created with"
            )
        if layout == "packed" and not info.config.allow_atomic:
            raise StreamMismatchError(
                f"stream {self.stream} does not allow atomic batches (allow_atomic), which the packed "
                "layout's fences need (nats-server 2.12 or later)"
            )
        return info

    def _check_owner(self, info: Any) -> None:
        meta = info.config.metadata or {}
        owner = meta.get(META_LOG_ID)
        if owner is None:
            raise StreamMismatchError(
                f"stream {self.stream} was not created by asyncwal (no {META_LOG_ID} in its metadata)"
            )
        if owner != self.log_id:
            raise StreamMismatchError(
                f"stream {self.stream} belongs to log {owner}, not to this log ({self.log_id})"
            )
        subjects = info.config.subjects or []
        if not set(_wire.stream_subjects(self.subject)) <= set(subjects):
            raise StreamMismatchError(
                f"stream {self.stream} does not take the subjects {_wire.stream_subjects(self.subject)} "
                f"({subjects})"
            )

    async def position(self, create_at: int | None) -> Position:
        """Read what the stream holds of the log: its last message, from the stream leader.

        :param create_at: create a missing stream starting at this seq (see
            :meth:`ensure_stream`); None: a missing stream is an error
        :raises StreamMismatchError: the last message is not this log's, or it was removed
            (then nothing tells where shipping stopped)
        :raises ReplicationError: the stream does not exist (and may not be created)
        """
        if create_at is None:
            info = await self.stream_info()
            if info is None:
                raise ReplicationError(f"stream {self.stream} does not exist")
            self._check_owner(info)
        else:
            info = await self.ensure_stream(create_at)
        state = info.state
        last = int(state.last_seq)
        configured_first = int(info.config.first_seq or 1)
        layout = str((info.config.metadata or {}).get(META_LAYOUT))
        if last < configured_first:  # never written
            return Position(last, 0, 0, int(state.first_seq), 0, layout)
        msg = await self.get(last)
        if msg is None:
            raise StreamMismatchError(
                f"stream {self.stream}: its last message ({last}) was removed (limits or a purge), so "
                "nothing tells which records it holds; give the log a new stream"
            )
        headers = msg.headers or {}
        where = f"stream {self.stream} seq {last}"
        _wire.owner_of(self.log_id, headers, where)
        if _wire.is_fence(headers):
            log_last, data_seq = _wire.fence_position(headers, where)
        else:
            log_last, data_seq = _wire.last_seq_of(headers, where), last
        if layout == "record" and log_last != last:
            raise StreamMismatchError(
                f"{where}: holds seq {log_last}; in the record layout the two are equal"
            )
        return Position(last, log_last, data_seq, int(state.first_seq), int(state.messages), layout)

    async def get(self, stream_seq: int) -> Any | None:
        """The stored message at ``stream_seq`` (from the leader), or None if there is none."""
        nats = import_nats()
        try:
            return await self._request(
                f"stream {self.stream} message {stream_seq}", self._js.get_msg(self.stream, stream_seq)
            )
        except nats.js.errors.NotFoundError:
            return None

    # -- publishing -------------------------------------------------------------------

    async def publish(self, token: int, msg: _wire.Outgoing, order: dict[str, str]) -> None:
        """Hand one message to the client; its Ack comes to ``on_ack(token, ...)`` later.

        :param order: its ordering headers (_wire.order_headers)
        :raises LinkError: the client refused it (closed, or its buffer is full while it
            reconnects)
        """
        nats = import_nats()
        nc = self._nc
        if nc is None:
            raise LinkError("not connected")
        try:
            await nc.publish(
                self.subject, msg.body, reply=f"{self._inbox}.{token}", headers=msg.headers | order
            )
        except (OSError, nats.errors.Error) as exc:
            raise LinkError(f"publish to {self.subject}: {exc!r}") from exc

    async def write_fences(self, count: int, after: int, log_last: int, data_seq: int) -> int:
        """Write fences ``0 .. count - 1`` right behind stream sequence ``after``, as one
        atomic batch: all stored at ``after + 1 ..``, in order, or none.

        :param log_last: the last log seq the stream holds (0: none), recorded in each fence
        :param data_seq: the stream sequence of the message holding it (0: none)
        :return: the stream sequence of fence 0
        :raises LinkError: not stored (refused, or no answer in time): read the position again
        """
        nats = import_nats()
        nc = self._nc
        if nc is None:
            raise LinkError("not connected")
        batch = uuid.uuid4().hex
        try:
            for j in range(count):
                headers = _wire.fence_headers(self.log_id, j, log_last, data_seq)
                headers["Nats-Batch-Id"] = batch
                headers["Nats-Batch-Sequence"] = str(j + 1)
                subject = _wire.fence_subject(self.subject, j)
                if j == 0:
                    headers["Nats-Expected-Last-Sequence"] = str(after)
                if j < count - 1:
                    await nc.publish(subject, b"", headers=headers)
                    continue
                headers["Nats-Batch-Commit"] = "1"
                reply = await asyncio.wait_for(
                    nc.request(subject, b"", headers=headers, timeout=self._timeout), self._timeout * 1.5
                )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            raise LinkError(f"fences of {self.stream}: {exc!r}") from exc
        ack = _parse_ack(reply)
        if ack.error is not None:
            raise LinkError(f"fences of {self.stream} refused: {ack.error}")
        if ack.seq != after + count:
            raise LinkError(f"fences of {self.stream} stored up to seq {ack.seq}, expected {after + count}")
        return after + 1

    async def _on_reply(self, msg: Any) -> None:
        on_ack = self._on_ack
        if on_ack is None:
            return
        try:
            token = int(msg.subject.rpartition(".")[2])
        except ValueError:
            return
        on_ack(token, _parse_ack(msg))

    # -- reading ----------------------------------------------------------------------

    async def read(self, start: int, end: int, batch: int = 256) -> AsyncIterator[tuple[int, Any, bytes]]:
        """The stream's data messages with sequences ``start..end``, in order, as
        ``(stream seq, headers, body)``; fences and deleted sequences are skipped.

        Reads through an ephemeral pull consumer that acknowledges nothing; every fetch has
        its own deadline, and a fetch that fails is retried from the next sequence up to
        three times before the error is raised.
        """
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        nats = import_nats()
        seq = start
        failures = 0
        while seq <= end:
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=seq,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=60.0,
                mem_storage=True,
                num_replicas=1,
                filter_subjects=[self.subject],  # the records' messages, not the fences
            )
            try:
                sub = await self._request(
                    f"reader on {self.stream}",
                    self._js.pull_subscribe(self.subject, durable=None, stream=self.stream, config=config),
                )
            except LinkError:
                failures += 1
                if failures > 3:
                    raise
                continue
            try:
                while seq <= end:
                    try:
                        msgs = await asyncio.wait_for(
                            sub.fetch(batch=min(batch, end - seq + 1), timeout=self._timeout),
                            self._timeout * 2,
                        )
                    except (TimeoutError, nats.errors.TimeoutError) as exc:
                        raise LinkError(
                            f"read {self.stream} from {seq}: no messages within {self._timeout} s"
                        ) from exc
                    except (OSError, nats.errors.Error) as exc:
                        raise LinkError(f"read {self.stream} from {seq}: {exc!r}") from exc
                    for m in msgs:
                        sseq = int(m.metadata.sequence.stream)
                        if sseq < seq:
                            continue
                        if sseq > end:
                            return
                        seq = sseq + 1
                        yield sseq, m.headers, m.data
                    failures = 0
            except LinkError:
                failures += 1
                if failures > 3:
                    raise
            finally:
                try:
                    await asyncio.wait_for(sub.unsubscribe(), self._timeout)
                except (TimeoutError, OSError, nats.errors.Error):
                    pass


def _parse_ack(msg: Any) -> Ack:
    headers = msg.headers or {}
    status = headers.get("Status")
    if status is not None and not msg.data:
        if status == "503":
            return Ack(error="no responders: the stream has no leader reachable from this server")
        return Ack(error=f"status {status} {headers.get('Description', '')}".strip())
    try:
        resp = json.loads(msg.data)
    except ValueError:
        return Ack(error=f"unreadable acknowledgement {bytes(msg.data[:80])!r}")
    err = resp.get("error")
    if err:
        return Ack(
            error=str(err.get("description") or err),
            err_code=int(err.get("err_code") or 0),
            stream=resp.get("stream", ""),
        )
    return Ack(
        seq=int(resp.get("seq", 0)), duplicate=bool(resp.get("duplicate")), stream=str(resp.get("stream", ""))
    )


async def _close_quietly(nc: Any) -> None:
    try:
        await asyncio.wait_for(nc.close(), 5.0)
    except Exception:  # closing is best effort: the connection is being abandoned
        logger.debug("asyncwal replication: closing the NATS connection failed", exc_info=True)
