#!/usr/bin/env bash
# Main job: install asyncwal in .venv and measure its three sync modes on this disk.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "installing asyncwal and uvloop into .venv with pip (about 20 s the first time)..."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[uvloop]'
echo "measuring the three sync modes on this disk (asyncwal bench)..."
exec .venv/bin/asyncwal bench "${@}"
