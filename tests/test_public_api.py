"""The public surface: what `import asyncwal` offers, and nothing private leaks."""

from __future__ import annotations

import inspect

import asyncwal


def test_all_is_exactly_the_public_names() -> None:
    # Submodules (testing, cli, integrations) appear as attributes once imported: not names.
    names = (n for n in dir(asyncwal) if not n.startswith("_"))
    public = {n for n in names if not inspect.ismodule(getattr(asyncwal, n))}
    assert set(asyncwal.__all__) - {"__version__"} == public
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
        asyncwal.WrongProcessError,
        asyncwal.TruncatedError,
    ):
        assert issubclass(exc, asyncwal.WALError)
    assert issubclass(asyncwal.RecordTooLargeError, ValueError)
    assert issubclass(asyncwal.WrongEventLoopError, RuntimeError)
    assert issubclass(asyncwal.WrongProcessError, RuntimeError)


def test_durability_is_ordered() -> None:
    d = asyncwal.Durability
    assert d.MEMORY < d.OS < d.DISK < d.REPLICATED
