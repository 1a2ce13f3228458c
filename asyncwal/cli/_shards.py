"""Sharded logs on the command line: ``info``, ``dump``, ``verify`` and ``repair`` given the
directory of a sharded log (see :func:`asyncwal.open_sharded`) run on each of its shards in
turn, or on one with ``--shard K``.

Each shard is a complete log, so each run is the command's own, with the shard's directory:
the reading commands stay read-only and lock-free, and ``repair`` opens (and so locks) one
shard at a time, refusing a shard that another process holds. The exit status is the worst
of the shards'. Text output is headed by one line per shard; ``dump --format json`` adds a
``"shard"`` field to every record instead, and ``--format raw``, which has no room for it,
needs ``--shard``.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Final

from .._fileops import FileKind
from .._sharded import list_shards, shard_name
from ._output import Usage

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._fileops import FileOps

__all__ = ("SHARDED_COMMANDS", "add_shard_option", "run_sharded", "sharded_dirs")

#: The commands that take a sharded log's directory.
SHARDED_COMMANDS: Final = ("info", "dump", "verify", "repair")


def add_shard_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shard",
        type=int,
        default=None,
        metavar="K",
        help="a sharded log: only shard K (default: every shard, in turn)",
    )


def sharded_dirs(ops: FileOps, path: str) -> list[tuple[int, str]] | None:
    """The shards of ``path`` (index, directory), ascending, if it is a sharded log's
    directory: it holds shard directories and no file of a plain log. Otherwise None."""
    try:
        indexes = list_shards(ops, path)
    except (OSError, ValueError):  # not a directory, or a plain log
        return None
    shards = [(i, os.path.join(path, shard_name(i))) for i in indexes]
    return [(i, d) for i, d in shards if ops.kind(d) is FileKind.DIRECTORY] or None


def run_sharded(args: argparse.Namespace, run: Callable[[argparse.Namespace], int]) -> int | None:
    """Run the command on the shards of ``args.dir``; None if it is not a sharded log
    (then the command runs as usual, and ``--shard`` is a usage error).

    :raises Usage: ``--shard`` names no shard, or raw output of several shards
    """
    shards = sharded_dirs(args.ops, args.dir)
    if shards is None:
        if args.shard is not None:
            raise Usage(f"--shard: {args.dir} is not a sharded log")
        return None
    if args.shard is not None:
        chosen = [(i, d) for i, d in shards if i == args.shard]
        if not chosen:
            raise Usage(
                f"{args.dir} has no shard {args.shard} (shards: {', '.join(str(i) for i, _ in shards)})"
            )
        shards = chosen
    raw = getattr(args, "format", None) == "raw"
    if raw and len(shards) > 1:
        raise Usage("--format raw has no room for the shard of a record: add --shard K")
    headed = getattr(args, "format", "text") == "text"
    if headed and args.shard is None:
        print(f"sharded log {args.dir}: {len(shards)} shards")
    status = 0
    for index, directory in shards:
        if headed:
            print(f"\n== shard {index}: {directory}", flush=True)
        status = max(status, run(argparse.Namespace(**{**vars(args), "dir": directory, "shard": index})))
    return status
