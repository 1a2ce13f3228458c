"""What a name in a directory is, and opening only regular files: the guard of the seam against
a hostile directory.

:func:`open_regular` never follows a symbolic link (``O_NOFOLLOW``), never blocks on a FIFO
(``O_NONBLOCK``, cleared once the descriptor is known to be a regular file) and never keeps a
device open: it checks the descriptor with ``fstat`` and refuses anything but a regular file
with :class:`NotRegularFileError`, naming the path and what it is. :func:`kind_of` answers
from ``lstat``, without following or opening anything. Only ``os`` is used (no ``fcntl``).
"""

from __future__ import annotations

import enum
import errno
import os
import stat
from typing import Final

__all__ = ("FileKind", "NotRegularFileError", "kind_of", "open_regular")

# Flags of every open: never follow a symbolic link in the last component, never block on a
# FIFO (O_NONBLOCK is cleared again once the descriptor is known to be a regular file).
_O_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK: Final = getattr(os, "O_NONBLOCK", 0)
_SAFE_OPEN: Final = _O_CLOEXEC | _O_NOFOLLOW | _O_NONBLOCK
# Errors an open of a name that is not a regular file can give (ELOOP: a symbolic link under
# O_NOFOLLOW; EISDIR: a directory opened for writing; ENXIO/EOPNOTSUPP: a socket, a FIFO with
# no reader opened for writing, a device without a driver).
_NOT_REGULAR_ERRNOS: Final = frozenset(
    {errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.EOPNOTSUPP, errno.ENODEV}
)


class FileKind(enum.Enum):
    """What a name in a directory is, found without following or opening it (``lstat``)."""

    REGULAR = "regular file"
    DIRECTORY = "directory"
    SYMLINK = "symbolic link"
    OTHER = "FIFO, device or socket"
    MISSING = "missing"


class NotRegularFileError(OSError):
    """A name that must be a regular file is something else; it was not followed or changed.

    :ivar kind: what the name is (never ``REGULAR`` or ``MISSING``)
    :ivar filename: the path
    """

    def __init__(self, path: str, kind: FileKind, what: str | None = None) -> None:
        """:param what: a more precise description than the kind's (e.g. "FIFO")."""
        codes = {FileKind.SYMLINK: errno.ELOOP, FileKind.DIRECTORY: errno.EISDIR}
        code = codes.get(kind, errno.EINVAL)
        super().__init__(code, f"a {what or kind.value}, not a regular file", path)
        self.kind: Final = kind
        self.what: Final = what or kind.value

    def __reduce__(self) -> tuple[type[NotRegularFileError], tuple[str, FileKind, str]]:
        return type(self), (str(self.filename), self.kind, self.what)


def _kind_of_mode(mode: int) -> tuple[FileKind, str]:
    """The kind of an ``st_mode``, and its precise name."""
    if stat.S_ISREG(mode):
        return FileKind.REGULAR, FileKind.REGULAR.value
    if stat.S_ISDIR(mode):
        return FileKind.DIRECTORY, FileKind.DIRECTORY.value
    if stat.S_ISLNK(mode):
        return FileKind.SYMLINK, FileKind.SYMLINK.value
    if stat.S_ISFIFO(mode):
        return FileKind.OTHER, "FIFO"
    if stat.S_ISCHR(mode):
        return FileKind.OTHER, "character device"
    if stat.S_ISBLK(mode):
        return FileKind.OTHER, "block device"
    if stat.S_ISSOCK(mode):
        return FileKind.OTHER, "socket"
    return FileKind.OTHER, FileKind.OTHER.value  # pragma: no cover - doors, whiteouts


def kind_of(path: str) -> tuple[FileKind, str]:
    """What ``path`` is (never followed, never opened), and its precise name."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return FileKind.MISSING, FileKind.MISSING.value
    return _kind_of_mode(st.st_mode)


def open_regular(path: str, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that refuses (with NotRegularFileError) anything but a regular file: never
    follows a symbolic link, never blocks on a FIFO, never keeps a device open."""
    try:
        fd = os.open(path, flags | _SAFE_OPEN, mode)
    except OSError as exc:
        if exc.errno in _NOT_REGULAR_ERRNOS:
            kind, what = kind_of(path)
            if kind not in (FileKind.REGULAR, FileKind.MISSING):
                raise NotRegularFileError(path, kind, what) from None
        raise
    try:
        st_mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(st_mode):
            kind, what = _kind_of_mode(st_mode)
            raise NotRegularFileError(path, kind, what)
        if _O_NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd
