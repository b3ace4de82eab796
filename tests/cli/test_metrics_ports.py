"""`breakglass up` and the services' metrics: fixed worker ports that must
not collide, every service scrapeable, the scrape token only in the gateway."""

from __future__ import annotations

import stat
from pathlib import Path

import urllib.error
import urllib.request

import pytest

from breakglass.settings import UpSettings
from breakglass.up import preflight
from events.config import ConfigError, Env
from prometheus_client.parser import text_string_to_metric_families

from tests.cli.proc import environ_of, wait_for
from tests.cli.test_up import MODULES, ready, services

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
EXTERNAL = {"BREAKGLASS_NATS_URL": "nats://127.0.0.1:4222"}  # no embedded server to look for


def test_up_gives_the_workers_fixed_metrics_ports_next_to_the_gateway():
    s = UpSettings.from_env(Env({}))
    assert s.metrics_ports == {"RUNNER_METRICS_PORT": 8081, "EXECUTOR_METRICS_PORT": 8082}
    assert s.port not in s.metrics_ports.values() and s.nats_port not in s.metrics_ports.values()
    off = UpSettings.from_env(Env({"BREAKGLASS_RUNNER_METRICS_PORT": "0"}))
    assert off.metrics_ports["RUNNER_METRICS_PORT"] == 0


@pytest.mark.parametrize("clash", [
    {"BREAKGLASS_RUNNER_METRICS_PORT": "18080", "BREAKGLASS_PORT": "18080"},
    {"BREAKGLASS_RUNNER_METRICS_PORT": "18081", "BREAKGLASS_EXECUTOR_METRICS_PORT": "18081"},
])
def test_a_metrics_port_that_collides_is_one_line_before_anything_starts(clash):
    with pytest.raises(ConfigError, match="METRICS_PORT"):
        preflight(UpSettings.from_env(Env({**EXTERNAL, **clash})))


def scrape(url: str, token: str | None = None) -> dict[str, float]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with NO_PROXY.open(request, timeout=2) as answer:
            text = answer.read().decode()
    except (urllib.error.URLError, OSError):
        return {}
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


def test_every_service_under_up_is_scrapeable_and_only_the_gateway_sees_the_scrape_token(start_up, ports):
    up = start_up(BREAKGLASS_API_TOKEN="api-t0ken", BREAKGLASS_METRICS_TOKEN="scrape-t0ken")
    wait_for(lambda: ready(up.base), 15, "GET /ready to answer 200")
    urls = {
        "gateway": (f"{up.base}/metrics", "scrape-t0ken"),
        "agent_runner": (f"http://127.0.0.1:{ports['BREAKGLASS_RUNNER_METRICS_PORT']}/metrics", None),
        "pve_executor": (f"http://127.0.0.1:{ports['BREAKGLASS_EXECUTOR_METRICS_PORT']}/metrics", None),
    }
    for name, (url, token) in urls.items():
        wait_for(lambda: scrape(url, token).get("breakglass_nats_connected") == 1, 15, f"{name}'s metrics")
    pids = services(up)
    gateway, runner, executor = (environ_of(pids[m]) for m in MODULES)
    # As a file, never a variable (/proc/<pid>/environ), and the gateway's only.
    assert "BREAKGLASS_METRICS_TOKEN" not in gateway
    assert Path(gateway["BREAKGLASS_METRICS_TOKEN_FILE"]).read_text().strip() == "scrape-t0ken"
    assert stat.S_IMODE(Path(gateway["BREAKGLASS_METRICS_TOKEN_FILE"]).stat().st_mode) == 0o600
    for env in (runner, executor):
        assert not [k for k in env if k.startswith("BREAKGLASS_METRICS_TOKEN")]
        assert "scrape-t0ken" not in " ".join(env.values())
