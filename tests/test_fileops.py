"""The real file operations seen through the public API: a hostile LOCK file, a platform
without ``fcntl``, and the rule that only the file-operations modules touch the OS's files."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import asyncwal
from asyncwal._fileops import FileKind, NotRegularFileError

PACKAGE = Path(asyncwal.__file__).parent


def _chain(exc: BaseException | None) -> list[BaseException]:
    """``exc`` and its causes (an asyncwal error may wrap the OSError)."""
    out = []
    while exc is not None:
        out.append(exc)
        exc = exc.__cause__
    return out


def _not_regular(exc: BaseException) -> NotRegularFileError:
    found = [e for e in _chain(exc) if isinstance(e, NotRegularFileError)]
    assert found, f"{exc!r} does not say the name is not a regular file"
    return found[0]


async def test_open_refuses_a_lock_that_is_a_symlink_and_leaves_its_target_alone(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    d.mkdir()
    target = tmp_path / "precious.txt"
    target.write_bytes(b"somebody's data\n")
    (d / "LOCK").symlink_to(target)
    with pytest.raises((OSError, asyncwal.WALError)) as info:
        await asyncwal.open(d)
    err = _not_regular(info.value)
    assert err.kind is FileKind.SYMLINK
    assert err.filename == str(d / "LOCK")
    assert "symbolic link" in str(err)
    assert target.read_bytes() == b"somebody's data\n"
    assert (d / "LOCK").is_symlink()
    assert sorted(p.name for p in d.iterdir()) == ["LOCK"]  # nothing else was created


async def test_open_refuses_a_lock_that_is_a_fifo_without_waiting(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    d.mkdir()
    os.mkfifo(d / "LOCK")
    with pytest.raises((OSError, asyncwal.WALError)) as info:
        await asyncwal.open(d)  # would hang in open(2) without O_NONBLOCK (pytest's timeout)
    assert "FIFO" in str(_not_regular(info.value))


def test_import_asyncwal_without_fcntl(tmp_path: Path) -> None:
    """Where ``fcntl`` does not exist, ``import asyncwal`` works, a log in memory works, and
    opening one on the real file system fails at the lock with a clear error."""
    code = textwrap.dedent(
        """
        import asyncio
        import importlib.abc
        import sys

        class NoFcntl(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "fcntl":
                    raise ImportError("no fcntl on this platform")
                return None

        sys.modules.pop("fcntl", None)
        sys.meta_path.insert(0, NoFcntl())

        import asyncwal
        import asyncwal.testing

        assert asyncwal.OsFileOps.__name__ == "OsFileOps"

        async def main(path):
            async with asyncwal.open("/m/wal", file_ops=asyncwal.testing.MemoryFileOps()) as log:
                assert await log.append(b"x") == 1
            try:
                await asyncwal.open(path)
            except OSError as exc:
                print("refused:", exc)

        asyncio.run(main(sys.argv[1]))
        assert "fcntl" not in sys.modules, "fcntl was imported"
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "wal")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout
    assert "fcntl.flock" in done.stdout


# -- only the seam touches files ------------------------------------------------------------------

#: Modules that implement the seam and may call ``os``/``fcntl`` on files.
_SEAM = {
    "_fileops.py",
    "_fileops_regular.py",
    "_fileops_posix.py",
    "_fileops_wrappers.py",
    "_fileops_dryrun.py",
}
#: Modules that still do (their owners are moving them onto the seam): each should leave this set.
_NOT_YET_ON_THE_SEAM: set[str] = set()
#: Calls allowed outside the seam because they are not about files of a log: the command line
#: points a closed pipe's standard output at /dev/null so that exiting cannot fail again.
_NOT_LOG_FILES = {"cli/__init__.py": ["os.open() line", "os.dup2() line", "os.close() line"]}
#: ``os`` functions that touch files or directories (``os.path.join`` and friends do not).
_FILE_CALLS = {
    "open", "close", "read", "write", "pread", "pwrite", "pwritev", "preadv", "fsync", "fdatasync",
    "ftruncate", "truncate", "fstat", "stat", "lstat", "listdir", "scandir", "unlink", "remove",
    "rename", "replace", "makedirs", "mkdir", "rmdir", "symlink", "readlink", "mkfifo", "dup2",
    "path.exists", "path.lexists", "path.getsize", "path.isfile", "path.isdir", "path.islink",
}  # fmt: skip


def _file_calls(source: str) -> list[str]:
    """``os.X`` file calls, builtin ``open(...)`` calls and ``fcntl`` imports in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"import {n}" for n in names if n.split(".")[0] == "fcntl"]
        elif isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name.startswith("os.") and name[3:] in _FILE_CALLS:
                found.append(f"{name}() line {node.lineno}")
            elif name == "open":
                found.append(f"open() line {node.lineno}")
    return found


def test_only_the_seam_touches_files() -> None:
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.name in _SEAM or rel.parts[0] in ("testing", *_NOT_YET_ON_THE_SEAM):
            continue
        allowed = _NOT_LOG_FILES.get(str(rel), [])
        calls = [c for c in _file_calls(path.read_text()) if not any(c.startswith(a) for a in allowed)]
        if calls:
            offenders[str(rel)] = calls
    assert not offenders, f"file operations outside the FileOps seam: {offenders}"


def test_the_file_call_finder_finds_them() -> None:
    src = "import os, fcntl\nos.open('x', 0)\nos.path.join('a', 'b')\nopen('f')\nos.path.exists('p')\n"
    found = ["import fcntl", "os.open() line 2", "open() line 4", "os.path.exists() line 5"]
    assert _file_calls(src) == found
