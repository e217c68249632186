#!/usr/bin/env bash
# Sets up .venv if needed, then starts the app (page + API on one port).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec .venv/bin/python app.py "$@"
