"""The alert rig: a REAL Prometheus Alertmanager (Debian's binary, its own
config) whose webhook receiver is the gateway, and helpers to post alerts
to either of them the way Alertmanager does."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from breakglass.natsd import free_port

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
ALERT_SECRET = "alert-secret-0123456789abcdef"
RECEIVER = "/api/alerts/alertmanager"

CONFIG = """\
route:
  receiver: breakglass
  group_by: [alertname]
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: breakglass
    webhook_configs:
      - url: {url}
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials_file: {secret}
"""


def require_alertmanager() -> str:
    if not Path(ALERTMANAGER).exists() and not shutil.which("prometheus-alertmanager"):
        pytest.skip("prometheus-alertmanager is not installed (scripts/test-deps.sh installs it)")
    return ALERTMANAGER if Path(ALERTMANAGER).exists() else str(shutil.which("prometheus-alertmanager"))


@dataclass
class Alertmanager:
    base: str
    log_path: Path

    def post(self, *alerts: dict) -> None:
        """Alerts into Alertmanager's own API, as Prometheus sends them."""
        answer = httpx.post(f"{self.base}/api/v2/alerts", json=list(alerts), timeout=10)
        assert answer.status_code == 200, answer.text

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def alertmanager(tmp: Path, gateway: str, secret_file: Path) -> Iterator[Alertmanager]:
    binary = require_alertmanager()
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "alertmanager.yml"
    config.write_text(CONFIG.format(url=gateway + RECEIVER, secret=secret_file))
    port = free_port()
    log_path = tmp / "alertmanager.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=debug"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    am = Alertmanager(f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{am.base}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("Alertmanager did not start:\n" + am.log()[-3000:])
            time.sleep(0.05)
        yield am
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def alert(name: str, *, resolved: bool = False, **labels: str) -> dict:
    """One alert for Alertmanager's v2 API."""
    now = datetime.now(timezone.utc)
    body = {
        "labels": {"alertname": name, "severity": "critical", **labels},
        "annotations": {"summary": f"{name} on the dev VM", "description": "from the test"},
        "startsAt": (now - timedelta(minutes=1)).isoformat(),
        "generatorURL": "http://prometheus.test/graph",
    }
    if resolved:
        body["endsAt"] = now.isoformat()
    return body


def webhook(*alerts: tuple[str, str, str], group_key: str = '{}:{alertname="DevVmDown"}', version: str = "4") -> bytes:
    """A version 4 webhook body as Alertmanager posts it: (name, fingerprint, status) per alert."""
    now = datetime.now(timezone.utc).isoformat()
    return json.dumps({
        "version": version, "groupKey": group_key, "truncatedAlerts": 0,
        "status": "firing" if any(s == "firing" for _, _, s in alerts) else "resolved",
        "receiver": "breakglass", "groupLabels": {"alertname": alerts[0][0]},
        "commonLabels": {"severity": "critical"}, "commonAnnotations": {}, "externalURL": "http://am.test",
        "alerts": [{
            "status": status, "labels": {"alertname": name, "severity": "critical"},
            "annotations": {"summary": f"{name} fired"}, "startsAt": now,
            "endsAt": now if status == "resolved" else "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.test/graph", "fingerprint": fingerprint,
        } for name, fingerprint, status in alerts],
    }).encode()
