"""Power cuts at any point of a run: :class:`PowerLossFileOps` and its :class:`CrashState`.

A :class:`~asyncwal.testing.MemoryFileOps` that records every create, write, truncate, sync,
rename, unlink and directory sync, and afterwards builds the files a power cut after any of
them could leave: ``image(at, rng)``, ``durable_image(at)``, ``crash(at, rng)`` (a
MemoryFileOps to reopen the log on), and ``states()`` to visit every crash point in one
pass. The crash model, deterministic given ``rng``:

* bytes covered by a completed ``sync`` of their file always survive, with its size;
* unsynced writes and truncates of a file survive as a prefix (the last one possibly cut
  short), or torn per 512-byte sector: each touched sector old or new, or, rarely, garbage
  in the bytes that were written there (never outside them: "powersafe overwrite"), with
  the old or the new size;
* a name created, renamed or unlinked since the last ``sync_dir`` of its directory has any
  of the bindings it had since then, independently of the other names (a rename may be
  lost, half-done, or leave both names); directories themselves always survive.

asyncwal's own crash campaigns (``python -m bench.crash_campaign``) reopen the real engine
on these images.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Final

from ._common import Create, Event, Rename, Sync, SyncDir, Truncate, Unlink, Write, parent
from .memory import MemoryFileOps

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

__all__ = ("CrashState", "PowerLossFileOps")


#: Probability that a torn sector holds garbage instead of the old or the new bytes.
_GARBAGE_P: Final = 0.05


class _FileState:
    """One inode in the crash model: what is durable, and what happened since.

    Invariant: applying ``pending`` in order to ``durable`` gives ``current``; ``touched``
    (written ranges) and ``resized`` (ranges a truncate dropped or added) together hold
    every byte range that ``pending`` may have changed.
    """

    __slots__ = ("current", "durable", "pending", "resized", "touched")

    def __init__(self) -> None:
        self.durable = bytearray()
        self.current = bytearray()
        self.pending: list[tuple[int, bytes] | int] = []  # (offset, data) writes; int: truncate
        self.touched: list[tuple[int, int]] = []
        self.resized: list[tuple[int, int]] = []

    def write(self, offset: int, data: bytes) -> None:
        _apply_write(self.current, offset, data)
        self.pending.append((offset, data))
        self.touched.append((offset, offset + len(data)))

    def truncate(self, size: int) -> None:
        old = len(self.current)
        _apply_truncate(self.current, size)
        self.pending.append(size)
        if old != size:
            self.resized.append((min(old, size), max(old, size)))

    def sync(self) -> None:
        if self.pending:
            self.durable = bytearray(self.current)
            self.pending = []
            self.touched = []
            self.resized = []

    def sample(self, rng: random.Random, sector: int) -> bytes:
        """Contents after a power cut: durable bytes always; unsynced ones in part or torn."""
        if not self.pending:
            return bytes(self.durable)
        if rng.random() < 0.5:
            # Prefix: the first k unsynced operations reached the disk, then part of the next.
            k = rng.randint(0, len(self.pending))
            buf = bytearray(self.durable)
            for op in self.pending[:k]:
                _apply(buf, op)
            if k < len(self.pending):
                op = self.pending[k]
                if not isinstance(op, int) and op[1]:
                    cut = rng.randint(0, len(op[1]))
                    if cut:
                        _apply_write(buf, op[0], op[1][:cut])
            return bytes(buf)
        # Torn: every touched sector independently holds its old bytes, its new bytes or
        # (rarely) garbage in the bytes that were written; the size is the old or the new one.
        # Bytes outside every unsynced write are never damaged ("powersafe overwrite"), and
        # bytes that only a truncate changed are old or new (zeros), never garbage.
        old, new = self.durable, self.current
        n = max(len(old), len(new))
        out = bytearray(old)
        out.extend(bytes(n - len(out)))
        new_ext = bytes(new) + bytes(n - len(new))
        p_new = rng.random()
        ranges = _merge(self.touched, n)
        for s in _sectors(_merge(self.touched + self.resized, n), sector):
            lo, hi = s * sector, min((s + 1) * sector, n)
            x = rng.random()
            if x < _GARBAGE_P:
                for a, b in ranges:
                    a, b = max(a, lo), min(b, hi)
                    if a < b:
                        out[a:b] = rng.randbytes(b - a)
            elif x < p_new:
                out[lo:hi] = new_ext[lo:hi]
        size = rng.choice((len(old), len(new)))
        _apply_truncate(out, size)
        return bytes(out)


def _apply_write(buf: bytearray, offset: int, data: bytes) -> None:
    if offset > len(buf):
        buf.extend(bytes(offset - len(buf)))
    buf[offset : offset + len(data)] = data


def _apply_truncate(buf: bytearray, size: int) -> None:
    if size < len(buf):
        del buf[size:]
    else:
        buf.extend(bytes(size - len(buf)))


def _apply(buf: bytearray, op: tuple[int, bytes] | int) -> None:
    if isinstance(op, int):
        _apply_truncate(buf, op)
    else:
        _apply_write(buf, op[0], op[1])


def _merge(ranges: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """Sorted, disjoint ranges covering ``ranges`` clipped to ``[0, limit)``."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        b = min(b, limit)
        if a >= b:
            continue
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _sectors(ranges: list[tuple[int, int]], sector: int) -> list[int]:
    """Indexes of the sectors that intersect the sorted, disjoint ``ranges``, ascending."""
    out: list[int] = []
    for a, b in ranges:
        first = max(a // sector, out[-1] + 1 if out else 0)
        out.extend(range(first, (b - 1) // sector + 1))
    return out


class CrashState:
    """The crash model after some prefix of a :class:`PowerLossFileOps` run.

    :meth:`sample` draws one on-disk image a power cut at that moment could leave;
    :meth:`durable` is the worst case without tearing (only synced data, only directory
    entries made durable by ``sync_dir``). A state from :meth:`PowerLossFileOps.states`
    is only valid until that iterator advances.
    """

    def __init__(self, sector_size: int) -> None:
        self._sector = sector_size
        self._files: dict[int, _FileState] = {}
        self._durable_names: dict[str, int] = {}
        self._current_names: dict[str, int] = {}
        # Names changed since their directory's last sync_dir: every binding they have had
        # since then, oldest first, starting with the durable one (None = no such name).
        self._history: dict[str, list[int | None]] = {}

    def _bind(self, path: str, ino: int | None) -> None:
        hist = self._history.setdefault(path, [self._durable_names.get(path)])
        hist.append(ino)
        if ino is None:
            self._current_names.pop(path, None)
        else:
            self._current_names[path] = ino

    def apply(self, event: Event) -> None:
        """Advance the model by one recorded operation."""
        match event:
            case Create(path, ino):
                self._files[ino] = _FileState()
                self._bind(path, ino)
            case Write(ino, offset, data):
                self._files[ino].write(offset, data)
            case Truncate(ino, size):
                self._files[ino].truncate(size)
            case Sync(ino):
                self._files[ino].sync()
            case Rename(src, dst, ino):
                self._bind(dst, ino)
                self._bind(src, None)
            case Unlink(path, _):
                self._bind(path, None)
            case SyncDir(directory):
                for path in [p for p in self._history if parent(p) == directory]:
                    del self._history[path]
                    bound = self._current_names.get(path)
                    if bound is None:
                        self._durable_names.pop(path, None)
                    else:
                        self._durable_names[path] = bound

    def settle(self) -> None:
        """Make everything durable, as after a clean shutdown with every fsync done."""
        for f in self._files.values():
            f.sync()
        for directory in {parent(p) for p in self._history}:
            self.apply(SyncDir(directory))

    def sample(self, rng: random.Random) -> dict[str, bytes]:
        """One image a power cut could leave: ``{path: contents}`` of every file.

        Per file: everything synced survives; the unsynced operations survive as a prefix
        (the last one possibly cut short), or torn per sector (old bytes, new bytes or, with
        probability 5%, garbage in the written bytes of that sector) with the old or new size;
        bytes dropped by an unsynced shrinking truncate may read back as zeros.
        Per name changed since its directory's last ``sync_dir``: any binding it has had
        since then (so a create, rename or unlink may or may not be on disk, independently
        for each name). Deterministic given the state of ``rng``.
        """
        names = set(self._durable_names) | set(self._history)
        chosen: dict[str, int] = {}
        for path in sorted(names):
            hist = self._history.get(path)
            if hist is None:
                chosen[path] = self._durable_names[path]
                continue
            options = list(dict.fromkeys(hist))  # distinct bindings, in order
            ino = rng.choice(options)
            if ino is not None:
                chosen[path] = ino
        contents: dict[int, bytes] = {}
        image: dict[str, bytes] = {}
        for path, ino in chosen.items():
            if ino not in contents:
                contents[ino] = self._files[ino].sample(rng, self._sector)
            image[path] = contents[ino]
        return image

    def durable(self) -> dict[str, bytes]:
        """The image holding only synced data under only directory-synced names."""
        return {p: bytes(self._files[ino].durable) for p, ino in sorted(self._durable_names.items())}

    def unsynced(self) -> bool:
        """True if some data or directory entry is not yet durable (a sample may differ)."""
        return bool(self._history) or any(f.pending for f in self._files.values())


class PowerLossFileOps(MemoryFileOps):
    """A :class:`MemoryFileOps` that records every change so power cuts can be simulated.

    Recorded operations (each one is a *crash point*): file creation (``open`` with
    ``create``, ``lock``), ``pwrite``, ``truncate``, ``sync``, ``rename``, ``unlink`` and
    ``sync_dir``. The live file system behaves exactly like :class:`MemoryFileOps` (no
    crash); a crash is simulated afterwards, for any prefix of the run:

    * :meth:`image` ``(at, rng)``: the files a power cut right after the first ``at``
      operations could leave, drawn with ``rng`` (see :meth:`CrashState.sample` for the
      model: synced data always survives; unsynced data survives as a prefix or torn per
      ``sector_size`` sector, possibly with garbage in a torn sector; a create, rename or
      unlink not yet covered by ``sync_dir`` of its directory may or may not be on disk).
      ``at`` runs from 0 (nothing happened) to :meth:`crash_points` (after the last one).
    * :meth:`durable_image`: the worst case without tearing (LevelDB's "state as of the last
      sync").
    * :meth:`crash`: a fresh :class:`MemoryFileOps` holding an image and every directory, to
      reopen the real engine on.
    * :meth:`states`: every crash point in one pass, for campaigns (replaying to each point
      from scratch with :meth:`image` is quadratic).
    * :meth:`describe`: the operation at a crash point, for failure messages.

    Model limits: directories are always durable; ``sync`` is ``fdatasync`` and covers the
    file's data and size but not its name; bytes outside an unsynced write are never damaged.
    Everything is deterministic given the random generators passed in.

    :param image: files (``{path: contents}``) present and durable before the run, e.g. an
        image from an earlier crash. Their directories are created.
    :param sector_size: the unit of torn writes, bytes.
    """

    def __init__(self, image: Mapping[str, bytes] | None = None, *, sector_size: int = 512) -> None:
        if sector_size <= 0:
            raise ValueError("sector_size must be positive")
        self._events: list[Event] = []
        self._paths_of: dict[int, str] = {}  # ino -> its current path
        self._event_paths: list[str] = []  # per event: the path of its file then, for describe()
        self.sector_size: Final = sector_size
        super().__init__()
        for path, data in (image or {}).items():
            self.write_bytes(path, data)
        self._start: Final = len(self._events)  # events before this are the durable baseline

    def _event(self, event: Event) -> None:
        self._events.append(event)
        if isinstance(event, Create):
            self._paths_of[event.ino] = event.path
        elif isinstance(event, Rename):
            self._paths_of[event.ino] = event.dst
        ino = getattr(event, "ino", None)
        self._event_paths.append(self._paths_of.get(ino, f"inode {ino}") if isinstance(ino, int) else "")

    def _snapshot_events(self) -> list[Event]:
        with self._mutex:
            return list(self._events)

    def crash_points(self) -> int:
        """Number of operations recorded since construction (``image(at)`` takes 0..this)."""
        with self._mutex:
            return len(self._events) - self._start

    def describe(self, at: int) -> str:
        """A readable description of the ``at``-th operation (1-based): the last one before
        a crash at ``at``."""
        if at == 0:
            return "before the first operation"
        with self._mutex:
            event = self._events[self._start + at - 1]
            path_then = self._event_paths[self._start + at - 1]
        match event:
            case Write(_, offset, data):
                return f"#{at} pwrite {path_then} @{offset} +{len(data)}"
            case Truncate(_, size):
                return f"#{at} truncate {path_then} to {size}"
            case Sync(_):
                return f"#{at} sync {path_then}"
            case Create(path, _):
                return f"#{at} create {path}"
            case Rename(src, dst, _):
                return f"#{at} rename {src} -> {dst}"
            case Unlink(path, _):
                return f"#{at} unlink {path}"
            case SyncDir(path):
                return f"#{at} sync_dir {path}"
        raise AssertionError(event)  # pragma: no cover

    def _initial_state(self, events: list[Event]) -> CrashState:
        state = CrashState(self.sector_size)
        for event in events[: self._start]:
            state.apply(event)
        state.settle()
        return state

    def states(self, points: Iterable[int] | None = None) -> Iterator[tuple[int, CrashState]]:
        """Yield ``(at, state)`` for each crash point in ``points`` (ascending; default: all,
        0 to :meth:`crash_points`), replaying the run once.

        ``state.sample(rng)`` equals ``image(at, rng)`` for a generator in the same state.
        A yielded state is valid only until the iterator is advanced.
        """
        events = self._snapshot_events()
        total = len(events) - self._start
        wanted = range(total + 1) if points is None else points
        state = self._initial_state(events)
        done = 0
        for at in wanted:
            if not done <= at <= total:
                raise ValueError(f"crash point {at} out of order or out of range 0..{total}")
            for event in events[self._start + done : self._start + at]:
                state.apply(event)
            done = at
            yield at, state

    def state(self, at: int | None = None) -> CrashState:
        """The crash model after the first ``at`` operations (all of them if None)."""
        for _, state in self.states([self.crash_points() if at is None else at]):
            return state
        raise AssertionError("unreachable")  # pragma: no cover

    def image(self, at: int | None = None, rng: random.Random | None = None) -> dict[str, bytes]:
        """Files a power cut right after the first ``at`` operations could leave.

        :param at: crash point, 0..crash_points(); None means after everything
        :param rng: the source of every random choice; ``random.Random(0)`` if None
        :return: ``{path: contents}``
        """
        return self.state(at).sample(rng if rng is not None else random.Random(0))

    def durable_image(self, at: int | None = None) -> dict[str, bytes]:
        """Only the synced data of only the directory-synced names, at crash point ``at``."""
        return self.state(at).durable()

    def crash(self, at: int | None = None, rng: random.Random | None = None) -> MemoryFileOps:
        """A new :class:`MemoryFileOps` holding :meth:`image` ``(at, rng)`` and every directory
        of this file system (directories are always durable)."""
        return self.from_state(self.state(at), rng if rng is not None else random.Random(0))

    def from_state(self, state: CrashState, rng: random.Random) -> MemoryFileOps:
        """A new :class:`MemoryFileOps` with ``state.sample(rng)`` and every directory."""
        ops = MemoryFileOps.from_image(state.sample(rng))
        with self._mutex:
            dirs = sorted(self._dirs)
        for d in dirs:
            ops.makedirs(d)
        return ops
