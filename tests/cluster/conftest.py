"""The chat spine on a 3-node JetStream cluster: the real gateway and
agent-runner processes (each with its own NATS user, given all three
servers in BREAKGLASS_NATS_URL), the REAL Claude Code CLI on the fake
Messages API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from breakglass.natsd import free_port
from eventbus import access
from tests.cluster.rig import REPLICAS, Cluster, running_cluster
from tests.fakeapi import FakeAnthropic
from tests.fakeapi.cli import require_claude
from tests.processes import Service, base_env, runner_env, stop_and_show
from tests.servers import wait_ready

TOKEN = "cluster-token"


@dataclass
class ClusterStack:
    cluster: Cluster
    base: str
    headers: dict[str, str]
    api: FakeAnthropic
    gateway: Service
    runner: Service


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path / "cluster") as c:
        try:
            yield c
        finally:
            print(c.logs())


@pytest.fixture
def stack(cluster: Cluster, tmp_path: Path) -> Iterator[ClusterStack]:
    claude = str(require_claude())
    port = free_port()
    replicas = {"BREAKGLASS_NATS_REPLICAS": str(REPLICAS)}
    with FakeAnthropic() as api:
        gateway_env = base_env(
            cluster.url(access.GATEWAY), tmp_path / "gw", BREAKGLASS_PORT=str(port), BREAKGLASS_API_TOKEN=TOKEN,
            **replicas,
        )
        r_env = runner_env(cluster.url(access.AGENT_RUNNER), tmp_path / "runner", claude, api.url, **replicas)
        # A lease with slack for a leader election: the test is about losing
        # nothing, not about reaping (tests/e2e has the short-lease cases).
        r_env.update(BREAKGLASS_LEASE_SECONDS="30", BREAKGLASS_LEASE_RENEW_SECONDS="1")
        runner = Service("agent_runner", r_env, tmp_path / "runner.log").start()
        gateway = Service("gateway", gateway_env, tmp_path / "gateway.log").start()
        s = ClusterStack(cluster, f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}, api, gateway, runner)
        try:
            wait_ready(s.base, timeout=30)
            yield s
        finally:
            stop_and_show({"runner": runner, "gateway": gateway})


@pytest.fixture
async def client(stack: ClusterStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base, headers=stack.headers, timeout=30) as c:
        yield c
