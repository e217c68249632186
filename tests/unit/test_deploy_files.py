"""The deployment files (deploy/compose.yaml, deploy/haproxy.cfg, deploy/k8s/) held to the app.

A typo in a variable name, a port or a probe path in these files would fail only on
someone's cluster, so each file is parsed here and checked against the app's own
definitions: every environment variable given to an app container is a real `Settings`
field and its value passes the app's validation; ports, the router's and database's
addresses and the proxy's server lines agree across services; probes and health checks
ask `/health` (the path the app serves) and treat its draining answer (503) as "send no
more"; the stop grace periods cover the drain (DRAIN_TIMEOUT_S plus uvicorn's last
seconds); and the sticky cookie is one name in the proxy and the ingress. HAProxy's own
parser checks the config (`haproxy -c`) where Debian's `haproxy` is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from engine.base import EngineInfo
from settings import Settings, env_name
from web.health import health_router
from web.metrics import REGISTRY
from web.shutdown import GRACEFUL_HTTP_S

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SETTINGS_ENV = {env_name(info) for info in Settings.model_fields.values()}
HEALTH = "/health"
APP_COMMAND = ["python", "app.py"]


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def haproxy_cfg() -> str:
    """deploy/haproxy.cfg without its comments."""
    return "\n".join(line.split("#", 1)[0].rstrip() for line in (DEPLOY / "haproxy.cfg").read_text().splitlines())


def k8s() -> list[dict]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def interpolate(value: object) -> str:
    """A compose value as the container sees it, `${X:-default}` -> default, `${X:?msg}` -> a sample."""
    text = str(value)
    text = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)
    return re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", "sample", text)


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", value)
    assert match, value
    return int(match[1]) * (60 if match[2] == "m" else 1)


def assert_real_settings(env: dict[str, str], where: str) -> Settings:
    """Every variable is a Settings field and the values together pass the app's validation."""
    unknown = sorted(set(env) - SETTINGS_ENV)
    assert not unknown, f"{where}: not settings of the app: {unknown}"
    return Settings(**env)


def compose_apps(doc: dict) -> dict[str, dict]:
    return {name: s for name, s in doc["services"].items() if s.get("command") == APP_COMMAND}


def compose_engines(doc: dict) -> dict[str, dict]:
    return {name: s for name, s in doc["services"].items() if s.get("command", [None])[0] == "vllm"}


def arg(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


# -- compose ---------------------------------------------------------------------------------


def test_compose_apps_get_only_real_settings_with_valid_values():
    doc = compose()
    apps = compose_apps(doc)
    assert len(apps) >= 2
    replicas = set()
    for name, service in apps.items():
        env = {k: interpolate(v) for k, v in service["environment"].items()}
        settings = assert_real_settings(env, name)
        assert settings.engine == "remote" and settings.database_url.get_secret_value().startswith("postgresql://")
        assert settings.browser_key.get_secret_value(), f"{name}: every replica needs the same BROWSER_SECRET"
        replicas.add(settings.replica)
    assert len(replicas) == len(apps), "each replica needs its own REPLICA label"
    assert len({str(s["environment"]["BROWSER_SECRET"]) for s in apps.values()}) == 1


def test_compose_wires_apps_router_engines_and_database_together():
    doc = compose()
    services, apps, engines = doc["services"], compose_apps(doc), compose_engines(doc)
    proxy = services["haproxy"]["environment"]
    cfg = haproxy_cfg()
    # Every address the config reads is set by the compose service.
    assert set(re.findall(r'"\$\{([A-Z0-9_]+)\}"', cfg)) <= set(proxy)
    assert any(v.endswith("/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro") for v in services["haproxy"]["volumes"])
    assert (DEPLOY / "haproxy.cfg").exists()
    # The proxy's app servers are the app services on their port, the engines on theirs.
    app_targets = {v for k, v in proxy.items() if re.fullmatch(r"APP\d+", k)}
    assert app_targets == {f"{n}:{s['environment']['GRADIO_SERVER_PORT']}" for n, s in apps.items()}
    engine_targets = {v for k, v in proxy.items() if re.fullmatch(r"ENGINE\d+", k)}
    assert engine_targets == {f"{n}:{arg(s['command'], '--port')}" for n, s in engines.items()}
    assert len(re.findall(r"^\s*server app\d+ ", cfg, re.MULTILINE)) == len(apps)
    assert len(re.findall(r"^\s*server engine\d+ ", cfg, re.MULTILINE)) == len(engines)
    # Each engine on its own GPU, serving the model the apps ask for.
    gpus = [d for s in engines.values() for d in s["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]]
    assert len(gpus) == len(set(gpus)) == len(engines)
    router_port = proxy["ROUTER_BIND"].rsplit(":", 1)[1]
    postgres = services["postgres"]["environment"]
    for name, service in apps.items():
        env = {k: interpolate(v) for k, v in service["environment"].items()}
        endpoint = urlsplit(env["ENDPOINT_URL"])
        assert (endpoint.hostname, str(endpoint.port), endpoint.path) == ("haproxy", router_port, "/v1"), name
        assert {interpolate(s["command"][2]) for s in engines.values()} == {env["REMOTE_MODEL"]}
        db = urlsplit(env["DATABASE_URL"])
        assert (db.hostname, db.port, db.username, db.path) == ("postgres", 5432, postgres["POSTGRES_USER"], "/" + postgres["POSTGRES_DB"])
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_stop_grace_covers_the_drain():
    """docker stop's grace period must outlast the drain, or finals in flight are killed."""
    for name, service in compose_apps(compose()).items():
        drain = Settings(**{k: interpolate(v) for k, v in service["environment"].items()}).drain_timeout_s
        assert seconds(service["stop_grace_period"]) > drain + GRACEFUL_HTTP_S, name


# -- the proxy -------------------------------------------------------------------------------


def backend(cfg: str, name: str) -> str:
    match = re.search(rf"^backend {name}\n(.*?)(?=^\S|\Z)", cfg, re.MULTILINE | re.DOTALL)
    assert match, f"no backend {name}"
    return match[1]


def test_haproxy_sticks_browsers_to_a_replica_and_checks_health():
    cfg = haproxy_cfg()
    apps = backend(cfg, "apps")
    cookie = re.search(r"^\s*cookie (\S+) insert\b", apps, re.MULTILINE)
    assert cookie, "the apps backend needs an inserted affinity cookie (Gradio's queue and WebRTC signalling)"
    servers = re.findall(r"^\s*server (\S+) .*$", apps, re.MULTILINE)
    assert servers and all(re.search(rf"^\s*server {s} .*\bcookie {s}\b", apps, re.MULTILINE) for s in servers)
    for name in ("apps", "engines"):
        body = backend(cfg, name)
        assert re.search(rf"^\s*option httpchk GET {HEALTH}\s*$", body, re.MULTILINE), name
        assert re.search(r"^\s*http-check expect status 200\s*$", body, re.MULTILINE), name  # 503 "draining" is down


@pytest.mark.skipif(not (shutil.which("haproxy") or Path("/usr/sbin/haproxy").exists()), reason="Debian's haproxy is not installed")
def test_haproxy_accepts_the_config_with_the_compose_addresses():
    env = dict(compose()["services"]["haproxy"]["environment"])
    # The compose names resolve only inside compose's network: loopback on the same ports.
    env = {k: re.sub(r"^[a-z][\w-]*:", "127.0.0.1:", v) for k, v in env.items()}
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    done = subprocess.run([binary, "-c", "-f", str(DEPLOY / "haproxy.cfg")], check=False, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


# -- Kubernetes ------------------------------------------------------------------------------


def container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


#: Sample values for variables a pod reads from its Secret.
SECRET_SAMPLES = {"DATABASE_URL": "postgresql://rtw:pw@db:5432/rtw"}


def literal_env(c: dict) -> dict[str, str]:
    """The container's variables; those from a Secret or the pod's fields get a sample value."""
    env = {}
    for e in c["env"]:
        env[e["name"]] = str(e["value"]) if "value" in e else SECRET_SAMPLES.get(e["name"], "sample")
    return env


def probe_port(c: dict, probe: dict) -> int:
    port = probe["httpGet"]["port"]
    return next(p["containerPort"] for p in c["ports"] if p.get("name") == port) if isinstance(port, str) else port


def test_k8s_manifests_are_complete():
    kinds = {(d["kind"], d["metadata"]["name"]) for d in k8s()}
    for need in [("Deployment", "rt-whisper-app"), ("Deployment", "rt-whisper-engine"), ("Service", "rt-whisper-app"),
                 ("Service", "rt-whisper-engine"), ("PodDisruptionBudget", "rt-whisper-app"),
                 ("HorizontalPodAutoscaler", "rt-whisper-app"), ("Ingress", "rt-whisper")]:
        assert need in kinds
    listed = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in (DEPLOY / "k8s").glob("*.yaml") if p.name != "kustomization.yaml")


def test_k8s_app_uses_real_settings_probes_and_grace():
    docs = k8s()
    app = one(docs, "Deployment", "rt-whisper-app")
    c = container(app)
    settings = assert_real_settings(literal_env(c), "rt-whisper-app")
    assert settings.engine == "remote" and c["command"] == APP_COMMAND
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[kind]["httpGet"]["path"] == HEALTH, kind
        assert probe_port(c, c[kind]) == settings.server_port, kind
    pre_stop = float(c["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert app["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > pre_stop + settings.drain_timeout_s + GRACEFUL_HTTP_S
    # The engine Service the apps send decodes to, on the engines' port.
    engine = one(docs, "Deployment", "rt-whisper-engine")
    ec = container(engine)
    assert ec["resources"]["limits"]["nvidia.com/gpu"] == 1
    endpoint = urlsplit(settings.endpoint_url)
    service = one(docs, "Service", endpoint.hostname)
    port = next(p for p in service["spec"]["ports"] if p["port"] == endpoint.port)
    assert probe_port(ec, {"httpGet": {"port": port["targetPort"]}}) == int(arg(ec["command"], "--port"))
    assert endpoint.path == "/v1" and settings.remote_model == ec["command"][2]
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert ec[kind]["httpGet"]["path"] == HEALTH, kind
    assert set(literal_env(ec)) <= SETTINGS_ENV


def test_k8s_selectors_and_references_meet():
    docs = k8s()
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    for d in docs:
        if d["kind"] in ("Service", "PodDisruptionBudget"):
            selector = d["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            matched = [n for n, dep in deployments.items() if selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items()]
            assert len(matched) == 1, f"{d['kind']}/{d['metadata']['name']} selects {matched}"
            if d["kind"] == "Service":
                names = {p["name"] for p in container(deployments[matched[0]])["ports"]}
                assert all(p["targetPort"] in names for p in d["spec"]["ports"])
    hpa = one(docs, "HorizontalPodAutoscaler", "rt-whisper-app")
    assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
    metric = next(m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods")
    assert metric["metric"]["name"] in {family.name for family in REGISTRY.collect()}
    max_streams = Settings(**literal_env(container(deployments["rt-whisper-app"]))).max_streams
    assert 0 < float(metric["target"]["averageValue"]) < max_streams, "scale out before replicas refuse streams"
    ingress = one(docs, "Ingress", "rt-whisper")
    target = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert target["port"]["name"] in {p["name"] for p in one(docs, "Service", target["name"])["spec"]["ports"]}


def test_one_affinity_cookie_and_room_for_uploads_at_the_ingress():
    notes = one(k8s(), "Ingress", "rt-whisper")["metadata"]["annotations"]
    cookie = re.search(r"^\s*cookie (\S+) insert\b", backend(haproxy_cfg(), "apps"), re.MULTILINE)[1]
    assert notes["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert notes["nginx.ingress.kubernetes.io/session-cookie-name"] == cookie == notes["haproxy.org/cookie-persistence"]
    assert float(notes["nginx.ingress.kubernetes.io/proxy-body-size"].rstrip("m")) >= Settings().max_upload_mb


# -- the health answer the probes read -------------------------------------------------------


@pytest.mark.parametrize("draining", [False, True])
def test_health_is_what_the_probes_expect(draining):
    """Up: 200 (HAProxy's `expect status 200`, Kubernetes' 200-399). Draining: 503, so
    both stop sending new work while the finals in flight finish."""
    engine = SimpleNamespace(info=EngineInfo(model="m", engine="fake", device="cpu", multilingual=False))
    jobs = SimpleNamespace(draining=draining, snapshot=lambda: {"draining": draining})
    app = FastAPI()
    app.include_router(health_router(engine, jobs))
    answer = TestClient(app).get(HEALTH)
    assert answer.status_code == (503 if draining else 200)
    assert answer.json()["status"] == ("draining" if draining else "ok")
