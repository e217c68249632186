"""`python -m bench cluster --short`: PostgreSQL, two real engines, HAProxy (deploy/haproxy.cfg),
two app replicas, realtime streams and uploads through the proxy; one engine and one
replica SIGKILLed mid-run. Nothing may be lost: the router resends the dead engine's
decodes, and the clients of the dead replica reconnect through the proxy and send the
utterance it had not finalised again (counted as resent; each must then be delivered).

About 4 minutes on the shared 2-core machine (two eager vLLM starts are most of it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration import pg_server

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("haproxy"), reason="haproxy is not installed (apt-get install haproxy; scripts/setup.sh --test)"),
    pytest.mark.skipif(pg_server.missing_reason() is not None, reason=str(pg_server.missing_reason())),
]


def test_cluster_short_loses_nothing(tmp_path):
    out = tmp_path / "cluster.json"
    done = subprocess.run([sys.executable, "-m", "bench", "cluster", "--short", "--out", str(out)], cwd=ROOT,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True, timeout=840, check=False)
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    finals, events = report["finals"], report["events"]
    assert finals["started"] >= 4 and finals["lost"] == 0
    assert finals["delivered"] == finals["started"] - finals["resent"]
    assert report["uploads"]["sent"] >= 2 and not report["uploads"]["failed"]
    # Both engines worked before one was killed; the survivor carried the rest.
    assert all(n > 0 for n in events["decodes_before_engine_kill"].values()), events
    assert report["decodes_per_engine"]["engine2"] > events["decodes_before_engine_kill"]["engine2"]
    # The killed replica's streams reconnected to the other one.
    assert events["replica_signal"] == "kill" and events["replica_exit_code"] == -9
    assert report["reconnects"] >= 1 and report["survivors_alive"]
    assert report["schema_versions"]  # both replicas ran on the one PostgreSQL database
