"""`python -m bench.proxy_overhead`: what one HAProxy hop adds to a request, on loopback.

For the README's sizing table (More than one machine): deploy/haproxy.cfg (the front
proxy and the engine router in one process, Debian's haproxy) in front of stub servers
that read the request and answer a small JSON at once, so the figure is the proxy's own
cost and not a decode's. Each request is a POST of 64 KiB (a 4 s final as FLAC is about
that size) on a kept-alive connection, as the app's openai client sends decodes; the same
requests go straight to a stub, through the router port, and through the front port, in
turns, so the machine's load falls on all three alike. Added latency = hop p50 - direct p50.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.soak import free_port

CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "haproxy.cfg"
BODY = os.urandom(64 * 1024)


class Stub(BaseHTTPRequestHandler):
    """Reads the body, answers {"text": "ok"}; /health answers 200 for HAProxy's checks."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as uvicorn: no 40 ms wait between the headers and the body

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer()

    def _answer(self) -> None:
        body = b'{"text": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # HAProxy's health checks close their connections at once



def stub() -> int:
    server = Quiet(("127.0.0.1", free_port()), Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def wait_port(port: int, deadline_s: float = 20.0) -> None:
    end = time.monotonic() + deadline_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy_overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per path")
    args = parser.parse_args(argv)
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    stubs = [stub() for _ in range(4)]
    front, router, stats = free_port(), free_port(), free_port()
    env = {
        "FRONT_BIND": f"127.0.0.1:{front}", "ROUTER_BIND": f"127.0.0.1:{router}", "STATS_BIND": f"127.0.0.1:{stats}",
        "APP1": f"127.0.0.1:{stubs[0]}", "APP2": f"127.0.0.1:{stubs[1]}",
        "ENGINE1": f"127.0.0.1:{stubs[2]}", "ENGINE2": f"127.0.0.1:{stubs[3]}",
    }
    with tempfile.TemporaryDirectory() as folder:
        proxy = subprocess.Popen([binary, "-f", str(CONFIG), "-db"], env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(front)
            wait_port(router)
            time.sleep(2.5)  # the health checks mark every server up (rise 2, 1 s apart)
            paths = {"direct": stubs[2], "router": router, "front": front}
            conns = {name: http.client.HTTPConnection("127.0.0.1", port, timeout=10) for name, port in paths.items()}
            times: dict[str, list[float]] = {name: [] for name in paths}
            for i in range(args.requests + 50):
                for name, conn in conns.items():
                    began = time.perf_counter()
                    conn.request("POST", "/v1/audio/transcriptions", body=BODY, headers={"Content-Type": "application/octet-stream"})
                    answer = conn.getresponse()
                    answer.read()
                    assert answer.status == 200, (name, answer.status)
                    if i >= 50:  # the first 50: connections and buffers warm up
                        times[name].append(1000 * (time.perf_counter() - began))
        finally:
            proxy.terminate()
            proxy.wait(10)
    p50 = {name: statistics.median(t) for name, t in times.items()}
    p95 = {name: statistics.quantiles(t, n=20)[18] for name, t in times.items()}
    result = {
        "requests": args.requests, "body_kib": len(BODY) // 1024,
        "p50_ms": {k: round(v, 3) for k, v in p50.items()}, "p95_ms": {k: round(v, 3) for k, v in p95.items()},
        "added_p50_ms": {hop: round(p50[hop] - p50["direct"], 3) for hop in ("router", "front")},
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
