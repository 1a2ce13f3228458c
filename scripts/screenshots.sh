#!/usr/bin/env bash
# Build the documentation site and look at every page as a reader at 1280 px does: full-page
# screenshots in headless Chromium, plus a list of cut-off code blocks, over-wide tables and
# code broken mid-word (scripts/site_check.py). Exits 1 if a page has such a problem.
#
#   bash scripts/screenshots.sh [OUT]     # PNGs in OUT (default build/screenshots)
#
# Installs what it needs if missing: Debian's chromium (apt-get, as root) and the Playwright
# driver (pip, into .venv; it drives the system Chromium, it downloads no browser).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-build/screenshots}"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! command -v chromium > /dev/null; then
    echo "installing chromium (apt-get)..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null
fi
if ! .venv/bin/python -c "import playwright, mkdocs" 2> /dev/null; then
    echo "installing playwright and the docs extra into .venv (pip)..."
    .venv/bin/python -m pip install -q playwright -e '.[docs]'
fi
site="$(mktemp -d)"
trap 'rm -rf "$site"' EXIT
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$site"
.venv/bin/python scripts/site_check.py "$site" --out "$out"
