"""``asyncwal restore DIR --server URL``: rebuild or extend a log from its NATS JetStream stream.

Runs :func:`asyncwal.replication.restore`: the log in DIR gets every record after its last
seq that the stream holds, byte for byte, with the same seqs. A DIR that holds no log gets a
new one with the stream's log id and first seq (``--log-id`` or ``--stream`` says which). Needs
the ``nats`` extra. Exit status: 0 restored (or nothing to add), 1 the stream or the log
refused (another log's stream, a damaged message, a diverged log), 2 usage or connection
problems.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .._errors import DivergedError, LogLockedError, ReplicationError, StreamMismatchError
from ._output import Out, error

if TYPE_CHECKING:
    import argparse

    from ._output import Subcommands

__all__ = ("add_parser",)


def add_parser(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    restore = sub.add_parser(
        "restore",
        help="rebuild or extend a log from its NATS JetStream stream",
        description="Append to the log in DIR every record its stream holds after the log's last "
        "seq. A DIR that holds no log gets a new one with the stream's log id and first seq. "
        "Needs the nats extra: pip install 'asyncwal[nats]'.",
    )
    restore.add_argument("directory", metavar="DIR", help="the log directory (a new log if it holds none)")
    restore.add_argument(
        "--server",
        dest="servers",
        action="append",
        required=True,
        metavar="URL",
        help="a NATS server URL, e.g. nats://10.0.0.1:4222 (repeat for several)",
    )
    restore.add_argument("--stream", help="the stream's name (default: the one named after the log id)")
    restore.add_argument(
        "--log-id",
        help="the log id to restore (default: the local log's; needed for a new one, unless --stream)",
    )
    restore.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for each answer (default %(default)s)"
    )
    restore.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from ..replication import NatsReplication, restore
        from ..replication._jetstream import import_nats

        import_nats()
    except ImportError as exc:
        error("restore", str(exc))
        return 2
    try:
        settings = NatsReplication(
            servers=tuple(args.servers), stream=args.stream, request_timeout=args.timeout
        )
    except (TypeError, ValueError) as exc:
        error("restore", str(exc))
        return 2
    try:
        report = asyncio.run(restore(args.directory, settings, log_id=args.log_id))
    except (StreamMismatchError, DivergedError) as exc:
        error("restore", str(exc))
        return 1
    except (ReplicationError, LogLockedError, OSError, ValueError) as exc:
        error("restore", str(exc))
        return 2
    out = Out()
    out.fields(
        [
            ("log", report.path),
            ("log id", report.log_id + (" (a new log, made with the stream's id)" if report.created else "")),
            ("stream", report.stream),
            ("before", f"last seq {report.local_before}"),
            ("restored", f"{report.records} records from {report.messages} messages"),
            ("after", f"last seq {report.last_seq}"),
        ]
    )
    return 0
