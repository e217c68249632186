# GPU image of the app for a Hugging Face Docker Space (or any host with the NVIDIA
# container runtime): the page and the API on one port, vLLM Whisper on the GPU.
#
#   docker build -t rt-whisper .
#   docker run --gpus all -p 7860:7860 -e HF_TOKEN=hf_... rt-whisper
#
# PyPI's CUDA wheels of torch/vLLM bring their own CUDA libraries; the host provides the
# driver. gcc is there for Triton, which compiles small launchers at run time.
# No extra kernel packages (flashinfer-cubin / flashinfer-jit-cache): the attention backend
# is pinned per compute capability (engine/gpu.py) to FLASH_ATTN, whose kernels are in the
# vLLM wheel, or TRITON_ATTN below 8.0 (compiled by the triton wheel's own compiler), so
# FlashInfer's JIT (which needs a CUDA compiler this image lacks) is never reached.
#
# Self-check of a fresh box or Space (under 10 min on a GPU; prints PASS/FAIL/SKIP per check):
#   docker run --gpus all rt-whisper python -m engine doctor
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential ca-certificates curl git \
 && rm -rf /var/lib/apt/lists/*

# Spaces run the container as user 1000. DEVICE=cuda: no usable GPU stops the start with the
# cause (engine/gpu.py), never a silent CPU start (ENGINE=remote never reads it). HF_HOME is left
# unset: on a Space with persistent storage the app puts it, and VLLM_CACHE_ROOT, under /data
# (engine/runtime_env.py); elsewhere it is ~/.cache/huggingface. Usage statistics off
# (vllm/usage/usage_lib.py reads VLLM_NO_USAGE_STATS / DO_NOT_TRACK).
RUN useradd -m -u 1000 user
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MODEL_CACHE=/home/user/.cache/rt-whisper \
    DEVICE=cuda \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    VLLM_WORKER_MULTIPROC_METHOD=spawn \
    GRADIO_ANALYTICS_ENABLED=False \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860
WORKDIR /home/user/app

# Same install as scripts/setup.sh for a GPU machine: the app's requirements and vLLM's
# runtime dependencies within Gradio 5's limits, then vLLM itself without its clashing pins.
COPY requirements/ requirements/
RUN pip install --no-cache-dir --upgrade pip \
 && pip install --no-cache-dir -r requirements/app.txt -r requirements/vllm-runtime.txt -r requirements/gpu.txt \
 && pip install --no-cache-dir --no-deps vllm==0.32.0 \
 && pip install --no-cache-dir --no-deps silero-vad==6.2.3 \
 && pip install --no-cache-dir --no-deps pipecat-ai==1.14.0 \
 && pip install --no-cache-dir --no-deps resemblyzer==0.1.4

COPY --chown=user . .
# The app itself, in development mode and without dependencies, only for its
# vllm.general_plugins entry point (pyproject.toml): vLLM's engine core runs in a spawned
# child process on a GPU and learns the bucketed-encoder Whisper from it.
RUN pip install --no-cache-dir --no-deps -e . && rm -rf build *.egg-info
USER user

EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s CMD curl -fsS http://127.0.0.1:7860/health || exit 1
CMD ["python", "app.py"]
