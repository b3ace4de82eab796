"""deploy/prometheus and deploy/grafana name only metrics that exist, the
jobs the scrape config defines, and the mutating verbs events.verbs has."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import agent_runner.metrics  # noqa: F401 - registers its metrics
import eventbus.metrics  # noqa: F401
import gateway.metrics  # noqa: F401
import pve_executor.metrics  # noqa: F401
from events.verbs import MUTATING

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NAME = re.compile(r"\bbreakglass_[a-z_]+")
ALERTS = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"][0]["rules"]
SCRAPE = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
DASHBOARD = json.loads((DEPLOY / "grafana" / "breakglass.json").read_text())


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported() -> set[str]:
    """Every series name, including those of labelled metrics not yet used."""
    return {family.name + suffix for family in REGISTRY.collect() for suffix in SUFFIXES.get(family.type, ())}


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in DASHBOARD["panels"] for target in panel.get("targets", [])]


def test_alerts_and_dashboard_name_only_exported_metrics():
    names = exported()
    used = {n for expr in [r["expr"] for r in ALERTS] + dashboard_exprs() for n in NAME.findall(expr)}
    assert used and not used - names, f"not exported: {sorted(used - names)}"


def test_the_four_issue_alerts_exist_and_name_real_jobs():
    assert {r["alert"] for r in ALERTS} >= {
        "BreakglassTurnPastTimeout", "BreakglassRunnerLeaseLapsed", "BreakglassMutatingVerbFailed",
        "BreakglassGatewayNatsDown",
    }
    jobs = {job["job_name"] for job in SCRAPE["scrape_configs"]}
    for rule in ALERTS:
        for job in re.findall(r'job="([^"]+)"', rule["expr"]):
            assert job in jobs


def test_the_mutating_verb_alert_names_exactly_the_mutating_verbs():
    [rule] = [r for r in ALERTS if r["alert"] == "BreakglassMutatingVerbFailed"]
    pattern = re.search(r'verb=~"([^"]+)"', rule["expr"]).group(1)  # type: ignore[union-attr]
    assert set(pattern.split("|")) == {v.value for v in MUTATING}


def test_the_dashboard_never_groups_by_an_id():
    for expr in dashboard_exprs():
        for group in re.findall(r"by \(([^)]*)\)", expr):
            assert not {g.strip() for g in group.split(",")} & {"session_id", "turn_id", "request_id"}
