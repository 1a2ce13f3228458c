"""The public surface: what `import asyncwal` offers, and nothing private leaks."""

from __future__ import annotations

import asyncwal


def test_all_is_exactly_the_public_names() -> None:
    public = {name for name in dir(asyncwal) if not name.startswith("_")}
    modules = {"testing"}  # submodules appear once imported
    assert set(asyncwal.__all__) - {"__version__"} == public - modules
    for name in asyncwal.__all__:
        obj = getattr(asyncwal, name)
        if hasattr(obj, "__module__") and name != "open":
            assert obj.__module__.startswith("asyncwal"), name


def test_exception_tree() -> None:
    for exc in (
        asyncwal.LogClosedError,
        asyncwal.LogFailedError,
        asyncwal.CorruptLogError,
        asyncwal.LogLockedError,
        asyncwal.RecordTooLargeError,
        asyncwal.WrongEventLoopError,
        asyncwal.TruncatedError,
    ):
        assert issubclass(exc, asyncwal.WALError)
    assert issubclass(asyncwal.RecordTooLargeError, ValueError)
    assert issubclass(asyncwal.WrongEventLoopError, RuntimeError)


def test_durability_is_ordered() -> None:
    assert asyncwal.Durability.MEMORY < asyncwal.Durability.OS < asyncwal.Durability.DISK
