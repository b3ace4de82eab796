"""pve-executor settings, read once from the environment (SPEC §10).

Fail closed, but answer: a missing host, host key pin or client key does not
stop the service. It starts, logs the problem, and answers every verb with a
rejected result naming the missing setting, so the operator reads the reason
in the PWA instead of waiting for a time-out. Nothing is ever sent to a host
whose key is not pinned.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from events.config import PREFIX, ConfigError, Env, nats_url
from events.verbs import APPROVE_MUTATING, POLICIES, Verb, two_person_verbs
from events.vms import Vm, VmList
from events.vms import from_env as vms_from_env

#: Everything that happens after the connection is up is bounded by the verb
#: timeout; getting the connection up has its own, shorter limit.
CONNECT_TIMEOUT_SECONDS = 10.0
#: Slack added to the longest a verb can take before its VM lock counts as
#: abandoned (the executor holding it died) and may be taken over.
LOCK_MARGIN_SECONDS = 15.0
#: A running mutating verb's lease on its VM lock (renewed every third of
#: it): an executor dead this long has its verb ended `lost`.
VERB_LEASE_SECONDS = 10.0
MAX_VERB_LEASE_SECONDS = 15.0


@dataclass(frozen=True)
class Settings:
    nats_url: str
    pve_host: str | None = None
    pve_port: int = 22
    pve_user: str = "breakglass"
    pve_key_file: str | None = None
    pve_known_hosts: str | None = None
    #: The VMs verbs may act on (BREAKGLASS_VMS, or the one BREAKGLASS_PVE_VMID
    #: names): the executor's allow-list, checked before anything is sent.
    vms: VmList = VmList((Vm(name="devvm", vmid=102),))
    verb_timeout_seconds: float = 120.0
    #: A mutating verb that waited on the queue longer than this (pve-executor
    #: was down) is refused, not run late: the operator saw it fail already.
    mutating_max_age_seconds: float = 60.0
    output_cap_bytes: int = 64 * 1024
    #: The ssh-agent socket (SSH_AUTH_SOCK), used only when no key file is set.
    agent_socket: str | None = None
    connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS
    lock_margin_seconds: float = LOCK_MARGIN_SECONDS
    verb_lease_seconds: float = VERB_LEASE_SECONDS
    #: How long a repeated idempotency key waits for the first run's result;
    #: None = as long as that run can possibly take.
    duplicate_wait_seconds: float | None = None
    concurrency: int = 4
    #: How often the consumer wakes to notice a stop (and fetch again).
    poll_seconds: float = 1.0
    #: The Prometheus scrape endpoint (eventbus.metrics.serving); port 0 = off.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    #: BREAKGLASS_VERB_POLICY, enforced here too: under `approve-mutating`
    #: an agent's mutating verb runs only with the operator's grant (grants).
    verb_policy: str = APPROVE_MUTATING
    #: BREAKGLASS_TWO_PERSON_VERBS, enforced here too: such a verb runs only
    #: against a grant by someone other than who asked (grants).
    two_person: frozenset[Verb] = frozenset()

    @classmethod
    def from_env(cls, env: Env | None = None, agent_socket: str | None = None) -> "Settings":
        env = env or Env()
        return cls(
            nats_url=nats_url(env, "pve-executor"),
            pve_host=env.str("PVE_HOST"),
            pve_port=env.int("PVE_PORT", 22, minimum=1, maximum=65535),
            pve_user=env.str("PVE_USER", "breakglass") or "breakglass",
            pve_key_file=env.str("PVE_KEY_FILE"),
            pve_known_hosts=env.str("PVE_KNOWN_HOSTS"),
            vms=vms_from_env(env),
            verb_timeout_seconds=env.float("VERB_TIMEOUT_SECONDS", 120.0, minimum=1.0),
            mutating_max_age_seconds=env.float("VERB_MAX_AGE_SECONDS", 60.0, minimum=1.0),
            output_cap_bytes=env.int("OUTPUT_CAP_BYTES", 64 * 1024, minimum=1024, maximum=1024 * 1024),
            verb_lease_seconds=_lease(env),
            agent_socket=agent_socket if agent_socket is not None else (os.environ.get("SSH_AUTH_SOCK") or None),
            metrics_host=env.str("METRICS_HOST", "127.0.0.1") or "127.0.0.1",
            metrics_port=env.int("EXECUTOR_METRICS_PORT", 0, minimum=0, maximum=65535),
            verb_policy=env.choice("VERB_POLICY", APPROVE_MUTATING, POLICIES),
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


def _lease(env: Env) -> float:
    """A lost verb must not hold the power buttons for long: at most 15 s."""
    lease = env.float("VERB_LEASE_SECONDS", VERB_LEASE_SECONDS, minimum=1.0)
    if lease > MAX_VERB_LEASE_SECONDS:
        raise ConfigError(f"{PREFIX}VERB_LEASE_SECONDS must be at most {MAX_VERB_LEASE_SECONDS:g}, got {lease:g}")
    return lease
