"""pve-executor's settings: read once from BREAKGLASS_*, bad values named,
and a configuration that cannot pin the host is a reason, not a default."""

from __future__ import annotations

import pytest

from events.config import ConfigError, Env
from pve_executor.bootstrap import runner_for
from pve_executor.settings import Settings

BASE = {"BREAKGLASS_NATS_URL": "nats://127.0.0.1:4222"}


def settings(agent_socket: str | None = "", **env: str) -> Settings:
    return Settings.from_env(Env({**BASE, **{f"BREAKGLASS_{k}": v for k, v in env.items()}}),
                             agent_socket=agent_socket)


def test_defaults():
    s = settings()
    assert (s.pve_host, s.pve_port, s.pve_user, s.pve_vmid) == (None, 22, "breakglass", 102)
    assert (s.verb_timeout_seconds, s.output_cap_bytes, s.connect_timeout_seconds) == (120.0, 65536, 10.0)
    assert s.problem() == "pve-executor is not configured: BREAKGLASS_PVE_HOST is unset"
    assert runner_for(s) is None


def test_a_complete_configuration():
    s = settings(PVE_HOST="pve.lan", PVE_PORT="2222", PVE_USER="bg", PVE_KEY_FILE="/run/secrets/pve_key",
                 PVE_KNOWN_HOSTS="/etc/breakglass/known_hosts", PVE_VMID="105", VERB_TIMEOUT_SECONDS="60",
                 OUTPUT_CAP_BYTES="8192")
    assert s.problem() is None
    runner = runner_for(s)
    assert runner is not None
    t = runner.target
    assert (t.host, t.port, t.user, t.key_file, t.known_hosts, t.agent_socket) == (
        "pve.lan", 2222, "bg", "/run/secrets/pve_key", "/etc/breakglass/known_hosts", None)
    assert runner.output_cap == 8192
    assert s.lock_stale_seconds == 10 + 60 + 15


def test_without_a_known_hosts_file_nothing_is_ever_attempted():
    s = settings(PVE_HOST="pve.lan", PVE_KEY_FILE="/k")
    assert "BREAKGLASS_PVE_KNOWN_HOSTS is unset" in (s.problem() or "")
    assert runner_for(s) is None


def test_the_agent_is_used_only_without_a_key_file():
    s = settings(agent_socket="/run/agent.sock", PVE_HOST="pve.lan", PVE_KNOWN_HOSTS="/kh")
    assert s.problem() is None
    assert runner_for(s).target.agent_socket == "/run/agent.sock"  # type: ignore[union-attr]
    s = settings(agent_socket=None, PVE_HOST="pve.lan", PVE_KNOWN_HOSTS="/kh")
    assert "neither BREAKGLASS_PVE_KEY_FILE nor an ssh-agent" in (s.problem() or "")


@pytest.mark.parametrize("name, value", [
    ("PVE_PORT", "0"), ("PVE_PORT", "ssh"), ("PVE_VMID", "99"), ("VERB_TIMEOUT_SECONDS", "0"),
    ("OUTPUT_CAP_BYTES", "10"), ("OUTPUT_CAP_BYTES", str(64 * 1024 * 1024)),
])
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=f"BREAKGLASS_{name}"):
        settings(**{name: value})


def test_the_verb_lease_is_at_most_15_seconds():
    assert (settings().verb_lease_seconds, settings().sweep_seconds) == (10.0, 2.0)
    assert settings(VERB_LEASE_SECONDS="4").sweep_seconds == 1.0
    with pytest.raises(ConfigError, match="BREAKGLASS_VERB_LEASE_SECONDS must be at most 15, got 60"):
        settings(VERB_LEASE_SECONDS="60")
    with pytest.raises(ConfigError, match="BREAKGLASS_VERB_LEASE_SECONDS must be at least 1"):
        settings(VERB_LEASE_SECONDS="0.5")
