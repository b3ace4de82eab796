"""The whole triage path, real parts only: nats-server, the gateway and
agent-runner as subprocesses, the REAL Claude CLI on the fake Messages API,
pve-executor (in this loop) over the real sshd and the shipped forced
command on a fake `qm`, and (per test) a real Alertmanager."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from breakglass.natsd import free_port
from tests.alerts.rig import ALERT_SECRET, RECEIVER
from tests.fakeapi import FakeAnthropic
from tests.notifier.rig import Receiver, running
from tests.notifier.rig import settings_for as notifier_settings
from tests.fakeapi.cli import require_claude
from tests.processes import Service, base_env, runner_env, stop_and_show
from tests.pve_executor.rig import executor, settings_for
from tests.pve_host.conftest import ssh_host as pve  # noqa: F401 - fixture
from tests.pve_host.conftest import sshd_server  # noqa: F401 - fixture
from tests.servers import wait_ready

TOKEN = "operator-token-abcdef"
LINK_BASE = "https://breakglass.example/"


@dataclass
class Stack:
    base: str
    api: FakeAnthropic
    secret_file: Path
    gateway: Service
    runner: Service

    @property
    def operator(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    @property
    def alertmanager_auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ALERT_SECRET}"}


def _secret(tmp_path: Path) -> Path:
    path = tmp_path / "alert-token"
    path.write_text(ALERT_SECRET + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def window() -> str:
    """BREAKGLASS_ALERT_WINDOW_SECONDS of the stack (tests override it)."""
    return "600"


@pytest.fixture
def urls(nats_url) -> Callable[[str], str]:
    """Each service's NATS URL by role (one open server here; a secured
    server with a user per role in test_secured.py)."""
    return lambda role: nats_url


@pytest.fixture
def stack(urls, tmp_path, window) -> Iterator[Stack]:
    claude = str(require_claude())
    port = free_port()
    secret = _secret(tmp_path)
    with FakeAnthropic() as api:
        gateway_env = base_env(
            urls("gateway"), tmp_path / "gw", BREAKGLASS_PORT=str(port), BREAKGLASS_API_TOKEN=TOKEN,
            BREAKGLASS_ALERT_TOKEN_FILE=str(secret), BREAKGLASS_ALERT_WINDOW_SECONDS=window,
            BREAKGLASS_VERB_WAIT_SECONDS="40",
        )
        # `autonomous` on purpose: a triage turn must wait for a human all the same.
        env = runner_env(urls("agent-runner"), tmp_path / "runner", claude, api.url, BREAKGLASS_VERB_POLICY="autonomous")
        runner = Service("agent_runner", env, tmp_path / "runner.log").start()
        gateway = Service("gateway", gateway_env, tmp_path / "gateway.log").start()
        stack = Stack(f"http://127.0.0.1:{port}", api, secret, gateway, runner)
        try:
            wait_ready(stack.base, timeout=20)
            yield stack
        finally:
            stop_and_show({"runner": runner, "gateway": gateway})


@pytest.fixture
async def pve_executor(stack, urls, sshd_server, pve) -> AsyncIterator[None]:  # noqa: F811
    async with executor(settings_for(urls("pve-executor"), sshd_server)):
        yield


@pytest.fixture
async def notifier(stack, nats_url) -> AsyncIterator[Receiver]:
    """examples/notifier, running, posting JSON to a loopback receiver."""
    receiver = Receiver().start()
    try:
        async with running(notifier_settings(nats_url, receiver.url, link_base=LINK_BASE)):
            yield receiver
    finally:
        receiver.stop()


async def diagnosis_notification(receiver: Receiver, timeout: float = 20.0) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for request in receiver.snapshot():
            body = json.loads(request.body)
            if body.get("kind") == "diagnosis":
                return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"no diagnosis notification; got {[r.body[:200] for r in receiver.snapshot()]}")


@pytest.fixture
async def operator(stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base, headers=stack.operator, timeout=30) as client:
        yield client


async def post_webhook(stack: Stack, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.base, timeout=30) as client:
        return await client.post(RECEIVER, content=body, headers={
            "Content-Type": "application/json", **(stack.alertmanager_auth if headers is None else headers)})


async def events(client: httpx.AsyncClient, session_id: str) -> list[dict]:
    answer = await client.get(f"/api/session/{session_id}/events", params={"limit": 1000})
    assert answer.status_code == 200, answer.text
    return answer.json()["events"]


async def wait_for(client, session_id: str, done, timeout: float = 60.0) -> list[dict]:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        seen = await events(client, session_id)
        if done(seen):
            return seen
        if loop.time() > deadline:
            raise AssertionError(f"timed out; kinds so far: {[e['kind'] for e in seen]}")
        await asyncio.sleep(0.1)


async def alert_sessions(client: httpx.AsyncClient) -> list[dict]:
    answer = await client.get("/api/sessions", params={"limit": 500})
    assert answer.status_code == 200, answer.text
    return [s for s in answer.json()["sessions"] if s["created_by"] == "alertmanager"]


async def wait_for_session(client: httpx.AsyncClient, timeout: float = 30.0) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        found = await alert_sessions(client)
        if found:
            return found[0]["session_id"]
        await asyncio.sleep(0.1)
    raise AssertionError("no session was opened by alertmanager")


def kinds(seen: list[dict], kind: str) -> list[dict]:
    return [e for e in seen if e["kind"] == kind]
