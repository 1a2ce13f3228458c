"""asyncwal: a group-commit write-ahead log for asyncio with an honest durability contract.

::

    import asyncwal

    async with asyncwal.open("data/wal") as log:
        seq = await log.append(b"payload")   # on disk when this returns (sync_mode="sync")

See docs/durability.md for exactly what each mode promises.
"""

from ._errors import CorruptLogError as CorruptLogError
from ._errors import DivergedError as DivergedError
from ._errors import LogClosedError as LogClosedError
from ._errors import LogFailedError as LogFailedError
from ._errors import LogLockedError as LogLockedError
from ._errors import NoFreeShardError as NoFreeShardError
from ._errors import RecordTooLargeError as RecordTooLargeError
from ._errors import ReplicationError as ReplicationError
from ._errors import ReplicationTimeoutError as ReplicationTimeoutError
from ._errors import StreamMismatchError as StreamMismatchError
from ._errors import TruncatedError as TruncatedError
from ._errors import WALError as WALError
from ._errors import WrongEventLoopError as WrongEventLoopError
from ._errors import WrongProcessError as WrongProcessError
from ._fileops import AsyncReader as AsyncReader
from ._fileops import FileKind as FileKind
from ._fileops import FileOps as FileOps
from ._fileops import LockState as LockState
from ._fileops import NotRegularFileError as NotRegularFileError
from ._fileops import OsFileOps as OsFileOps
from ._format import FORMAT_VERSION as FORMAT_VERSION
from ._log import Checkpoint as Checkpoint
from ._log import Log as Log
from ._log import Stats as Stats
from ._log import open as open
from ._options import Durability as Durability
from ._options import Options as Options
from ._reader import Record as Record
from ._recovery import RecoveryReport as RecoveryReport
from ._sharded import ShardedLog as ShardedLog
from ._sharded import open_sharded as open_sharded
from ._sharded_read import ShardedReader as ShardedReader
from ._sharded_read import ShardRecord as ShardRecord

__version__ = "0.1.0"

__all__ = (
    "FORMAT_VERSION",
    "AsyncReader",
    "Checkpoint",
    "CorruptLogError",
    "DivergedError",
    "Durability",
    "FileKind",
    "FileOps",
    "LockState",
    "Log",
    "LogClosedError",
    "LogFailedError",
    "LogLockedError",
    "NoFreeShardError",
    "NotRegularFileError",
    "Options",
    "OsFileOps",
    "Record",
    "RecordTooLargeError",
    "RecoveryReport",
    "ReplicationError",
    "ReplicationTimeoutError",
    "ShardRecord",
    "ShardedLog",
    "ShardedReader",
    "Stats",
    "StreamMismatchError",
    "TruncatedError",
    "WALError",
    "WrongEventLoopError",
    "WrongProcessError",
    "__version__",
    "open",
    "open_sharded",
)
