"""`python -m bench routers`: HAProxy vs nginx as the engine router, measured on loopback.

What the pool needs from its router, each measured against two fake engines (a minimal
HTTP server in this process that answers `/v1/audio/transcriptions` at once and fails on
cue), so the figures are the router's alone, not a decode's:

- overhead: p50 of (through the router - direct) over paired uploads of a 5 s FLAC-sized
  body (160 kB) and of the largest piece the app sends (a 30 s window as wav, 0.96 MB);
- retry: an engine that resets the connection after reading the upload, or answers 503:
  is the decode resent to the other engine (the client's own retries off)?
- a draining engine (its /health answers 503, it still answers decodes): does it stop
  getting new work?

HAProxy runs `deploy/haproxy.cfg` (the `engines` backend); nginx a config written here
with what open-source nginx offers for this (`proxy_next_upstream ... non_idempotent`,
passive `max_fails`; active health checks are nginx Plus only). A router that is not
installed is skipped. vLLM's own `vllm-router` 0.1.17 was left out by a probe, not here:
it answers 400 "Invalid JSON body" to the multipart upload and never forwards it
(BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.soak import free_port

HAPROXY_CFG = Path(__file__).resolve().parent.parent / "deploy" / "haproxy.cfg"
BODIES = {"5 s flac (160 kB)": 160_000, "30 s wav (0.96 MB)": 960_044}

NGINX_CONF = """daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    client_max_body_size 64m;
    client_body_buffer_size 1m;
    upstream engines {{
        least_conn;
        server 127.0.0.1:{e1} max_fails=1 fail_timeout=5s;
        server 127.0.0.1:{e2} max_fails=1 fail_timeout=5s;
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://engines;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering on;
            proxy_next_upstream error timeout invalid_header http_502 http_503 http_504 non_idempotent;
            proxy_next_upstream_tries 3;
            proxy_read_timeout 300s;
        }}
    }}
}}
"""


class FakeEngine:
    """A tiny HTTP/1.1 server on its own thread: POST answers `{"text": name}` after reading
    the body, or fails as told (`mode`: ok, reset, 503); GET /health answers `health`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.mode = "ok"
        self.health = 200
        self.decodes = 0
        self.port = free_port()
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"fake-{name}")
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                if "content-length" in headers:
                    await reader.readexactly(int(headers["content-length"]))
                if method == "GET":
                    status, body = (self.health, b'{"status": "ok"}') if path == "/health" else (404, b"{}")
                elif self.mode == "reset":
                    writer.transport.abort()  # RST, as a killed process's socket does
                    return
                elif self.mode == "503":
                    status, body = 503, b'{"error": {"message": "overloaded"}}'
                else:
                    self.decodes += 1
                    status, body = 200, json.dumps({"text": self.name}).encode()
                writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
        finally:
            self._writers.discard(writer)

    def close(self) -> None:
        """Stop listening and drop the router's kept-alive connections; the loop's thread
        is a daemon and idles until the process ends."""
        def _close() -> None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()

        self._loop.call_soon_threadsafe(_close)


def start_router(kind: str, engines: list[FakeEngine], folder: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    if kind == "haproxy":
        env = {**os.environ, "FRONT_BIND": f"127.0.0.1:{free_port()}", "ROUTER_BIND": f"127.0.0.1:{port}",
               "STATS_BIND": f"127.0.0.1:{free_port()}", "APP1": "127.0.0.1:9", "APP2": "127.0.0.1:9",
               "ENGINE1": f"127.0.0.1:{engines[0].port}", "ENGINE2": f"127.0.0.1:{engines[1].port}"}
        cmd = ["haproxy", "-db", "-f", str(HAPROXY_CFG)]
    else:
        conf = folder / "nginx.conf"
        conf.write_text(NGINX_CONF.format(folder=folder, e1=engines[0].port, e2=engines[1].port, port=port))
        env, cmd = dict(os.environ), [nginx_binary() or "nginx", "-c", str(conf), "-e", str(folder / "error.log")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 15
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc, port
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{kind} did not start") from None
            time.sleep(0.1)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def _post(client: httpx.Client, url: str, body: bytes) -> tuple[float, int]:
    t = time.perf_counter()
    r = client.post(url + "/v1/audio/transcriptions", files={"file": ("a.flac", body)}, data={"model": "whisper-1"})
    return time.perf_counter() - t, r.status_code


def measure(kind: str, rounds: int) -> dict[str, Any]:
    engines = [FakeEngine("engine1"), FakeEngine("engine2")]
    folder = Path(tempfile.mkdtemp(prefix=f"rtw-router-{kind}-"))
    proc, port = start_router(kind, engines, folder)
    router, direct = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{engines[0].port}"
    out: dict[str, Any] = {}
    try:
        time.sleep(2.5)  # HAProxy's first health checks (rise 2, every 1 s)
        with httpx.Client(timeout=30) as client:
            for label, size in BODIES.items():
                body = np.random.default_rng(0).bytes(size)
                _post(client, router, body), _post(client, direct, body)
                pairs = [(_post(client, router, body)[0], _post(client, direct, body)[0]) for _ in range(rounds)]
                diffs = [a - b for a, b in pairs]
                out[f"added_p50_ms {label}"] = round(float(np.median(diffs)) * 1000, 2)
            for mode in ("reset", "503"):
                for label, size in BODIES.items():
                    engines[0].mode = mode
                    body = np.random.default_rng(1).bytes(size)
                    codes = [_post(client, router, body)[1] for _ in range(10)]
                    engines[0].mode = "ok"
                    out[f"answered after engine1 {mode}, {label}"] = f"{codes.count(200)}/10"
                    time.sleep(6)  # nginx's fail_timeout: engine1 back in the pool
            engines[0].health = 503
            time.sleep(2.5)  # two checks
            before = engines[0].decodes
            codes = [_post(client, router, b"x" * 1000)[1] for _ in range(20)]
            out["decodes a draining engine got, of 20"] = engines[0].decodes - before
            out["answered while one drains"] = f"{codes.count(200)}/20"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        for e in engines:
            e.close()
        shutil.rmtree(folder, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench routers", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=200, help="paired requests per overhead figure")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    report: dict[str, Any] = {"rounds": args.rounds}
    for kind, present in (("haproxy", shutil.which("haproxy")), ("nginx", nginx_binary())):
        report[kind] = measure(kind, args.rounds) if present else "not installed"
        print(kind, json.dumps(report[kind], indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
