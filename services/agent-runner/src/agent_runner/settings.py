"""agent-runner settings, read once from the environment (SPEC §10)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta
from msgspec.structs import replace

from events.config import ConfigError, Env, load, nats_url
from events.verbs import APPROVE_MUTATING, AUTONOMOUS, Policy, Verb, two_person_verbs
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


Seconds = Annotated[float, Meta(ge=1.0)]
Grace = Annotated[float, Meta(ge=0.1)]


class Settings(msgspec.Struct, frozen=True, kw_only=True, rename="upper"):
    """Each setting declared once: its variable (BREAKGLASS_ and the field's
    name, or its `name=`), type, default, bounds and description."""

    nats_url: Annotated[str, Meta(description="the NATS server(s), with agent-runner's user")]
    data_dir: Annotated[Path, Meta(description="per-session CLI homes")] = Path(".breakglass")
    claude_bin: Annotated[str, Meta(description="the Claude Code CLI")] = "claude"
    model: Annotated[str, Meta(description="default model")] = "sonnet"
    turn_timeout_seconds: Annotated[Seconds, Meta(description="a turn's time limit")] = 1800.0
    max_turns: Annotated[int, Meta(ge=1, le=64, description="concurrent turns per replica")] = 4
    verb_policy: Annotated[Policy, Meta(description="which verbs the agent runs without an operator")] = (
        APPROVE_MUTATING)
    #: The agent asks an operator for these whatever the policy.
    two_person: Annotated[frozenset[Verb], Meta(description="verbs under the two-person rule")] = msgspec.field(
        default=frozenset(), name="TWO_PERSON_VERBS")
    #: Policy `approve-mutating`: then the verb counts as denied.
    approval_timeout_seconds: Annotated[Seconds, Meta(description="how long a mutating verb the agent asks "
                                                                   "for waits for Approve/Deny")] = 300.0
    verb_wait_seconds: Annotated[Seconds, Meta(description="how long a verb request waits for pve-executor")] = 150.0
    devvm: DevvmTarget | None = None
    #: The devvm key and its pinned host keys serve every VM.
    vms: Annotated[VmList, Meta(description="the VMs a session may be about (events.vms)")] = VmList(
        (Vm(name="devvm", vmid=102),))
    devvm_key_file: Annotated[str | None, Meta(description="the devvm key")] = None
    devvm_known_hosts: Annotated[str | None, Meta(description="pinned devvm host keys")] = None
    agent_file: Annotated[Path | None, Meta(description="the agent definition")] = None
    lease_seconds: Annotated[Seconds, Meta(description="a running turn's lease")] = 30.0
    #: Unset: this, or a third of the lease when that is shorter.
    lease_renew_seconds: Annotated[Grace, Meta(description="how often the lease is renewed")] = 5.0
    cancel_grace_seconds: Annotated[Grace, Meta(description="Stop: SIGINT, then SIGKILL after this")] = 5.0
    #: The Prometheus scrape endpoint (eventbus.metrics.serving); port 0 = off.
    metrics_host: Annotated[str, Meta(description="listen address of the metrics endpoint")] = "127.0.0.1"
    metrics_port: Annotated[int, Meta(ge=0, le=65535, description="metrics port (0: off)")] = msgspec.field(
        default=0, name="RUNNER_METRICS_PORT")
    #: README: Threat model. Loud.
    allow_unsandboxed: Annotated[bool, Meta(description="run the CLI where no sandbox can be made")] = msgspec.field(
        default=False, name="ALLOW_UNSANDBOXED_AGENT")
    #: Warm CLIs (agent_runner.warm): 0 = every turn starts its own CLI.
    max_warm: Annotated[int, Meta(ge=0, le=256, description="warm CLIs per runner")] = msgspec.field(
        default=8, name="MAX_WARM_CLIS")
    warm_idle_seconds: Annotated[Seconds, Meta(description="a warm CLI idle this long is ended")] = 300.0

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
        s = load(cls, env, nats_url=nats_url(env, "agent-runner"), two_person=two_person_verbs(env),
                 devvm=_devvm(env), vms=vms_from_env(env), agent_file=_agent_file(env))
        # Unset, the renewal follows the lease: at most a third of it.
        renew = s.lease_renew_seconds if env.raw("LEASE_RENEW_SECONDS") else min(s.lease_renew_seconds,
                                                                                 s.lease_seconds / 3)
        if renew >= s.lease_seconds:
            raise ConfigError("BREAKGLASS_LEASE_RENEW_SECONDS must be shorter than BREAKGLASS_LEASE_SECONDS")
        return replace(s, lease_renew_seconds=renew, data_dir=s.data_dir.resolve())
