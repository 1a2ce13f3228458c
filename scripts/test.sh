#!/usr/bin/env bash
# The whole test suite: install asyncwal with its test dependencies in .venv, run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,lint]'
exec .venv/bin/python -m pytest "${@}"
