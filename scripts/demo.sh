#!/usr/bin/env bash
# Main job: install asyncwal in .venv and measure its three sync modes on this disk.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[uvloop]'
exec .venv/bin/asyncwal bench "${@}"
