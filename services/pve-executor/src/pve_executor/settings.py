"""pve-executor settings, read once from the environment (SPEC §10).

Fail closed, but answer: a missing host, host key pin or client key does not
stop the service. It starts, logs the problem, and answers every verb with a
rejected result naming the missing setting, so the operator reads the reason
in the PWA instead of waiting for a time-out. Nothing is ever sent to a host
whose key is not pinned.
"""

from __future__ import annotations

import os
from typing import Annotated

import msgspec
from msgspec import Meta

from events.config import Env, load, nats_url
from events.verbs import APPROVE_MUTATING, Policy, Verb, two_person_verbs
from events.vms import Vm, VmList
from events.vms import from_env as vms_from_env

#: Everything that happens after the connection is up is bounded by the verb
#: timeout; getting the connection up has its own, shorter limit.
CONNECT_TIMEOUT_SECONDS = 10.0
#: Slack added to the longest a verb can take before its VM lock counts as
#: abandoned (the executor holding it died) and may be taken over.
LOCK_MARGIN_SECONDS = 15.0
Seconds = Annotated[float, Meta(ge=1.0)]


class Settings(msgspec.Struct, frozen=True, kw_only=True, rename="upper"):
    """Each setting declared once: its variable (BREAKGLASS_ and the field's
    name, or its `name=`), type, default, bounds and description. Fields
    without a description are not settings: fixed, or set by tests."""

    nats_url: Annotated[str, Meta(description="the NATS server(s), with pve-executor's user")]
    pve_host: Annotated[str | None, Meta(description="the Proxmox host")] = None
    pve_port: Annotated[int, Meta(ge=1, le=65535, description="its SSH port")] = 22
    pve_user: Annotated[str, Meta(description="the forced-command account")] = "breakglass"
    pve_key_file: Annotated[str | None, Meta(description="the Proxmox key")] = None
    pve_known_hosts: Annotated[str | None, Meta(description="the pinned host key")] = None
    #: The executor's allow-list, checked before anything is sent.
    vms: Annotated[VmList, Meta(description="the VMs verbs may act on (events.vms)")] = VmList(
        (Vm(name="devvm", vmid=102),))
    verb_timeout_seconds: Annotated[Seconds, Meta(description="a verb's time limit")] = 120.0
    #: pve-executor was down: refused, not run late (the operator saw it fail already).
    mutating_max_age_seconds: Annotated[Seconds, Meta(description="a mutating verb older than this is "
                                                                   "refused")] = msgspec.field(
        default=60.0, name="VERB_MAX_AGE_SECONDS")
    output_cap_bytes: Annotated[int, Meta(ge=1024, le=1024 * 1024, description="cap of a verb's stdout and "
                                                                               "stderr, each")] = 64 * 1024
    #: The ssh-agent socket (SSH_AUTH_SOCK), used only when no key file is set.
    agent_socket: str | None = None
    connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS
    lock_margin_seconds: float = LOCK_MARGIN_SECONDS
    #: Renewed every third of it; at most 15 s, so a lost verb does not hold
    #: the power buttons for long.
    verb_lease_seconds: Annotated[float, Meta(ge=1.0, le=15.0, description="a running mutating verb's lease on "
                                                                           "its VM lock")] = 10.0
    #: How long a repeated idempotency key waits for the first run's result;
    #: None = as long as that run can possibly take.
    duplicate_wait_seconds: float | None = None
    concurrency: int = 4
    #: How often the consumer wakes to notice a stop (and fetch again).
    poll_seconds: float = 1.0
    #: The Prometheus scrape endpoint (eventbus.metrics.serving); port 0 = off.
    metrics_host: Annotated[str, Meta(description="listen address of the metrics endpoint")] = "127.0.0.1"
    metrics_port: Annotated[int, Meta(ge=0, le=65535, description="metrics port (0: off)")] = msgspec.field(
        default=0, name="EXECUTOR_METRICS_PORT")
    #: Enforced here too: under `approve-mutating` an agent's mutating verb
    #: runs only with the operator's grant (grants).
    verb_policy: Annotated[Policy, Meta(description="which verbs the agent runs without an operator")] = (
        APPROVE_MUTATING)
    #: Enforced here too: such a verb runs only against a grant by someone
    #: other than who asked (grants).
    two_person: Annotated[frozenset[Verb], Meta(description="verbs under the two-person rule")] = msgspec.field(
        default=frozenset(), name="TWO_PERSON_VERBS")

    @classmethod
    def from_env(cls, env: Env | None = None, agent_socket: str | None = None) -> "Settings":
        env = env or Env()
        return load(
            cls, env,
            nats_url=nats_url(env, "pve-executor"),
            vms=vms_from_env(env),
            agent_socket=agent_socket if agent_socket is not None else (os.environ.get("SSH_AUTH_SOCK") or None),
            two_person=two_person_verbs(env),
        )

    @property
    def pve_vmid(self) -> int:
        """The default VM's id (the first of the list)."""
        return self.vms.default.vmid

    def command(self, verb: str, vm: Vm) -> str:
        """What is sent to the host script: the bare verb while there is one
        VM (a host script from before many VMs understands it), else the verb
        and the VM's id, which the script checks against its own VMIDS."""
        return verb if len(self.vms.vms) == 1 else f"{verb} {vm.vmid}"

    @property
    def longest_run_seconds(self) -> float:
        """The most a verb can take from connect to answer."""
        return self.connect_timeout_seconds + self.verb_timeout_seconds

    @property
    def sweep_seconds(self) -> float:
        """How often a lost verb is looked for: a lost verb is ended within
        its lease plus this."""
        return min(2.0, self.verb_lease_seconds / 4)

    @property
    def lock_stale_seconds(self) -> float:
        return self.longest_run_seconds + self.lock_margin_seconds

    @property
    def duplicate_wait(self) -> float:
        if self.duplicate_wait_seconds is not None:
            return self.duplicate_wait_seconds
        return self.longest_run_seconds + 5.0

    def problem(self) -> str | None:
        """Why verbs cannot run with these settings, or None when they can."""
        prefix = "pve-executor is not configured: "
        if not self.pve_host:
            return prefix + "BREAKGLASS_PVE_HOST is unset"
        if not self.pve_known_hosts:
            return prefix + (
                "BREAKGLASS_PVE_KNOWN_HOSTS is unset; the Proxmox host key must be pinned "
                "(a known_hosts file holding it), it is never accepted unseen"
            )
        if not self.pve_key_file and not self.agent_socket:
            return prefix + "neither BREAKGLASS_PVE_KEY_FILE nor an ssh-agent (SSH_AUTH_SOCK) gives a client key"
        return None

