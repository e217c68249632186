"""Settings for running several app replicas (issue 22): REPLICA labels /metrics, and
BROWSER_SECRET is the page's browser-id key on every replica.

Checked: every series at /metrics carries `replica` (REPLICA, else the host name), the
metrics' own labels kept; the page's gr.BrowserState takes BROWSER_SECRET when it is set
(two replicas with different stores agree), else the key kept in the store.
"""

from __future__ import annotations

import socket

from fastapi import FastAPI
from fastapi.testclient import TestClient

from settings import Settings
from tests.metrics_text import metric_labels, metric_value
from web.metrics import API_REQUESTS, DECODE_SECONDS, metrics_router
from web.recorder import browser_state
from web.store import TranscriptStore


def _metrics(replica: str) -> str:
    app = FastAPI()
    app.include_router(metrics_router(replica))
    return TestClient(app).get("/metrics").text


def test_every_series_names_its_replica(monkeypatch):
    monkeypatch.setenv("REPLICA", "app-2")
    API_REQUESTS.labels("/v1/models", "200").inc()
    DECODE_SECONDS.labels("stream").observe(0.2)
    text = _metrics(Settings.from_env().replica)
    names = ("rtw_active_sessions", "rtw_decode_seconds_bucket", "rtw_api_requests_total")
    for name in names:
        labels = metric_labels(text, name)
        assert labels and all(l.get("replica") == "app-2" for l in labels), (name, labels)
    assert metric_value(text, "rtw_api_requests_total", route="/v1/models", status="200", replica="app-2") >= 1


def test_the_replica_is_the_host_name_by_default(monkeypatch):
    monkeypatch.delenv("REPLICA", raising=False)
    assert Settings.from_env().replica == ""
    assert {l["replica"] for l in metric_labels(_metrics(""), "rtw_active_sessions")} == {socket.gethostname()}


def test_browser_secret_is_shared_by_replicas(tmp_path, monkeypatch):
    monkeypatch.setenv("BROWSER_SECRET", "one-key-for-every-replica")
    key = Settings.from_env().browser_key.get_secret_value()
    one, two = TranscriptStore.open_dir(str(tmp_path / "a")), TranscriptStore.open_dir(str(tmp_path / "b"))
    try:
        assert one.browser_secret() != two.browser_secret()  # each store made its own
        assert browser_state(one, key).secret == browser_state(two, key).secret == "one-key-for-every-replica"
        assert browser_state(one, "").secret == one.browser_secret()  # unset: the store's, as before
    finally:
        one.close()
        two.close()
