"""A log inherited by a child process through fork() is disowned there: every call raises
WrongProcessError, the child never writes to the parent's files, and it does not keep the
parent's directory lock alive. (The fork happens in a child interpreter of the test, so the
pytest process itself never forks with threads running.)"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork()")

_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, os, sys
    import asyncwal

    path = sys.argv[1]

    async def parent_part():
        log = await asyncwal.open(path)
        await log.append(b"before fork")
        return log

    loop = asyncio.new_event_loop()
    log = loop.run_until_complete(parent_part())
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a new loop, the inherited log object
        os.close(r)
        out = {}
        async def child_part():
            for name, call in (
                ("append", lambda: log.append(b"from the child")),
                ("sync", lambda: log.sync()),
                ("wait_for", lambda: log.wait_for(1)),
                ("replay", lambda: log.replay().__anext__()),
            ):
                try:
                    await call()
                    out[name] = "no error"
                except Exception as exc:
                    out[name] = type(exc).__name__
            await log.close()  # a no-op in the child: nothing of the log belongs to it
            out["closed_ok"] = True
            out["repr"] = repr(log)
        asyncio.new_event_loop().run_until_complete(child_part())
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    child = json.loads(os.read(r, 65536).decode())

    async def after():
        seq = await log.append(b"after the child exited")
        lock = open(os.path.join(path, "LOCK")).read().strip()
        try:
            other = await asyncwal.open(path)
        except asyncwal.LogLockedError:
            still_locked = True
        else:
            await other.close()
            still_locked = False
        await log.close()
        reopened = await asyncwal.open(path)
        records = [r.data.decode() async for r in reopened.replay()]
        await reopened.close()
        return {"seq": seq, "lock": lock, "still_locked": still_locked, "records": records}

    print(json.dumps({"child": child, "parent": loop.run_until_complete(after()), "pid": os.getpid()}))
    """
)


def test_a_log_used_in_a_forked_child_raises_and_leaves_the_parent_alone(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path / "wal")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    child, parent = result["child"], result["parent"]
    for name in ("append", "sync", "wait_for", "replay"):
        assert child[name] == "WrongProcessError", (name, child)
    assert child["closed_ok"]
    assert "forked" in child["repr"]
    # The parent's log is untouched: it appends on, still holds its lock with its own pid,
    # and the child wrote nothing.
    assert parent["seq"] == 2
    assert parent["lock"] == str(result["pid"])
    assert parent["still_locked"]
    assert parent["records"] == ["before fork", "after the child exited"]
