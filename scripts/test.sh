#!/usr/bin/env bash
# Install everything the test suite needs (Python pins + Debian's Chromium for browser tests), check
# lint, format and types, then run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -e .
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    fi
fi
# Lint, format and types first (seconds), so a style or type error fails fast.
python -m ruff check .
python -m ruff format --check .
python -m mypy
python -m pytest -q -p no:cacheprovider "$@"
