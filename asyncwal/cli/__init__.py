"""The ``asyncwal`` command line (also ``python -m asyncwal``).

::

    asyncwal info DIR                       segments, seq range, sizes, checkpoint, lock holder
    asyncwal dump DIR [--from SEQ] [--to SEQ] [--format text|json|raw]
    asyncwal verify DIR [--progress]        every checksum; what recovery would do
    asyncwal repair DIR [--mode tolerate_tail|point_in_time]
    asyncwal restore DIR --server URL       rebuild or extend a log from its NATS stream
    asyncwal bench [DIR]                    the three sync modes measured on this disk

One module per command (``info``, ``dump``, ``verify``, ``repair``, ``restore``, ``bench``), each with an
``add_parser(sub, common)`` that registers it and a ``run(args)`` that returns the exit
status; ``_output`` and ``_notes`` hold what they share. A new command is a new module added
to :data:`COMMANDS`.

Exit status: 0 when all is well, 1 when damage is found (``info`` excepted) or a repair is
refused, 2 for a usage error (bad arguments, not a log directory).

``info``, ``dump``, ``verify`` and ``repair`` also take the directory of a sharded log and run
on each shard in turn (``_shards``).

``info``, ``dump`` and ``verify`` read the segment files directly: they never call
:func:`asyncwal.open`, never take the writer's lock and never write to the directory, so
they are safe on a log that another process has open. ``repair`` opens the log (opening
*is* the repair: recovery runs) after arranging that every byte it cuts is kept in a
``.broken`` file first.

rich (the ``cli`` extra) draws the tables and the progress bar; it is imported only inside
the functions that use it, never by ``import asyncwal`` or ``import asyncwal.cli``. Without
it the output is plain text.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from .. import __version__
from .._errors import WALError
from .._fileops import OsFileOps
from .._inspect import NotALogError
from . import bench, dump, info, repair, restore, verify
from ._output import Usage, error, reading_options
from ._shards import SHARDED_COMMANDS, add_shard_option, run_sharded

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._fileops import FileOps

__all__ = ("COMMANDS", "main")

#: The command modules, in the order ``--help`` lists them.
COMMANDS = (info, dump, verify, repair, restore, bench)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asyncwal",
        description="Inspect, check, repair and measure asyncwal logs.",
        epilog="Exit status: 0 ok, 1 damage found or repair refused, 2 usage error.",
    )
    parser.add_argument("--version", action="version", version=f"asyncwal {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = reading_options()
    for command in COMMANDS:
        command.add_parser(sub, common)
    for name in SHARDED_COMMANDS:  # they also take a sharded log's directory
        add_shard_option(sub.choices[name])
    return parser


def main(argv: Sequence[str] | None = None, *, file_ops: FileOps | None = None) -> int:
    """Run the command line; return the exit status (usage errors included, never SystemExit).

    :param file_ops: the file system the commands work on (the real one by default; tests
        give a :class:`asyncwal.testing.MemoryFileOps`). ``bench`` always measures the real disk.
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    args.ops = file_ops if file_ops is not None else OsFileOps()
    try:
        status = run_sharded(args, args.func) if args.command in SHARDED_COMMANDS else None
        return int(args.func(args)) if status is None else status
    except (Usage, NotALogError) as exc:
        error(args.command, str(exc))
        return 2
    except (WALError, OSError) as exc:
        # What the log or the file system refused (a damaged log, a name that is not a
        # regular file, no permission...): said in one line, never as a traceback.
        if isinstance(exc, BrokenPipeError):
            # The reader went away (`asyncwal dump DIR | head`): stop quietly, as cat does.
            _silence_stdout()
            return 0
        error(args.command, f"{type(exc).__name__}: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush cannot fail again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
