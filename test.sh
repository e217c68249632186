#!/usr/bin/env bash
# Sets up .venv with the test tools if needed, then runs the tests: all three tiers by
# default (what CI runs), or what the arguments name:
#   ./test.sh                      everything: tests/unit, tests/integration, tests/e2e
#   ./test.sh tests/unit           the unit tier alone (no vLLM engine, about a minute)
#   ./test.sh -m "unit or e2e"     tiers by marker; any pytest arguments work
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh --test
exec .venv/bin/python -m pytest "$@"
