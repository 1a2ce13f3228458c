"""``asyncwal dump DIR``: print the records, as text, JSON lines or raw bytes; read-only and
streaming (memory: one read chunk plus one frame, whatever the log's size)."""

from __future__ import annotations

import base64
import json
import struct
import sys
from typing import TYPE_CHECKING

from .._format import MULTI
from .._inspect import LogFrames, lock_status, read_log
from ._output import LIVE_RETRIES, Usage, error, frame_limit, preview

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from .._reader import Frame
    from ._output import Subcommands

__all__ = ("add_parser",)

_LENGTH = struct.Struct("<I")


def add_parser(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    dump = sub.add_parser("dump", parents=[common], help="print the records; read-only, streaming")
    dump.add_argument(
        "--from", dest="from_seq", type=int, default=0, metavar="SEQ", help="first seq to print"
    )
    dump.add_argument("--to", dest="to_seq", type=int, default=None, metavar="SEQ", help="last seq to print")
    dump.add_argument(
        "--format",
        choices=("text", "json", "raw"),
        default="text",
        help="text: one line per record; json: one JSON object per line; "
        "raw: each record as a 4-byte little-endian length and its bytes",
    )
    dump.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    lo = args.from_seq
    hi = args.to_seq
    if hi is not None and hi < lo:
        raise Usage(f"--to {hi} is below --from {lo}")
    lock = lock_status(args.ops, args.dir)
    log = read_log(args.ops, args.dir, frame_limit(args), read="none")
    stream = sys.stdout
    emit: Callable[[int, bytes, str, Frame], None]
    if args.format == "raw":
        binary = stream.buffer

        def emit(seq: int, data: bytes, segment: str, frame: Frame) -> None:
            binary.write(_LENGTH.pack(len(data)))
            binary.write(data)

    elif args.format == "json":
        shard = getattr(args, "shard", None)  # set when the log is a shard of a sharded log

        def emit(seq: int, data: bytes, segment: str, frame: Frame) -> None:
            obj: dict[str, object] = {} if shard is None else {"shard": shard}
            obj |= {
                "seq": seq,
                "length": len(data),
                "type": "batch" if frame.type == MULTI else "data",
                "segment": segment,
                "offset": frame.offset,
            }
            try:
                obj["encoding"], obj["data"] = "utf-8", data.decode("utf-8")
            except UnicodeDecodeError:
                obj["encoding"], obj["data"] = "base64", base64.b64encode(data).decode("ascii")
            stream.write(json.dumps(obj) + "\n")

    else:

        def emit(seq: int, data: bytes, segment: str, frame: Frame) -> None:
            where = f"{segment}:{frame.offset}"
            batch = f" batch={seq - frame.seq + 1}/{frame.count}" if frame.type == MULTI else ""
            stream.write(f"seq={seq} len={len(data)} at={where}{batch} data={preview(data)}\n")

    frames = LogFrames(
        args.ops, log, frame_limit(args), from_seq=lo, live_retries=LIVE_RETRIES if lock.held else 0
    )
    for segment, frame in frames:
        if frame.seq + frame.count <= lo:
            continue
        for seq, data in frame.records(lo):
            if hi is not None and seq > hi:
                stream.flush()
                return 0
            emit(seq, data, segment, frame)
    stream.flush()
    if args.format == "raw":
        stream.buffer.flush()
    stop = frames.stop
    if stop is None:
        return 0
    if stop.offset == 0:
        problem = f"{stop.segment}: {stop.reason}"
    else:
        problem = (
            f"damage in {stop.segment} at offset {stop.offset} ({stop.reason}) after seq {stop.next_seq - 1}"
        )
    error("dump", f"{problem}; the records from there on are not shown (run asyncwal verify)")
    return 1
