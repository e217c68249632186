#!/usr/bin/env bash
# Sets up .venv with the test tools if needed, then runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh --test
exec .venv/bin/python -m pytest "$@"
