"""agent-runner settings, read once from the environment (SPEC §10)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from events.config import ConfigError, Env, nats_url
from events.verbs import APPROVE_MUTATING, AUTONOMOUS, Verb, two_person_verbs
from events.verbs import POLICIES as VERB_POLICIES

from events.vms import Vm, VmList
from events.vms import from_env as vms_from_env

from .devvm import DevvmTarget

DEFAULT_AGENT_FILE = Path("agents/breakglass.md")
__all__ = ["APPROVE_MUTATING", "AUTONOMOUS", "VERB_POLICIES", "Settings"]
#: Where the default lives in a source checkout, whatever the current directory.
_CHECKOUT_AGENT_FILE = Path(__file__).resolve().parents[4] / DEFAULT_AGENT_FILE


def _agent_file(env: Env) -> Path:
    """The agent definition; its body is appended to the CLI's system prompt."""
    configured = env.str("AGENT_FILE")
    path = Path(configured) if configured else DEFAULT_AGENT_FILE
    if not configured and not path.is_file() and _CHECKOUT_AGENT_FILE.is_file():
        path = _CHECKOUT_AGENT_FILE
    if not path.is_file():
        raise ConfigError(f"BREAKGLASS_AGENT_FILE: no agent definition at {path.resolve()}")
    return path.resolve()


def _devvm(env: Env) -> DevvmTarget | None:
    host = env.str("DEVVM_HOST")
    if host is None:
        return None
    return DevvmTarget(
        host=host,
        port=env.int("DEVVM_PORT", 22, minimum=1, maximum=65535),
        user=env.str("DEVVM_USER", "root") or "root",
        key_file=env.str("DEVVM_KEY_FILE"),
        known_hosts=env.str("DEVVM_KNOWN_HOSTS"),
    )


@dataclass(frozen=True)
class Settings:
    nats_url: str
    data_dir: Path
    claude_bin: str = "claude"
    model: str = "sonnet"
    turn_timeout_seconds: float = 1800.0
    max_turns: int = 4
    verb_policy: str = "approve-mutating"
    #: BREAKGLASS_TWO_PERSON_VERBS: the agent asks an operator for these whatever the policy.
    two_person: frozenset[Verb] = frozenset()
    #: How long a mutating verb the agent asks for waits for the operator's
    #: Approve/Deny (policy `approve-mutating`) before it counts as denied.
    approval_timeout_seconds: float = 300.0
    #: How long the agent's verb request waits for pve-executor's answer.
    verb_wait_seconds: float = 150.0
    devvm: DevvmTarget | None = None
    #: The VMs a session may be about (events.vms); the devvm key and its
    #: pinned host keys (BREAKGLASS_DEVVM_KEY_FILE/KNOWN_HOSTS) serve them all.
    vms: VmList = VmList((Vm(name="devvm", vmid=102),))
    devvm_key_file: str | None = None
    devvm_known_hosts: str | None = None
    agent_file: Path | None = None
    lease_seconds: float = 30.0
    lease_renew_seconds: float = 5.0
    cancel_grace_seconds: float = 5.0
    #: The Prometheus scrape endpoint (eventbus.metrics.serving); port 0 = off.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    #: Run the CLI without a sandbox where none can be made (README: Threat model). Loud.
    allow_unsandboxed: bool = False
    #: Warm CLIs (agent_runner.warm): at most this many per runner (0: none,
    #: every turn starts its own CLI); each is ended after this long idle.
    max_warm: int = 8
    warm_idle_seconds: float = 300.0

    def devvm_for(self, vm: Vm) -> DevvmTarget | None:
        """How the agent reaches `vm` over SSH (`ssh devvm`), or None."""
        parts = vm.devvm_parts()
        if parts is None:
            return None
        user, host, port = parts
        return DevvmTarget(host=host, port=port, user=user, key_file=self.devvm_key_file,
                           known_hosts=self.devvm_known_hosts)

    @classmethod
    def from_env(cls, env: Env | None = None) -> "Settings":
        env = env or Env()
        lease = env.float("LEASE_SECONDS", 30.0, minimum=1.0)
        renew = env.float("LEASE_RENEW_SECONDS", min(5.0, lease / 3), minimum=0.1)
        if renew >= lease:
            raise ConfigError("BREAKGLASS_LEASE_RENEW_SECONDS must be shorter than BREAKGLASS_LEASE_SECONDS")
        return cls(
            nats_url=nats_url(env, "agent-runner"),
            data_dir=Path(env.str("DATA_DIR", ".breakglass") or ".breakglass").resolve(),
            claude_bin=env.str("CLAUDE_BIN", "claude") or "claude",
            model=env.str("MODEL", "sonnet") or "sonnet",
            turn_timeout_seconds=env.float("TURN_TIMEOUT_SECONDS", 1800.0, minimum=1.0),
            max_turns=env.int("MAX_TURNS", 4, minimum=1, maximum=64),
            verb_policy=env.choice("VERB_POLICY", "approve-mutating", VERB_POLICIES),
            two_person=two_person_verbs(env),
            approval_timeout_seconds=env.float("APPROVAL_TIMEOUT_SECONDS", 300.0, minimum=1.0),
            verb_wait_seconds=env.float("VERB_WAIT_SECONDS", 150.0, minimum=1.0),
            devvm=_devvm(env),
            vms=vms_from_env(env),
            devvm_key_file=env.str("DEVVM_KEY_FILE"),
            devvm_known_hosts=env.str("DEVVM_KNOWN_HOSTS"),
            agent_file=_agent_file(env),
            lease_seconds=lease,
            lease_renew_seconds=renew,
            cancel_grace_seconds=env.float("CANCEL_GRACE_SECONDS", 5.0, minimum=0.1),
            metrics_host=env.str("METRICS_HOST", "127.0.0.1") or "127.0.0.1",
            metrics_port=env.int("RUNNER_METRICS_PORT", 0, minimum=0, maximum=65535),
            allow_unsandboxed=env.bool("ALLOW_UNSANDBOXED_AGENT", False),
            max_warm=env.int("MAX_WARM_CLIS", 8, minimum=0, maximum=256),
            warm_idle_seconds=env.float("WARM_IDLE_SECONDS", 300.0, minimum=1.0),
        )
