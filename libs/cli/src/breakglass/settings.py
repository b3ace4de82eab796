"""What `breakglass up` itself needs from the environment, and what each
service is allowed to see of it.

`up` passes its environment down to the services, so this is where key
isolation (SPEC §2) is enforced: a secret a service does not need never
reaches its process, and so can never leak from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from events.config import NO_FILE, ConfigError, Env, nats_url

SERVICES: dict[str, str] = {
    "gateway": "gateway",
    "agent-runner": "agent_runner",
    "pve-executor": "pve_executor",
}
"""Service name (sub-command, log prefix) -> module run with `python -m`."""

#: The workers' metrics ports under `up`, next to the gateway's default 8080
#: (whose own metrics are at /metrics); standalone, a worker's default is 0 (off).
UP_METRICS_PORTS: dict[str, int] = {"RUNNER_METRICS_PORT": 8081, "EXECUTOR_METRICS_PORT": 8082}

# Variables a service must not receive, matched as name prefixes.
# - the Proxmox key and host only in pve-executor;
# - the devvm key and host only in agent-runner (the agent's shell);
# - the Claude credentials only in agent-runner (it alone runs the CLI);
# - the gateway's bearer token only in the gateway, so nothing that runs
#   agent-written commands can call the HTTP API as the operator;
# - the operator's ssh-agent socket is not forwarded where no ssh to the
#   devvm is wanted: pve-executor must use its own pinned key file only.
_DENIED: dict[str, tuple[str, ...]] = {
    "gateway": (
        "BREAKGLASS_PVE_", "BREAKGLASS_DEVVM_", "ANTHROPIC_", "CLAUDE_CODE_", "SSH_AUTH_SOCK",
    ),
    "agent-runner": ("BREAKGLASS_PVE_", "BREAKGLASS_API_TOKEN", "BREAKGLASS_METRICS_TOKEN"),
    "pve-executor": (
        "BREAKGLASS_DEVVM_", "BREAKGLASS_API_TOKEN", "BREAKGLASS_METRICS_TOKEN", "ANTHROPIC_", "CLAUDE_CODE_",
        "SSH_AUTH_SOCK",
    ),
}


#: Not secrets, and every service must agree on them: the one VM's id (the
#: gateway and agent-runner name it in the verbs they ask for, pve-executor
#: and the host script check it), let through the prefixes above.
_SHARED = frozenset({"BREAKGLASS_PVE_VMID"})


def service_env(
    service: str, environ: Mapping[str, str], nats: str, password_file: str | None = None,
) -> dict[str, str]:
    """The environment `service` is started with: `environ` minus what it
    must not see, plus the NATS URL that `up` decided on and, for the
    embedded server, the file holding the service's own NATS password."""
    denied = _DENIED[service]
    env = {k: v for k, v in environ.items() if k in _SHARED or not k.startswith(denied)}
    env["BREAKGLASS_NATS_URL"] = nats
    if password_file is not None:
        env["BREAKGLASS_NATS_PASSWORD_FILE"] = password_file
    # The settings file is already in `environ`; read again, it would hand
    # the service back what was just filtered out.
    env["BREAKGLASS_CONFIG"] = NO_FILE
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach the terminal as they happen
    env["BREAKGLASS_LOG_FORMAT"] = "json"  # `up` keeps it in files and shows it its own way (supervisor.Printer)
    return env


@dataclass(frozen=True)
class UpSettings:
    data_dir: Path
    host: str
    port: int
    nats_port: int
    #: An external server; None = start the embedded one.
    nats_url: str | None
    grace_seconds: float
    #: The workers' scrape ports (0 = off), by the variable that sets them;
    #: fixed under `up` so a Prometheus config can name them.
    metrics_ports: dict[str, int]
    metrics_host: str = "127.0.0.1"

    @classmethod
    def from_env(cls, env: Env | None = None) -> "UpSettings":
        env = env or Env()
        external = nats_url(env, "breakglass up") if env.raw("NATS_URL") else None
        return cls(
            data_dir=Path(env.str("DATA_DIR", ".breakglass") or ".breakglass").resolve(),
            host=env.str("HOST", "127.0.0.1") or "127.0.0.1",
            port=env.int("PORT", 8080, minimum=1, maximum=65535),
            nats_port=env.int("NATS_PORT", 4222, minimum=1, maximum=65535),
            nats_url=external,
            grace_seconds=env.float("STOP_GRACE_SECONDS", 5.0, minimum=0.0),
            metrics_ports={
                name: env.int(name, default, minimum=0, maximum=65535) for name, default in UP_METRICS_PORTS.items()
            },
            metrics_host=env.str("METRICS_HOST", "127.0.0.1") or "127.0.0.1",
        )

    @property
    def base_url(self) -> str:
        """Where a browser on this machine reaches the gateway."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"


__all__ = ["ConfigError", "SERVICES", "UpSettings", "service_env"]
