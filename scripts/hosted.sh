#!/usr/bin/env bash
# Start percviz as a shared lab demo: hosted limits plus a locked-down Streamlit profile.
# Put it behind a reverse proxy (see README, "Hosted mode"); pass extra flags such as --server.port.
# Streamlit's /_stcore/metrics cannot be switched off: the README's proxy configuration closes it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PERCVIZ_HOSTED=1
# Few malloc arenas: sessions run in many threads, and memory freed in one arena is not reused by
# the others, so RSS ratchets up after bursts of sessions (measured: x1.10-1.13 vs x1.03 with 2).
export MALLOC_ARENA_MAX=2
exec python -m streamlit run app.py \
    --server.headless=true \
    --server.address=127.0.0.1 \
    --server.maxUploadSize=5 \
    --server.maxMessageSize=50 \
    --server.enableXsrfProtection=true \
    --server.enableCORS=true \
    --server.enableStaticServing=false \
    --server.fileWatcherType=none \
    --server.disconnectedSessionTTL=30 \
    --client.showErrorDetails=none \
    --client.toolbarMode=viewer \
    --browser.gatherUsageStats=false \
    "$@"
