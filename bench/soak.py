"""`python -m bench soak [--minutes N]`: honest streams and abusive clients against the real app.

The app (`app.py`, real engine, API_KEY set) runs in a subprocess on loopback. For N minutes:

- 4 honest real-time streams of real English speech over the realtime WebSocket, paced at
  real time; every utterance's final is awaited (finals lost must be 0) and its latency
  measured from the utterance's true end (`audio_end_ms` on the stream's wall clock);
- a long upload (a long-form file) every `--upload-every-s` through /v1;
- abusive clients at the same time, each in a loop: idle sockets, audio floods (faster
  than real time), oversized and malformed frames (not JSON, deeply nested JSON, binary),
  garbage and oversized uploads, uploads and utterances cut off midway, wrong keys, and
  bursts of uploads beyond MAX_JOBS + MAX_QUEUED.

It samples the app's RSS (MB/hour slope) and /health's answer time, and reports final
latency p50/p95, max lag, finals lost, requests refused by each limit, errors, and
whether the app survived. The JSON goes to `bench/results/soak-<time>.json` (or `--out`).
Exit status 1 when a final was lost or the app died.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
KEY = "soak-key-7f3c"
AUTH = {"Authorization": f"Bearer {KEY}"}
RATE = 16000
CHUNK_S = 0.1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--streams", type=int, default=4, help="honest real-time streams")
    p.add_argument("--upload-every-s", type=float, default=180.0, help="a long upload this often (first after 10 s)")
    p.add_argument("--eager", action="store_true", help="engine without torch.compile (starts in ~15 s)")
    p.add_argument("--out", type=Path, default=None)
    return p


# -- the app ---------------------------------------------------------------------------


def start_app(port: int, eager: bool, log_path: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "TURN_PROVIDER": "none",
        "API_KEY": KEY,
        "MAX_JOBS": "1",
        "MAX_QUEUED": "1",
        "MAX_UPLOAD_MB": "20",
        "REALTIME_IDLE_S": "60",
        "PYTHONUNBUFFERED": "1",
    }
    if eager:
        env.setdefault("ENFORCE_EAGER", "true")
        env.setdefault("KV_CACHE_MB", "64")
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- what the clients send -----------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def speech_loop(offset: int) -> np.ndarray:
    """~1 minute of real English speech: clips with 1.5 s pauses, a different order per stream.

    Cached: decoding a dozen files on the clients' event loop stalls every client for
    seconds on a busy machine (long enough to miss the server's keepalive pings)."""
    from evaluation import clips, read_audio
    from evaluation.evalset import available_set

    chosen = clips(kind="speech", lang="en", base=available_set())[:: 7][:12]
    chosen = chosen[offset % len(chosen) :] + chosen[: offset % len(chosen)]
    gap = np.zeros(int(1.5 * RATE), np.float32)
    parts = [gap]
    for clip in chosen:
        parts += [read_audio(clip.path), gap]
    return np.concatenate(parts)


def b64(audio: np.ndarray) -> str:
    return base64.b64encode((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()).decode()


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.started = 0
        self.completed = 0
        self.lost = 0
        self.refused: Counter = Counter()  # by limit
        self.outcomes: Counter = Counter()  # abuse kind -> outcome
        self.errors: Counter = Counter()  # honest clients' errors
        self.uploads: list[dict[str, Any]] = []


async def _ws(url: str, **kw: Any):
    from websockets.asyncio.client import connect

    # No client keepalive pings: a busy client loop must not end an honest stream (the server pings).
    return await connect(url, additional_headers=kw.pop("headers", AUTH), open_timeout=30, ping_interval=None, **kw)


async def honest_stream(ws_url: str, index: int, stop: float, stats: Stats) -> None:
    audio = speech_loop(index)
    ws = await _ws(ws_url, max_size=2**22)
    try:
        await ws.recv()
        update = {"type": "transcription_session.update", "session": {
            "input_audio_format": "pcm16", "sample_rate": RATE, "input_audio_transcription": {"model": "whisper-1", "language": "en"}}}
        await ws.send(json.dumps(update))
        t0 = time.monotonic()
        open_items: set[str] = set()
        acked = asyncio.Event()

        async def reader() -> None:
            async for raw in ws:
                ev = json.loads(raw)
                kind = ev.get("type", "")
                if kind == "input_audio_buffer.speech_started":
                    stats.started += 1
                    open_items.add(ev["item_id"])
                elif kind == "input_audio_buffer.speech_stopped":
                    ends[ev["item_id"]] = t0 + ev["audio_end_ms"] / 1000
                elif kind.endswith("input_audio_transcription.completed"):
                    stats.completed += 1
                    open_items.discard(ev["item_id"])
                    if ev["item_id"] in ends:
                        stats.latencies.append(time.monotonic() - ends[ev["item_id"]])
                elif kind == "error":
                    stats.errors[ev["error"].get("code") or "error"] += 1
                elif kind == "transcription_session.updated" and sent_ack:
                    acked.set()

        ends: dict[str, float] = {}
        sent_ack = False
        task = asyncio.ensure_future(reader())
        step, i, n = int(RATE * CHUNK_S), 0, 0
        while time.monotonic() < stop:
            piece = audio[i : i + step]
            i = (i + step) % (len(audio) - step)
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": b64(piece)}))
            n += 1
            await asyncio.sleep(max(0.0, t0 + n * CHUNK_S - time.monotonic()))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        sent_ack = True
        await ws.send(json.dumps({"type": "transcription_session.update", "session": {}}))
        try:
            await asyncio.wait_for(acked.wait(), 180)
        except asyncio.TimeoutError:
            stats.errors["no_ack"] += 1
        stats.lost += len(open_items)
        task.cancel()
    finally:
        await ws.close()


async def long_uploads(base: str, path: Path, every_s: float, stop: float, stats: Stats) -> None:
    await asyncio.sleep(10)
    async with httpx.AsyncClient(base_url=base, timeout=1800, headers=AUTH) as client:
        while time.monotonic() < stop:
            t = time.monotonic()
            r = await client.post("/v1/audio/transcriptions", files={"file": (path.name, path.read_bytes())}, data={"model": "whisper-1"})
            stats.uploads.append({"status": r.status_code, "seconds": round(time.monotonic() - t, 1)})
            if r.status_code == 429:
                stats.refused["jobs (429)"] += 1
            await asyncio.sleep(max(0.0, t + every_s - time.monotonic()))


async def abuser(base: str, ws_url: str, stop: float, stats: Stats) -> None:
    """One of every abuse per round, a round every few seconds, until `stop`."""
    rng = np.random.default_rng(1)
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        idle = []
        while time.monotonic() < stop:
            for name, attempt in ABUSES:
                try:
                    outcome = await asyncio.wait_for(attempt(client, ws_url, rng, idle), 60)
                except Exception as exc:  # noqa: BLE001 -- an abuse that breaks the client is an outcome too
                    outcome = f"client error {type(exc).__name__}"
                stats.outcomes[f"{name}: {outcome}"] += 1
                refused = [m for m in REFUSALS if m in str(outcome)]
                if refused:
                    stats.refused[f"{name} -> {outcome}"] += 1
            await asyncio.sleep(3)
        for ws in idle:
            await ws.close()


async def _wrong_key(client, ws_url, rng, idle) -> str:
    r = await client.get("/v1/models", headers={"Authorization": "Bearer wrong"})
    page = await client.get("/config")
    return f"{r.status_code} api, {page.status_code} page"


async def _garbage_upload(client, ws_url, rng, idle) -> str:
    r = await client.post("/v1/audio/transcriptions", headers=AUTH, files={"file": ("x.wav", rng.bytes(200_000))}, data={"model": "whisper-1"})
    return str(r.status_code)


async def _huge_upload(client, ws_url, rng, idle) -> str:
    async def body():  # a well-formed form whose file is 25 MB (MAX_UPLOAD_MB is 20 here), no Content-Length
        yield b"--xx\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n\r\n"
        for _ in range(25):
            yield b"\0" * (1 << 20)
        yield b"\r\n--xx--\r\n"

    headers = {**AUTH, "Content-Type": "multipart/form-data; boundary=xx"}
    try:
        r = await client.post("/v1/audio/transcriptions", headers=headers, content=body())
        return str(r.status_code)
    except httpx.HTTPError as exc:
        return f"cut off ({type(exc).__name__})"


async def _cut_upload(client, ws_url, rng, idle) -> str:
    async def body():
        yield b"--xx\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n" + b"\1" * 100_000
        raise RuntimeError("client gone")

    headers = {**AUTH, "Content-Type": "multipart/form-data; boundary=xx"}
    try:
        await client.post("/v1/audio/transcriptions", headers=headers, content=body())
    except (httpx.HTTPError, RuntimeError):
        pass
    return "sent half"


async def _upload_burst(client, ws_url, rng, idle) -> str:
    sr, tone = RATE, np.sin(np.arange(RATE * 20) * 0.05).astype(np.float32) * 0.3
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, tone, sr, format="WAV")
    data = buf.getvalue()
    rs = await asyncio.gather(*(
        client.post("/v1/audio/transcriptions", headers=AUTH, files={"file": ("t.wav", data)}, data={"model": "whisper-1"}) for _ in range(4)
    ))
    return ",".join(sorted(str(r.status_code) for r in rs))


async def _idle_socket(client, ws_url, rng, idle) -> str:
    if len(idle) < 8:
        idle.append(await _ws(ws_url))
    return "held"


async def _flood(client, ws_url, rng, idle) -> str:
    ws = await _ws(ws_url)
    try:
        noise = b64((0.1 * rng.standard_normal(RATE)).astype(np.float32))
        for _ in range(60):  # 60 s of audio as fast as the socket takes it
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": noise}))
        codes = await _drain_errors(ws, 5)
        return ",".join(sorted(set(codes))) or "accepted"
    finally:
        await ws.close()


async def _malformed(client, ws_url, rng, idle) -> str:
    ws = await _ws(ws_url)
    try:
        await ws.send("not json at all")
        await ws.send("[" * 100_000 + "]" * 100_000)
        await ws.send(b"\x00\x01binary")
        codes = await _drain_errors(ws, 3)
        return ",".join(sorted(set(codes))) or "no error"
    finally:
        await ws.close()


async def _oversized(client, ws_url, rng, idle) -> str:
    ws = await _ws(ws_url)
    try:
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": "A" * (8 << 20)}))
        await ws.recv()
        await ws.recv()
        return "not closed"
    except Exception as exc:  # noqa: BLE001
        code = getattr(getattr(exc, "rcvd", None), "code", None)
        return f"closed {code}" if code else f"closed ({type(exc).__name__})"
    finally:
        await ws.close()


async def _cut_utterance(client, ws_url, rng, idle) -> str:
    ws = await _ws(ws_url)
    speech = speech_loop(3)[RATE : RATE * 4]
    for i in range(0, len(speech), 1600):
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": b64(speech[i : i + 1600])}))
    ws.transport.abort()  # gone without a close frame, mid-utterance
    return "dropped"


async def _drain_errors(ws, seconds: float) -> list[str]:
    codes = []
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            ev = json.loads(await asyncio.wait_for(ws.recv(), max(0.05, end - time.monotonic())))
            if ev.get("type") == "error":
                codes.append(ev["error"].get("code") or "error")
    except (asyncio.TimeoutError, Exception):  # noqa: BLE001
        pass
    return codes


#: What a limit's refusal looks like in an abuse's outcome.
REFUSALS = ("400", "401", "413", "429", "rate_limited", "closed 1009", "invalid", "too_large")

ABUSES = [
    ("wrong key", _wrong_key), ("garbage upload", _garbage_upload), ("oversized upload", _huge_upload),
    ("upload cut midway", _cut_upload), ("upload burst", _upload_burst), ("idle socket", _idle_socket),
    ("audio flood", _flood), ("malformed frames", _malformed), ("oversized frame", _oversized),
    ("utterance cut midway", _cut_utterance),
]


# -- the run -------------------------------------------------------------------------------


async def watch(base: str, pid: int, stop: float, samples: list, health: list, failures: Counter) -> None:
    # A fresh connection per probe: a kept-alive one may be closed by the server as it is reused.
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        t0 = time.monotonic()
        while time.monotonic() < stop:
            t = time.monotonic()
            try:
                await client.get("/health")
                health.append(time.monotonic() - t)
            except httpx.HTTPError as exc:
                failures[type(exc).__name__] += 1
            samples.append((time.monotonic() - t0, rss_mb(pid)))
            await asyncio.sleep(max(0.0, t + 5.0 - time.monotonic()))


async def run(args: argparse.Namespace, base: str, pid: int) -> dict[str, Any]:
    from evaluation import longform_files

    for i in range(max(args.streams, 4)):
        await asyncio.to_thread(speech_loop, i)  # decoded before the clock starts

    stats, samples, health = Stats(), [], []
    ws_url = base.replace("http://", "ws://") + "/v1/realtime?intent=transcription"
    stop = time.monotonic() + args.minutes * 60
    long_path = next(lf.path for lf in longform_files() if lf.path.stem.startswith("ljspeech"))
    tasks = [honest_stream(ws_url, i, stop, stats) for i in range(args.streams)]
    tasks += [long_uploads(base, long_path, args.upload_every_s, stop, stats), abuser(base, ws_url, stop, stats)]
    health_failures: Counter = Counter()
    tasks += [watch(base, pid, stop + 60, samples, health, health_failures)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    lat = sorted(stats.latencies)
    hours = [t / 3600 for t, _ in samples]
    slope = float(np.polyfit(hours, [m for _, m in samples], 1)[0]) if len(samples) >= 3 else None
    half = samples[len(samples) // 2 :]  # past the warm-up (first allocations, caches, vLLM's pools)
    slope_late = float(np.polyfit([t / 3600 for t, _ in half], [m for _, m in half], 1)[0]) if len(half) >= 3 else None
    return {
        "minutes": args.minutes,
        "streams": args.streams,
        "finals": {"started": stats.started, "completed": stats.completed, "lost": stats.lost},
        "final_latency_s": {"p50": _pct(lat, 50), "p95": _pct(lat, 95), "max": lat[-1] if lat else None, "n": len(lat)},
        "max_lag_s": lat[-1] if lat else None,
        "rss_mb": {"first": samples[0][1] if samples else None, "last": samples[-1][1] if samples else None,
                   "max": max((m for _, m in samples), default=None), "slope_mb_per_hour": slope, "slope_second_half_mb_per_hour": slope_late,
                   "samples": [(round(t), round(m)) for t, m in samples]},
        "health_max_s": max(health, default=None),
        "health_failures": dict(health_failures),
        "uploads": stats.uploads,
        "refused_by_limit": dict(stats.refused),
        "abuse_outcomes": dict(stats.outcomes),
        "honest_errors": dict(stats.errors),
        "client_failures": failures,
    }


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = Path(tempfile.mkstemp(prefix="soak-app-", suffix=".log")[1])
    app = start_app(port, args.eager, log_path)
    try:
        deadline = time.monotonic() + 600
        while True:
            if app.poll() is not None:
                raise SystemExit(f"the app exited at start ({app.returncode}); log: {log_path}")
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the app did not start; log: {log_path}")
            time.sleep(0.5)
        report = asyncio.run(run(args, base, app.pid))
        report["app_alive"] = app.poll() is None
        report["jobs"] = httpx.get(base + "/health", timeout=30).json().get("jobs") if report["app_alive"] else None
    finally:
        app.terminate()
        try:
            app.wait(timeout=30)
        except subprocess.TimeoutExpired:
            app.kill()
    log = log_path.read_text(errors="replace")
    report["app_log_tracebacks"] = log.count("Traceback (most recent call last)")
    report["app_log_errors"] = [line[:300] for line in log.splitlines() if " ERROR " in line or line.startswith(("ERROR", "RuntimeError"))][:20]
    report["key_in_log"] = KEY in log
    report["when"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out = args.out or RESULTS / f"soak-{datetime.now(timezone.utc):%Y%m%d-%H%M}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    _print(report, out)
    ok = report["finals"]["lost"] == 0 and report["app_alive"]
    return 0 if ok else 1


def _print(r: dict[str, Any], out: Path) -> None:
    f = r["final_latency_s"]
    print(f"soak {r['minutes']} min, {r['streams']} streams: finals {r['finals']}, latency p50 {f['p50']} p95 {f['p95']} max {f['max']} s")
    print(f"RSS {r['rss_mb']['first']} -> {r['rss_mb']['last']} MB (max {r['rss_mb']['max']}), slope {r['rss_mb']['slope_mb_per_hour']} MB/h (second half {r['rss_mb']['slope_second_half_mb_per_hour']}); /health max {r['health_max_s']} s, failed {r['health_failures']}")
    print(f"refused by limit: {r['refused_by_limit']}")
    print(f"abuse outcomes: {r['abuse_outcomes']}")
    print(f"honest errors: {r['honest_errors']}; client failures: {r['client_failures']}; app alive: {r['app_alive']}; tracebacks in log: {r['app_log_tracebacks']}; key in log: {r['key_in_log']}")
    print(f"-> {out}")


if __name__ == "__main__":
    sys.exit(main())
