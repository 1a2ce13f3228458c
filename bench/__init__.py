"""asyncwal's benchmark suite: ``python -m bench --help``.

Measures asyncwal's three modes against the raw physics of the disk, what an asyncio user
writes by hand, SQLite (aiosqlite) and Redis with an append-only file, side by side in one
run, each cell in a fresh interpreter. See docs/benchmarks.md.
"""

__all__ = ()
