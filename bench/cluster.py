"""`python -m bench cluster [--short]`: the pool on loopback, an engine and a replica taken away mid-run.

Starts, each as its own process on 127.0.0.1:

- PostgreSQL (Debian's binaries, a temporary folder: `bench/pg.py`), one database;
- two engine servers: this app with `ENGINE=vllm` (it serves `/v1/audio/transcriptions`
  and `/health` like vLLM's OpenAI server; vLLM's server would need a multilingual model:
  it refuses `.en` ones, RECIPES.md);
- HAProxy with `deploy/haproxy.cfg`, the very file a deployment uses: the engine router
  and the front proxy (cookie affinity, `/health` checks, retries on the other engine);
- two app replicas: `ENGINE=remote` at the router, one `DATABASE_URL`, one `BROWSER_SECRET`,
  `REPLICA=app1|app2`.

Then, through the front proxy: realtime WebSocket streams of real English speech paced at
real time (each utterance's final awaited) and an upload every few seconds (sent again on
a 502 or a dropped connection, as API clients do). At 35 % of the
run one engine is SIGKILLed; at 60 % one replica is SIGKILLed too (`--replica-signal kill`,
the default: a crash; its streams' connections drop and the clients reconnect through the
proxy onto the other replica, sending again the utterance the dead one had not finalised,
from its start) or gets SIGTERM (`term`: a deploy; it drains, its streams get
`server_restarting` with every open final, then reconnect).

Reports: finals started vs delivered and lost (must be 0; an utterance cut by the dead
replica and sent again counts as resent, its second try must be delivered), uploads answered, final latency,
the latency the router and the proxy add (p50 of paired requests through them vs direct),
decodes per engine before the kill (the spread), the router's retries, how long the
replica took to exit. Without a browser: the page's reload onto the other replica is tests/e2e/
test_replicas_e2e.py, and the realtime API keeps no transcripts, so nothing of this run
is expected in PostgreSQL beyond the schema both replicas migrated. The JSON goes to
`bench/results/cluster-<time>.json` (or `--out`); exit status 1 when a final or an upload
was lost. Needs `haproxy` and `postgresql` (Debian; scripts/setup.sh --test).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench import pg
from bench.soak import CHUNK_S, RATE, b64, free_port, speech_loop

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
HAPROXY_CFG = ROOT / "deploy" / "haproxy.cfg"
SECRET = "bench-cluster-browser-secret-0123456789"
START_TIMEOUT_S = 600.0
ENGINE_KILL_AT = 0.35  # of the run
REPLICA_STOP_AT = 0.60


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench cluster", description=__doc__.split("\n\n")[0])
    p.add_argument("--short", action="store_true", help="CI version: 2 streams for 45 s, 8 latency pairs")
    p.add_argument("--streams", type=int, default=None, help="realtime streams (default 4; short 2)")
    p.add_argument("--seconds", type=float, default=None, help="length of the streaming run (default 120; short 45)")
    p.add_argument("--upload-every-s", type=float, default=None, help="an upload this often (default 8; short 10)")
    p.add_argument("--pairs", type=int, default=None, help="paired requests per latency comparison (default 30; short 8)")
    p.add_argument("--replica-signal", choices=["kill", "term"], default="kill",
                   help="how the replica goes mid-run: SIGKILL (a crash) or SIGTERM (a deploy: it drains)")
    p.add_argument("--compiled", action="store_true", help="engines with torch.compile (start ~40 s slower)")
    p.add_argument("--out", type=Path, default=None)
    return p


# -- the processes -------------------------------------------------------------------------


@dataclass
class Service:
    name: str
    port: int
    proc: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu_s(self) -> float:
        """CPU seconds used so far by the process (user + system)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_app(name: str, port: int, extra_env: dict[str, str], folder: Path) -> Service:
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "TURN_PROVIDER": "none",
        "DATA_DIR": str(folder / name),
        "PYTHONUNBUFFERED": "1",
        **extra_env,
    }
    env.pop("API_KEY", None)
    log = folder / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return Service(name, port, proc, log)


def engine_env(compiled: bool) -> dict[str, str]:
    """An app that serves decodes to the replicas: its job limits sized for two replicas'
    REMOTE_CONCURRENCY (8 each), so it queues rather than answering 429."""
    env = {"ENGINE": "vllm", "MAX_JOBS": "16", "MAX_QUEUED": "64"}
    if not compiled:
        env |= {"ENFORCE_EAGER": "true", "KV_CACHE_MB": "64"}
    return env


def replica_env(name: str, router_port: int, database_url: str) -> dict[str, str]:
    return {
        "ENGINE": "remote",
        "ENDPOINT_URL": f"http://127.0.0.1:{router_port}/v1",
        "DATABASE_URL": database_url,
        "BROWSER_SECRET": SECRET,
        "REPLICA": name,
        "DRAIN_TIMEOUT_S": "20",
    }


def wait_healthy(services: list[Service], timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    pending = list(services)
    while pending:
        for s in list(pending):
            if not s.alive():
                raise RuntimeError(f"{s.name} exited at start ({s.proc.returncode}); log: {s.log}\n{s.log.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(s.url + "/health", timeout=2).status_code == 200:
                    pending.remove(s)
            except httpx.HTTPError:
                pass
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"not healthy after {timeout_s:.0f} s: {[s.name for s in pending]}")
        time.sleep(0.5)


def end_process(service: Service, sig: int = signal.SIGTERM, wait_s: float = 40.0) -> float:
    """Signal the process group; seconds until it exited (SIGKILL after `wait_s`)."""
    t = time.monotonic()
    if service.alive():
        os.killpg(service.proc.pid, sig)
        try:
            service.proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            os.killpg(service.proc.pid, signal.SIGKILL)
            service.proc.wait()
    return time.monotonic() - t


@dataclass
class Haproxy:
    proc: subprocess.Popen
    front: int
    router: int
    stats: int
    log: Path

    def servers(self) -> dict[str, dict[str, str]]:
        """HAProxy's stats CSV, one row per server (`engine1`, `app2`, ...)."""
        text = httpx.get(f"http://127.0.0.1:{self.stats}/;csv", timeout=5).text.lstrip("# ")
        return {r["svname"]: r for r in csv.DictReader(io.StringIO(text)) if r["svname"] not in ("FRONTEND", "BACKEND")}

    def backend(self, name: str) -> dict[str, str]:
        text = httpx.get(f"http://127.0.0.1:{self.stats}/;csv", timeout=5).text.lstrip("# ")
        return next(r for r in csv.DictReader(io.StringIO(text)) if r["pxname"] == name and r["svname"] == "BACKEND")

    def wait_up(self, names: list[str], timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                servers = self.servers()
                if all(servers.get(n, {}).get("status", "").startswith("UP") for n in names):
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"HAProxy does not see {names} up (log: {self.log})")
            time.sleep(0.3)


def start_haproxy(app_ports: list[int], engine_ports: list[int], folder: Path) -> Haproxy:
    if not shutil.which("haproxy"):
        raise RuntimeError("haproxy is not installed (Debian: apt-get install haproxy; scripts/setup.sh --test does it)")
    front, router, stats = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "FRONT_BIND": f"127.0.0.1:{front}", "ROUTER_BIND": f"127.0.0.1:{router}", "STATS_BIND": f"127.0.0.1:{stats}",
        "APP1": f"127.0.0.1:{app_ports[0]}", "APP2": f"127.0.0.1:{app_ports[1]}",
        "ENGINE1": f"127.0.0.1:{engine_ports[0]}", "ENGINE2": f"127.0.0.1:{engine_ports[1]}",
    }
    log = folder / "haproxy.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["haproxy", "-db", "-f", str(HAPROXY_CFG)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return Haproxy(proc, front, router, stats, log)


# -- what the clients do -------------------------------------------------------------------


@dataclass
class Stats:
    started: int = 0
    completed: int = 0
    lost: int = 0
    resent: int = 0  # utterances cut by a dead replica, sent again from their start
    reconnects: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    uploads: list[dict[str, Any]] = field(default_factory=list)


async def _connection(ws_url: str, audio: np.ndarray, pos: int, stop: float, stats: Stats, last: bool) -> tuple[int, bool]:
    """One realtime connection from audio sample `pos` until `stop` or until the server
    goes; returns where the audio should go on from and whether the server went first.

    Every utterance the server started on this connection must be completed on it, except
    when the connection drops without a close (the replica died): then the client, which
    still has the audio, goes on from the start of the oldest unfinished utterance (or,
    with none open, from the last second it sent, never before the end of the last one
    the server finished), as a client that must not lose words does."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    ws = await connect(ws_url, open_timeout=30, ping_interval=None, max_size=2**22)
    step, start_pos, period = int(RATE * CHUNK_S), pos, len(audio) - int(RATE * CHUNK_S)
    starts: dict[str, int] = {}  # open item -> its first sample on this connection
    last_end = 0  # the last sample of the newest utterance the server ended
    open_items: set[str] = set()
    ends: dict[str, float] = {}
    closed_by_server = False
    acked = asyncio.Event()
    t0 = time.monotonic()

    async def reader() -> None:
        nonlocal closed_by_server, last_end
        try:
            async for raw in ws:
                ev = json.loads(raw)
                kind = ev.get("type", "")
                if kind == "input_audio_buffer.speech_started":
                    stats.started += 1
                    open_items.add(ev["item_id"])
                    starts[ev["item_id"]] = int(ev.get("audio_start_ms", 0)) * RATE // 1000
                elif kind == "input_audio_buffer.speech_stopped":
                    ends[ev["item_id"]] = t0 + ev["audio_end_ms"] / 1000
                    last_end = max(last_end, int(ev["audio_end_ms"]) * RATE // 1000)
                elif kind.endswith("input_audio_transcription.completed"):
                    stats.completed += 1
                    open_items.discard(ev["item_id"])
                    if ev["item_id"] in ends:
                        stats.latencies.append(time.monotonic() - ends[ev["item_id"]])
                elif kind == "error":
                    stats.errors[ev["error"].get("code") or "error"] += 1
                elif kind == "transcription_session.updated" and acking:
                    acked.set()
        except ConnectionClosed:
            pass
        closed_by_server = True

    acking = False
    try:
        await ws.recv()
        await ws.send(json.dumps({"type": "transcription_session.update", "session": {
            "input_audio_format": "pcm16", "sample_rate": RATE, "input_audio_transcription": {"model": "whisper-1", "language": "en"}}}))
        task = asyncio.ensure_future(reader())
        n = 0
        while time.monotonic() < stop and not closed_by_server:
            piece = audio[pos : pos + step]
            pos = (pos + step) % period
            try:
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": b64(piece)}))
            except ConnectionClosed:
                break
            n += 1
            await asyncio.sleep(max(0.0, t0 + n * CHUNK_S - time.monotonic()))
        if not closed_by_server:
            try:
                await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
                acking = True
                await ws.send(json.dumps({"type": "transcription_session.update", "session": {}}))
                await asyncio.wait_for(acked.wait(), 180)
            except (ConnectionClosed, asyncio.TimeoutError):
                stats.errors["no_ack"] += 1
        else:
            await asyncio.wait_for(task, 60)  # the server's last events, then its close
        if closed_by_server and ws.close_code not in (1000, 1012):
            # Died without a word: resend from the oldest unfinished utterance (0.3 s early,
            # the server's speech pad), on whole chunks as the server counts samples.
            if open_items:
                first = max(0, min(starts.get(i, 0) for i in open_items) - int(0.3 * RATE))
            else:
                first = max(last_end, n * step - RATE)
            pos = (start_pos + first // step * step) % period
            stats.resent += len(open_items)
        else:
            stats.lost += len(open_items)
        task.cancel()
    finally:
        await ws.close()
    return pos, closed_by_server and not last


async def stream(ws_url: str, index: int, stop: float, stats: Stats) -> None:
    """A speaker that keeps talking: reconnects through the proxy when its replica goes."""
    audio = speech_loop(index)
    pos = 0
    while time.monotonic() < stop:
        try:
            pos, restarted = await _connection(ws_url, audio, pos, stop, stats, last=False)
        except (OSError, asyncio.TimeoutError) as exc:  # the proxy had no replica for a moment
            stats.errors[f"connect: {type(exc).__name__}"] += 1
            restarted = True
        except Exception as exc:  # noqa: BLE001 -- a refused handshake (503 while draining) and friends
            stats.errors[f"connect: {type(exc).__name__}"] += 1
            restarted = True
        if restarted and time.monotonic() < stop:
            stats.reconnects += 1
            await asyncio.sleep(0.5)


UPLOAD_ATTEMPTS = 3  # as the openai client does (2 retries): a transcription is safe to resend


async def uploads(base: str, clip: Path, every_s: float, stop: float, stats: Stats) -> None:
    """An upload every `every_s` through the proxy; one whose replica dies under it (502,
    dropped connection) is sent again, as API clients do."""
    await asyncio.sleep(min(3.0, every_s))
    async with httpx.AsyncClient(base_url=base, timeout=300) as client:
        while time.monotonic() < stop:
            t = time.monotonic()
            entry: dict[str, Any] = {}
            for attempt in range(1, UPLOAD_ATTEMPTS + 1):
                try:
                    r = await client.post("/v1/audio/transcriptions", files={"file": (clip.name, clip.read_bytes())},
                                          data={"model": "whisper-1"})
                    entry = {"status": r.status_code, "text": bool(r.status_code == 200 and r.json().get("text"))}
                except httpx.HTTPError as exc:
                    entry = {"status": type(exc).__name__, "text": False}
                entry |= {"seconds": round(time.monotonic() - t, 2), "attempts": attempt}
                if entry["status"] not in (502, 503, 504) and isinstance(entry["status"], int):
                    break
                await asyncio.sleep(0.5)
            stats.uploads.append(entry)
            await asyncio.sleep(max(0.0, t + every_s - time.monotonic()))


async def _timed(client: httpx.AsyncClient, method: str, url: str, **kw: Any) -> float:
    t = time.perf_counter()
    r = await client.request(method, url, **kw)
    r.raise_for_status()
    return time.perf_counter() - t


async def paired_latency(pairs: dict[str, tuple[str, str]], clip: Path, n: int) -> dict[str, Any]:
    """What a hop adds: each round sends the same request through it and directly, in turn,
    and the p50 of the rounds' differences is reported, so the machine's noise (other
    work on these 2 shared cores) falls on both sides of each round. Two requests: a
    decode of a short clip (the real thing: upload buffered by HAProxy, then decoded), and
    GET /health (the hop alone, without a decode's few tens of ms of jitter)."""
    data = clip.read_bytes()
    form = {"files": {"file": (clip.name, data)}, "data": {"model": "whisper-1"}}
    out: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=120) as client:
        for name, (through, direct) in pairs.items():
            for what, method, path, kw, rounds in (("decode", "POST", "/v1/audio/transcriptions", form, n),
                                                   ("health", "GET", "/health", {}, 5 * n)):
                times: dict[str, list[float]] = {through: [], direct: []}
                for url in times:  # connections and caches warmed once
                    await _timed(client, method, url + path, **kw)
                for _ in range(rounds):
                    for url, seen in times.items():
                        seen.append(await _timed(client, method, url + path, **kw))
                diffs = np.array(times[through]) - np.array(times[direct])
                out[f"{name} {what}"] = {
                    "added_p50_ms": round(float(np.median(diffs)) * 1000, 2),
                    "through_p50_ms": round(float(np.median(times[through])) * 1000, 2),
                    "direct_p50_ms": round(float(np.median(times[direct])) * 1000, 2),
                    "rounds": rounds,
                }
    return out


# -- the run -------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def _clips() -> tuple[Path, Path]:
    """A short clip (latency pairs) and a 8-15 s one (uploads) from the evaluation set, else
    (a fresh clone without ../shared, as CI may be) from the repository's own tests/data."""
    from evaluation.evalset import available_set, clips

    en = clips(kind="speech", lang="en", base=available_set())
    short = min(en, key=lambda c: c.duration)
    mid = [c for c in en if 8 <= c.duration <= 15] or en
    return short.path, mid[0].path


def live_streams(app: Service) -> float:
    """The replica's own count of live streams (`rtw_active_sessions` at /metrics)."""
    try:
        text = httpx.get(app.url + "/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("rtw_active_sessions"))


def busiest(apps: list[Service]) -> Service:
    """The replica holding the most live streams: the one whose loss tests the most (the
    proxy's leastconn spreads streams by connections, and uploads hold connections too)."""
    return max(apps, key=live_streams)


def _decodes(hap: Haproxy) -> dict[str, int]:
    servers = hap.servers()
    return {n: int(servers[n]["hrsp_2xx"] or 0) for n in ("engine1", "engine2")}


async def workload(args: argparse.Namespace, hap: Haproxy, engines: list[Service], apps: list[Service]) -> dict[str, Any]:
    short_clip, upload_clip = _clips()
    for i in range(args.streams):
        await asyncio.to_thread(speech_loop, i)  # decoded before the clock starts
    front = f"http://127.0.0.1:{hap.front}"
    router = f"http://127.0.0.1:{hap.router}"
    latency = await paired_latency({"router": (router, engines[0].url), "proxy": (front, apps[0].url)}, short_clip, args.pairs)
    before = _decodes(hap)
    cpu_before = [e.cpu_s() for e in engines]

    stats = Stats()
    t_start = time.monotonic()
    stop = t_start + args.seconds
    events: dict[str, Any] = {}

    async def chaos() -> None:
        await asyncio.sleep(args.seconds * ENGINE_KILL_AT)
        decodes = _decodes(hap)
        events["decodes_before_engine_kill"] = {k: decodes[k] - before[k] for k in decodes}
        events["engine_cpu_s_before_kill"] = [round(e.cpu_s() - c, 1) for e, c in zip(engines, cpu_before)]
        events["engine_killed_at_s"] = round(time.monotonic() - t_start, 1)
        await asyncio.to_thread(end_process, engines[0], signal.SIGKILL)
        await asyncio.sleep(max(0.0, t_start + args.seconds * REPLICA_STOP_AT - time.monotonic()))
        events["replica_stopped_at_s"] = round(time.monotonic() - t_start, 1)
        events["replica_signal"] = args.replica_signal
        victim = await asyncio.to_thread(busiest, apps)
        events["replica_stopped"] = victim.name
        events["live_streams_per_replica"] = {a.name: live_streams(a) for a in apps}
        sig = signal.SIGKILL if args.replica_signal == "kill" else signal.SIGTERM
        events["replica_exit_s"] = round(await asyncio.to_thread(end_process, victim, sig), 1)
        events["replica_exit_code"] = victim.proc.returncode

    ws_url = front.replace("http://", "ws://") + "/v1/realtime?intent=transcription"
    jobs = [stream(ws_url, i, stop, stats) for i in range(args.streams)]
    jobs += [uploads(front, upload_clip, args.upload_every_s, stop, stats), chaos()]
    results = await asyncio.gather(*jobs, return_exceptions=True)
    after = _decodes(hap)
    backend = hap.backend("engines")
    lat = sorted(stats.latencies)
    failed_uploads = [u for u in stats.uploads if u["status"] != 200 or not u["text"]]
    return {
        "finals": {"started": stats.started, "delivered": stats.completed, "lost": stats.lost, "resent": stats.resent},
        "final_latency_s": {"p50": _pct(lat, 50), "p95": _pct(lat, 95), "max": lat[-1] if lat else None, "n": len(lat)},
        "uploads": {"sent": len(stats.uploads), "answered": len(stats.uploads) - len(failed_uploads),
                    "failed": failed_uploads, "seconds_p50": _pct([u["seconds"] for u in stats.uploads], 50),
                    "sent_again": sum(u["attempts"] > 1 for u in stats.uploads)},
        "added_latency": latency,
        "decodes_per_engine": {k: after[k] - before[k] for k in after},
        "router_retries": int(backend.get("wretr") or 0), "router_redispatches": int(backend.get("wredis") or 0),
        "reconnects": stats.reconnects,
        "client_errors": dict(stats.errors),
        "client_failures": [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)],
        "events": events,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.streams = args.streams or (2 if args.short else 4)
    args.seconds = args.seconds or (45.0 if args.short else 120.0)
    args.upload_every_s = args.upload_every_s or (10.0 if args.short else 8.0)
    args.pairs = args.pairs or (8 if args.short else 30)
    folder = Path(tempfile.mkdtemp(prefix="rtw-cluster-"))
    started = time.monotonic()
    services: list[Service] = []
    db: pg.Postgres | None = None
    hap: Haproxy | None = None
    report: dict[str, Any] = {"streams": args.streams, "seconds": args.seconds, "short": args.short, "logs": str(folder)}
    try:
        db = pg.start(free_port())
        database_url = db.createdb("rtw")
        engines = [start_app(f"engine{i}", free_port(), engine_env(args.compiled), folder) for i in (1, 2)]
        services += engines
        wait_healthy(engines)
        app_ports = [free_port(), free_port()]
        hap = start_haproxy(app_ports, [e.port for e in engines], folder)
        apps = [start_app(f"app{i}", port, replica_env(f"app{i}", hap.router, database_url), folder) for i, port in zip((1, 2), app_ports)]
        services += apps
        wait_healthy(apps)
        hap.wait_up(["engine1", "engine2", "app1", "app2"])
        report["start_s"] = round(time.monotonic() - started, 1)
        report |= asyncio.run(workload(args, hap, engines, apps))
        report["schema_versions"] = db.query("rtw", "SELECT value FROM meta WHERE key = 'schema_version'") if db else None
        report["survivors_alive"] = engines[1].alive() and sum(a.alive() for a in apps) == 1
    finally:
        for s in services:
            end_process(s, signal.SIGTERM, wait_s=30)
        if hap is not None:
            hap.proc.terminate()
            hap.proc.wait(timeout=10)
        if db is not None:
            db.stop()
    report["total_s"] = round(time.monotonic() - started, 1)
    report["when"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    finals = report["finals"]
    ok = (finals["lost"] == 0 and finals["delivered"] == finals["started"] - finals["resent"] and finals["delivered"] > 0
          and not report["uploads"]["failed"] and not report["client_failures"] and report["survivors_alive"])
    if ok:  # the processes' logs are kept only when something was lost
        shutil.rmtree(folder, ignore_errors=True)
        report["logs"] = None
    out = args.out or RESULTS / f"cluster-{datetime.now(timezone.utc):%Y%m%d-%H%M}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    _print(report, out)
    return 0 if ok else 1


def _print(r: dict[str, Any], out: Path) -> None:
    f, u, e = r["finals"], r["uploads"], r["events"]
    print(f"cluster {r['streams']} streams, {r['seconds']:.0f} s (start {r['start_s']} s, total {r['total_s']} s): "
          f"finals started {f['started']}, delivered {f['delivered']}, lost {f['lost']}, resent {f['resent']}; uploads {u['answered']}/{u['sent']}")
    print(f"final latency p50 {r['final_latency_s']['p50']} p95 {r['final_latency_s']['p95']} s; reconnects {r['reconnects']}; "
          f"client errors {r['client_errors']}")
    for name, v in r["added_latency"].items():
        print(f"added latency {name}: {v['added_p50_ms']} ms p50 ({v['through_p50_ms']} vs {v['direct_p50_ms']} ms, {v['rounds']} rounds)")
    print(f"decodes before the engine kill {e.get('decodes_before_engine_kill')} (engine CPU s {e.get('engine_cpu_s_before_kill')}); "
          f"whole run {r['decodes_per_engine']}; router retries {r['router_retries']}, redispatches {r['router_redispatches']}")
    print(f"engine1 SIGKILL at {e.get('engine_killed_at_s')} s; {e.get('replica_stopped')} (live streams "
          f"{e.get('live_streams_per_replica')}) SIG{str(e.get('replica_signal')).upper()} at "
          f"{e.get('replica_stopped_at_s')} s, exited in {e.get('replica_exit_s')} s (code {e.get('replica_exit_code')})")
    print(f"-> {out}")


if __name__ == "__main__":
    sys.exit(main())
