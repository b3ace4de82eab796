"""deploy/prometheus/alertmanager.yml: a config Alertmanager's own tool
accepts, routing the shipped VM alerts to the gateway's receiver and the
alerts about breakglass itself to people only."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.alerts.rig import RECEIVER

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
CONFIG = DEPLOY / "alertmanager.yml"
RULES = {r["alert"] for r in yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"][0]["rules"]}


def amtool(*args: str) -> str:
    tool = shutil.which("amtool")
    if tool is None:
        pytest.skip("amtool (prometheus-alertmanager) is not installed")
    done = subprocess.run([tool, *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def test_alertmanager_accepts_the_config():
    amtool("check-config", str(CONFIG))


def test_vm_alerts_reach_the_receiver_and_breakglass_alerts_only_people():
    config = yaml.safe_load(CONFIG.read_text())
    [hook] = [r for r in config["receivers"] if r["name"] == "breakglass-triage"][0]["webhook_configs"]
    assert hook["url"].endswith(RECEIVER) and hook["send_resolved"] is True
    routed = {name: amtool("config", "routes", "test", f"--config.file={CONFIG}", f"alertname={name}") for name in RULES}
    assert routed.pop("DevVmDown") == routed.pop("BreakglassMutatingVerbFailed") == "breakglass-triage,oncall"
    assert routed and set(routed.values()) == {"oncall"}


def test_the_routes_name_only_shipped_alerts():
    names = set(re.findall(r"[A-Z][A-Za-z]+", " ".join(
        m for route in yaml.safe_load(CONFIG.read_text())["route"]["routes"] for m in route["matchers"])))
    assert names - {"Breakglass"} <= RULES
