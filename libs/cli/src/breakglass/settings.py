"""What `breakglass up` itself needs from the environment, and what each
service is allowed to see of it.

`up` passes its environment down to the services, so this is where key
isolation (SPEC §2) is enforced: a secret a service does not need never
reaches its process, and so can never leak from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta
from msgspec.structs import replace

from events.config import NO_FILE, ConfigError, Env, load, nats_url

SERVICES: dict[str, str] = {
    "gateway": "gateway",
    "agent-runner": "agent_runner",
    "pve-executor": "pve_executor",
}
"""Service name (sub-command, log prefix) -> module run with `python -m`."""

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


Port = Annotated[int, Meta(ge=1, le=65535)]
MetricsPort = Annotated[int, Meta(ge=0, le=65535)]


class UpSettings(msgspec.Struct, frozen=True, kw_only=True, rename="upper"):
    """Each setting declared once: its variable (BREAKGLASS_ and the field's
    name, or its `name=`), type, default, bounds and description."""

    data_dir: Annotated[Path, Meta(description="NATS store, logs, secrets")] = Path(".breakglass")
    host: Annotated[str, Meta(description="the gateway's listen address")] = "127.0.0.1"
    port: Annotated[Port, Meta(description="the gateway's listen port")] = 8080
    nats_port: Annotated[Port, Meta(description="port of the embedded NATS server")] = 4222
    #: None = start the embedded one.
    nats_url: Annotated[str | None, Meta(description="an external NATS server")] = None
    grace_seconds: Annotated[float, Meta(ge=0.0, description="Ctrl-C: SIGTERM, then SIGKILL after this")] = (
        msgspec.field(default=5.0, name="STOP_GRACE_SECONDS"))
    #: The workers' scrape ports under `up`, next to the gateway's 8080 (whose
    #: own metrics are at /metrics), fixed so a Prometheus config can name
    #: them; standalone, a worker's default is 0 (off).
    runner_metrics_port: Annotated[MetricsPort, Meta(description="agent-runner's metrics port")] = 8081
    executor_metrics_port: Annotated[MetricsPort, Meta(description="pve-executor's metrics port")] = 8082
    metrics_host: Annotated[str, Meta(description="listen address of the workers' metrics")] = "127.0.0.1"

    @classmethod
    def from_env(cls, env: Env | None = None) -> "UpSettings":
        env = env or Env()
        s = load(cls, env, nats_url=nats_url(env, "breakglass up") if env.raw("NATS_URL") else None)
        return replace(s, data_dir=s.data_dir.resolve())

    @property
    def metrics_ports(self) -> dict[str, int]:
        """The workers' scrape ports (0 = off), by the variable that sets them."""
        return {"RUNNER_METRICS_PORT": self.runner_metrics_port, "EXECUTOR_METRICS_PORT": self.executor_metrics_port}

    @property
    def base_url(self) -> str:
        """Where a browser on this machine reaches the gateway."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"


__all__ = ["ConfigError", "SERVICES", "UpSettings", "service_env"]
