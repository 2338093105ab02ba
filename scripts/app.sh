#!/usr/bin/env bash
# Install the runtime pins and start the app (offline: the bundled EfficientNet-Lite0 needs no download).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -r requirements.txt -e .
exec python -m streamlit run app.py "$@"
