"""The real app (`app.py`) in a subprocess on loopback, for the tests of its doors and limits.

`running_app(env)` starts `python app.py` with the given environment on a free port and
yields an `AppProcess`: its base URL, its pid (for /proc memory figures) and its log
(stdout and stderr, to check that secrets stay out of it). With `ENGINE=remote` and a
`MisbehavingServer` as the endpoint it starts in seconds and needs no vLLM.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx

from misbehaving_server import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class AppProcess:
    url: str
    process: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_mb(self) -> float:
        return _status_kb(self.pid, "VmRSS") / 1024

    def peak_rss_mb(self) -> float:
        return _status_kb(self.pid, "VmHWM") / 1024

    def reset_peak(self) -> None:
        """Start a new peak (VmHWM) from the current RSS (Linux: /proc/PID/clear_refs 5)."""
        with open(f"/proc/{self.pid}/clear_refs", "w") as f:
            f.write("5")


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@contextlib.contextmanager
def running_app(env: dict[str, str], *, startup_s: float = 300.0, args: list[str] | None = None) -> Iterator[AppProcess]:
    port = free_port()
    full_env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "TURN_PROVIDER": "none",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    log = tempfile.NamedTemporaryFile(prefix="rtw-app-", suffix=".log", delete=False)
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), *(args or [])], cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT
    )
    app = AppProcess(f"http://127.0.0.1:{port}", process, Path(log.name))
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"app.py exited with {process.returncode}:\n{app.log()[-4000:]}")
            try:
                if httpx.get(app.url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"app.py did not answer /health in {startup_s:.0f} s:\n{app.log()[-4000:]}")
            time.sleep(0.3)
        yield app
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        os.unlink(log.name)


def remote_env(endpoint_url: str, **extra: str) -> dict[str, str]:
    """Environment for the app on a fake remote endpoint (no vLLM: starts in seconds)."""
    return {
        "ENGINE": "remote",
        "ENDPOINT_URL": endpoint_url,
        "REMOTE_MODEL": "fake-whisper",
        "REMOTE_RETRIES": "0",
        "REMOTE_TIMEOUT_S": "60",
        **extra,
    }
