"""The whole chat spine: real NATS, gateway, agent-runner as a subprocess,
the REAL Claude Code CLI, and the fake Messages API it talks to."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from breakglass.natsd import free_port
from tests.fakeapi import FakeAnthropic
from tests.fakeapi.cli import require_claude
from tests.processes import Service, base_env, runner_env as make_runner_env, stop_and_show
from tests.servers import wait_ready

TOKEN = "e2e-token"


@dataclass
class Stack:
    base: str
    headers: dict[str, str]
    api: FakeAnthropic
    gateway: Service
    runner: Service
    runner_env: dict[str, str]
    extras: list[Service] = field(default_factory=list)

    def restart_runner(self, **env: str) -> None:
        self.runner.stop()
        self.runner_env.update(env)
        self.runner = Service("agent_runner", self.runner_env, self.runner.log_path).start()


@pytest.fixture
def claude_bin() -> str:
    return str(require_claude())


@pytest.fixture
def stack(nats_url, tmp_path, claude_bin) -> Iterator[Stack]:
    port = free_port()
    with FakeAnthropic() as api:
        gateway_env = base_env(nats_url, tmp_path / "gw", BREAKGLASS_PORT=str(port), BREAKGLASS_API_TOKEN=TOKEN)
        runner_env = make_runner_env(nats_url, tmp_path / "runner", claude_bin, api.url)
        runner = Service("agent_runner", runner_env, tmp_path / "runner.log").start()
        gateway = Service("gateway", gateway_env, tmp_path / "gateway.log").start()
        stack = Stack(f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}, api, gateway, runner, runner_env)
        try:
            wait_ready(stack.base, timeout=20)
            yield stack
        finally:
            for extra in stack.extras:
                extra.stop()
            stop_and_show({"runner": stack.runner, "gateway": gateway})


@pytest.fixture
async def client(stack) -> Iterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base, headers=stack.headers, timeout=30) as c:
        yield c
