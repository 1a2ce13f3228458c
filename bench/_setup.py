"""``python -m bench --setup``: install what the peers need, so the benchmark runs on a fresh machine.

Python packages go into the interpreter running the benchmark (``sys.executable -m pip``);
``redis-server`` and ``redis-benchmark`` come from the distribution (Debian/Ubuntu ``apt-get``),
installed only if missing. Every command is printed before it runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

__all__ = ("PIP_PACKAGES", "missing_python_packages", "missing_tools", "setup")

#: Python packages of the peers and of the report (import name -> pip requirement).
PIP_PACKAGES: dict[str, str] = {
    "aiosqlite": "aiosqlite>=0.20",
    "redis": "redis>=5.3",
    "matplotlib": "matplotlib>=3.8",
    "uvloop": "uvloop>=0.19",
    "aiofiles": "aiofiles>=23.2",
    "pyinstrument": "pyinstrument>=4.6",
    "httptools": "httptools>=0.6",  # bench http: uvicorn's fast HTTP parser, as uvicorn[standard]
}

#: Executables of the peers (name -> Debian package providing it): Redis, and wrk for bench http.
TOOLS: dict[str, str] = {
    "redis-server": "redis-server",
    "redis-benchmark": "redis-tools",
    "wrk": "wrk",  # bench http
}


def missing_python_packages() -> list[str]:
    """Import names from :data:`PIP_PACKAGES` that cannot be found."""
    import importlib.util

    return [name for name in PIP_PACKAGES if importlib.util.find_spec(name) is None]


def missing_tools() -> list[str]:
    """Executables from :data:`TOOLS` that are not on ``PATH``."""
    return [name for name in TOOLS if shutil.which(name) is None]


def _run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)


def setup() -> int:
    """Install missing peers. :return: a process exit code."""
    packages = missing_python_packages()
    if packages:
        _run([sys.executable, "-m", "pip", "install", *(PIP_PACKAGES[p] for p in packages)])
    else:
        print("python packages: all present (" + ", ".join(PIP_PACKAGES) + ")")

    tools = missing_tools()
    if tools:
        apt = shutil.which("apt-get")
        if apt is None:
            print(
                "error: missing " + ", ".join(tools) + " and no apt-get here; install Redis >= 6 "
                "(redis-server and redis-benchmark) with your package manager",
                file=sys.stderr,
            )
            return 1
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        _run([*sudo, apt, "update"], env=env)
        debs = sorted({TOOLS[t] for t in tools})
        # --no-install-recommends: no init scripts' extras. The benchmark starts its own
        # redis-server on a free port; a packaged service on 6379 (if the package starts one)
        # is left alone.
        _run([*sudo, apt, "install", "-y", "--no-install-recommends", *debs], env=env)
        still = missing_tools()
        if still:
            print("error: still missing after apt-get: " + ", ".join(still), file=sys.stderr)
            return 1
    else:
        print("tools: all present (" + ", ".join(TOOLS) + ")")
    print("setup complete")
    return 0
