"""`python -m bench.replica_cpu`: the CPU one live stream costs an app replica, decoding elsewhere.

For the README's sizing table (More than one machine): a replica with `ENGINE=remote`
does the VAD, the utterance bookkeeping, FLAC encoding of every decode's audio, the HTTP
to the engine and the events to the client; the engine's cost is elsewhere. Here the
"engine" is a stub OpenAI endpoint that answers every decode at once
(tests/integration/misbehaving_server.py), so partials run at their full rate (the worst
case for the replica), and the clients are bench.soak's honest realtime streams (real
speech from ../shared/eval, at real time over /v1/realtime). The app's process CPU time
(with its children) is read before and after each run: busy cores = CPU s / wall s. The
page's WebRTC path (Opus decoding, aiortc) is not in this figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from bench.soak import KEY, Stats, free_port, honest_stream
from tests.integration.misbehaving_server import MisbehavingServer

ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds(proc: psutil.Process) -> float:
    total = sum(proc.cpu_times()[:2])
    for child in proc.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def start_app(port: int, endpoint: str, data_dir: str, log) -> subprocess.Popen:
    env = {
        **os.environ,
        "ENGINE": "remote", "ENDPOINT_URL": endpoint, "REMOTE_MODEL": "fake-whisper",
        "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "TURN_PROVIDER": "none",
        "API_KEY": KEY, "DATA_DIR": data_dir, "MAX_STREAMS": "0", "PYTHONUNBUFFERED": "1",
    }
    return subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_healthy(base: str, deadline_s: float = 300.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError("the app did not become healthy in time")


async def streams(ws_url: str, count: int, seconds: float) -> Stats:
    stats = Stats()
    stop = time.monotonic() + seconds
    await asyncio.gather(*(honest_stream(ws_url, i, stop, stats) for i in range(count)))
    return stats


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.replica_cpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="1,4,8", help="stream counts, one run each")
    parser.add_argument("--seconds", type=float, default=45.0, help="length of each run")
    args = parser.parse_args(argv)
    port = free_port()
    base, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/v1/realtime?intent=transcription"
    result: dict = {"seconds": args.seconds, "runs": []}
    with (
        MisbehavingServer(text="hello from the fake endpoint") as engine,
        tempfile.TemporaryDirectory() as folder,
        open(Path(folder) / "app.log", "wb") as log,
    ):
        app = start_app(port, engine.url, folder, log)
        try:
            wait_healthy(base)
            proc = psutil.Process(app.pid)
            before, began = cpu_seconds(proc), time.monotonic()
            time.sleep(10)
            result["idle_cores"] = round((cpu_seconds(proc) - before) / (time.monotonic() - began), 3)
            for count in (int(c) for c in args.counts.split(",")):
                engine.seen.clear()
                before, began = cpu_seconds(proc), time.monotonic()
                stats = asyncio.run(streams(ws_url, count, args.seconds))
                busy = (cpu_seconds(proc) - before) / (time.monotonic() - began)
                result["runs"].append({
                    "streams": count, "busy_cores": round(busy, 3),
                    "per_stream_cores": round((busy - result["idle_cores"]) / count, 3),
                    "decodes_per_stream_s": round(len(engine.seen) / count / args.seconds, 2),
                    "finals": stats.completed, "errors": dict(stats.errors),
                })
        finally:
            app.terminate()
            app.wait(60)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
