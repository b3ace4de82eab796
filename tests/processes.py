"""Services as real subprocesses (`python -m <service>`), for end-to-end and
fault tests: the same entry points `breakglass up` and compose run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Service:
    module: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> "Service":
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module], env=self.env, cwd=REPO,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, sig: int) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL the service (and only it: its CLI children are its own business)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def stop_and_show(services: dict[str, Service], tail: int = 5000) -> None:
    """Stop the services in order, then print the end of each one's log:
    pytest shows it beside a failing test, which is when it is wanted."""
    for service in services.values():
        service.stop()
    for name, service in services.items():
        print(f"---- {name} log ----\n" + service.log()[-tail:])


def base_env(nats_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BREAKGLASS_NATS_URL": nats_url,
        "BREAKGLASS_DATA_DIR": str(data_dir),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


def runner_env(nats_url: str, data_dir: Path, claude_bin: str, api_url: str, **extra: str) -> dict[str, str]:
    """agent-runner driving the real CLI against the fake Messages API, with
    a short lease so lost-runner paths take seconds, not minutes."""
    return base_env(
        nats_url, data_dir,
        BREAKGLASS_CLAUDE_BIN=claude_bin,
        BREAKGLASS_AGENT_FILE=str(REPO / "agents" / "breakglass.md"),
        BREAKGLASS_LEASE_SECONDS="4",
        BREAKGLASS_LEASE_RENEW_SECONDS="0.5",
        BREAKGLASS_CANCEL_GRACE_SECONDS="3",
        ANTHROPIC_BASE_URL=api_url,
        ANTHROPIC_API_KEY="test-key",
        CLAUDE_CODE_MAX_RETRIES="0",
        **extra,
    )
