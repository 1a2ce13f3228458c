"""What a log's stream holds, asked from outside the writing process (``asyncwal info``).

A read-only look: it never creates the stream, never publishes, and is bounded in time as a
whole (an unreachable cluster makes it fail after ``within`` seconds, never hang).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._errors import ReplicationError
from ._jetstream import LinkError, StreamLink, import_nats

if TYPE_CHECKING:
    from ._settings import Settings

__all__ = ("StreamState", "probe")


@dataclass(frozen=True, slots=True)
class StreamState:
    """What a log's stream holds."""

    stream: str
    layout: str
    shipped_seq: int  #: the last seq the stream holds (0: none)
    messages: int  #: messages stored (records, and a packed stream's fences)


async def probe(settings: Settings, log_id: str, within: float) -> StreamState:
    """Read the position of the stream of ``log_id``, within ``within`` seconds in all.

    :raises ImportError: the ``nats`` extra is missing
    :raises ReplicationError: unreachable, no such stream, or no answer in time
    :raises StreamMismatchError: the stream belongs to another log
    """
    import_nats()
    link = StreamLink(settings, log_id)

    async def ask() -> StreamState:
        await link.connect(within)
        pos = await link.position(create_at=None)
        return StreamState(link.stream, pos.layout, pos.log_last, pos.messages)

    try:
        return await asyncio.wait_for(ask(), within)
    except TimeoutError:
        raise LinkError(f"no answer from {', '.join(settings.servers)} within {within} s") from None
    finally:
        try:
            await asyncio.wait_for(link.close(), within)
        except (TimeoutError, ReplicationError):
            pass
