"""Test doubles for the file-operations seam (:class:`asyncwal.FileOps`).

Like ``trio.testing`` or httpx's ``MockTransport``, this package is public so that users of
asyncwal can test their own code against a log that lives in memory, that fails on cue, or
that loses power at any instant. Each double plugs into the ``file_ops`` option of
:func:`asyncwal.open`.

:class:`MemoryFileOps` (:mod:`asyncwal.testing.memory`)
    An in-memory file system with POSIX semantics.
:class:`FaultyFileOps`, :class:`Fault`, :class:`Gate` (:mod:`asyncwal.testing.faults`)
    A wrapper over another FileOps that fails, writes short, or parks chosen calls.
:class:`PowerLossFileOps`, :class:`CrashState` (:mod:`asyncwal.testing.powerloss`)
    A MemoryFileOps that records every change and builds what a power cut after any of them
    could leave on disk.
"""

from .faults import Fault as Fault
from .faults import FaultyFileOps as FaultyFileOps
from .faults import Gate as Gate
from .memory import MemoryFileOps as MemoryFileOps
from .powerloss import CrashState as CrashState
from .powerloss import PowerLossFileOps as PowerLossFileOps

__all__ = ("CrashState", "Fault", "FaultyFileOps", "Gate", "MemoryFileOps", "PowerLossFileOps")
