"""The e2e stack (tests/e2e: real NATS, gateway, agent-runner, the real
Claude CLI on the fake Messages API) with every service scrapeable, plus
the real pve-executor as a subprocess over a real sshd and the shipped
forced command on a fake `qm`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from breakglass.natsd import free_port
from tests.e2e.conftest import claude_bin, client, stack  # noqa: F401 - fixtures, built on here
from tests.processes import Service, base_env
from tests.pve_host.conftest import ssh_host as pve  # noqa: F401 - fixture
from tests.pve_host.conftest import sshd_server  # noqa: F401 - fixture
from tests.pve_host.host import VMID

from .scrape import eventually


@dataclass
class Observed:
    gateway: str
    runner: str
    executor: str
    #: Everything configured that must never show in a scrape.
    secrets: list[str]


def ports(n: int) -> list[int]:
    chosen: set[int] = set()
    while len(chosen) < n:
        chosen.add(free_port())
    return sorted(chosen)


@pytest.fixture
async def observed(stack, nats_url, sshd_server, pve, tmp_path: Path) -> Observed:  # noqa: F811
    runner_port, executor_port = ports(2)
    stack.restart_runner(BREAKGLASS_RUNNER_METRICS_PORT=str(runner_port))
    executor_env = base_env(
        nats_url, tmp_path / "executor",
        BREAKGLASS_EXECUTOR_METRICS_PORT=str(executor_port),
        BREAKGLASS_PVE_HOST=sshd_server.host, BREAKGLASS_PVE_PORT=str(sshd_server.port),
        BREAKGLASS_PVE_USER=sshd_server.user, BREAKGLASS_PVE_KEY_FILE=str(sshd_server.client_key),
        BREAKGLASS_PVE_KNOWN_HOSTS=str(sshd_server.known_hosts_file), BREAKGLASS_PVE_VMID=VMID,
    )
    stack.extras.append(Service("pve_executor", executor_env, tmp_path / "executor.log").start())
    found = Observed(
        gateway=f"{stack.base}/metrics",
        runner=f"http://127.0.0.1:{runner_port}/metrics",
        executor=f"http://127.0.0.1:{executor_port}/metrics",
        secrets=[
            stack.headers["Authorization"].removeprefix("Bearer "),
            stack.runner_env["ANTHROPIC_API_KEY"],
            Path(sshd_server.client_key).read_text(),
        ],
    )
    # Ready to count: connected, and (runner) its turn gauges wired.
    connected = lambda s: s.value("breakglass_nats_connected") == 1  # noqa: E731
    await eventually(found.gateway, connected, headers=stack.headers)
    await eventually(found.runner, lambda s: connected(s) and s.has("breakglass_turn_timeout_seconds"))
    await eventually(found.executor, connected)
    return found
