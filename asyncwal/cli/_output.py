"""What every command of the command line shares: output (rich or plain), formatting of sizes
and payloads, the reading options, and the usage error.

rich is imported only inside the functions that draw with it, never at import time, so that
``import asyncwal.cli`` works without the ``cli`` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any, Final, TextIO

from .._format import max_frame_length
from .._options import Options

if TYPE_CHECKING:
    from collections.abc import Sequence

    #: What ``argparse.ArgumentParser.add_subparsers`` returns; commands add themselves to it.
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = (
    "LIVE_RETRIES",
    "RICH_HINT",
    "Out",
    "Usage",
    "error",
    "frame_limit",
    "human_size",
    "load_rich",
    "plural",
    "preview",
    "reading_options",
)

RICH_HINT: Final = "pip install 'asyncwal[cli]'"
#: Re-reads of a live log's last segment before a torn-looking tail counts as damage.
LIVE_RETRIES: Final = 3


class Usage(Exception):
    """A usage error found after argument parsing (exit status 2)."""


def load_rich(purpose: str) -> bool:
    """True if rich can be imported; otherwise say once what is missing, on stderr."""
    try:
        import rich  # noqa: F401
    except ImportError:
        print(
            f"asyncwal: rich is not installed, so {purpose} "
            f"({RICH_HINT} for drawn tables and verify's progress bar)",
            file=sys.stderr,
        )
        return False
    return True


class Out:
    """Where a command prints: rich tables when rich is installed, aligned plain text otherwise.

    Looks up ``sys.stdout`` when created, so that a caller's redirection applies.
    """

    def __init__(self) -> None:
        self.stream: TextIO = sys.stdout
        self._console: Any = None
        if load_rich("output is plain text"):
            from rich.console import Console

            console = Console(file=self.stream, highlight=False, markup=False, emoji=False, soft_wrap=True)
            if not console.is_terminal and "COLUMNS" not in os.environ:
                console.width = 160  # piped output: no terminal to fit, so do not wrap tables
            self._console = console

    def line(self, text: str = "") -> None:
        if self._console is not None:
            self._console.print(text)
        else:
            print(text, file=self.stream)

    def fields(self, pairs: Sequence[tuple[str, str]]) -> None:
        """``name  value`` lines with the values aligned."""
        width = max((len(name) for name, _ in pairs), default=0)
        for name, value in pairs:
            self.line(f"{name:<{width}}  {value}")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> None:
        """A table; the columns whose indexes are in ``right`` are right-aligned."""
        if self._console is not None:
            from rich import box
            from rich.table import Table

            table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
            for i, header in enumerate(headers):
                table.add_column(header, justify="right" if i in right else "left", no_wrap=True)
            for row in rows:
                table.add_row(*row)
            self._console.print(table)
            return
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

        def fmt(cells: Sequence[str]) -> str:
            out = [
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ]
            return "  ".join(out).rstrip()

        print(fmt(headers), file=self.stream)
        print("  ".join("-" * w for w in widths), file=self.stream)
        for row in rows:
            print(fmt(row), file=self.stream)


def human_size(n: int) -> str:
    """Bytes in binary units: ``512 B``, ``1.5 KiB``, ``64.0 MiB``."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def preview(data: bytes, limit: int = 64, *, quote: bool = False) -> str:
    """A short rendering of a payload for people: printable UTF-8 as it is (``quote``: in
    quotes), other text quoted with JSON escapes, anything else in hex; cut at ``limit``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        shown = data[: limit // 2].hex()
        more = len(data) - limit // 2
        return f"hex:{shown}" + (f"... (+{more} bytes)" if more > 0 else "")
    head = text[:limit]
    rendered = head if head.isprintable() and not quote else json.dumps(head)
    more = len(data) - len(head.encode())
    return rendered + (f"... (+{more} bytes)" if more > 0 else "")


def error(command: str, message: str) -> None:
    print(f"asyncwal {command}: {message}", file=sys.stderr)


def frame_limit(args: argparse.Namespace) -> int:
    """The longest frame payload the log's options allow (longer length fields are damage)."""
    return max_frame_length(args.max_record_size, args.max_batch_bytes)


def byte_limit(text: str) -> int:
    """An argparse type: a size limit in bytes, as the log's options accept it (1 to 2 GiB)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of bytes: {text!r}") from None
    if not 1 <= value <= 2**31:
        raise argparse.ArgumentTypeError(f"{value} is not a size limit from 1 byte to 2 GiB ({2**31})")
    return value


def reading_options() -> argparse.ArgumentParser:
    """The arguments of every command that reads a log: its directory and its size limits."""
    defaults = Options()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("dir", metavar="DIR", help="the log directory")
    common.add_argument(
        "--max-record-size",
        type=byte_limit,
        default=defaults.max_record_size,
        metavar="BYTES",
        help="the log's max_record_size: longer length fields are damage (default %(default)s)",
    )
    common.add_argument(
        "--max-batch-bytes",
        type=byte_limit,
        default=defaults.max_batch_bytes,
        metavar="BYTES",
        help="the log's max_batch_bytes (default %(default)s)",
    )
    return common
