#!/usr/bin/env bash
# The whole test suite: install asyncwal with its test dependencies in .venv, run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "installing asyncwal and its test dependencies into .venv with pip..."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,lint]'
# The benchmark smoke test runs every peer, Redis included: install redis-server and
# redis-benchmark system-wide (apt-get, only if missing). Without root or apt the Redis cells
# are skipped with that reason.
echo "installing redis-server, redis-tools and wrk if missing (apt-get; log in .venv/bench-setup.log)..."
.venv/bin/python -m bench --setup > .venv/bench-setup.log 2>&1 || echo "note: bench --setup failed, see .venv/bench-setup.log"
exec .venv/bin/python -m pytest "${@}"
