"""Key isolation (SPEC §2) and `up`'s own settings, as pure functions."""

from __future__ import annotations

import pytest

from breakglass.cli import build_parser, main
from breakglass.settings import SERVICES, UpSettings, service_env
from events.config import ConfigError, Env

ENVIRON = {
    "PATH": "/usr/bin",
    "HOME": "/home/op",
    "BREAKGLASS_PORT": "8080",
    "BREAKGLASS_API_TOKEN": "operator-token",
    "BREAKGLASS_NATS_URL": "nats://stale:4222",
    "BREAKGLASS_PVE_HOST": "pve.lan",
    "BREAKGLASS_PVE_KEY_FILE": "/secrets/pve_ed25519",
    "BREAKGLASS_PVE_KNOWN_HOSTS": "/secrets/pve_known_hosts",
    "BREAKGLASS_DEVVM_HOST": "devvm.lan",
    "BREAKGLASS_DEVVM_KEY_FILE": "/secrets/devvm_ed25519",
    "ANTHROPIC_API_KEY": "sk-ant-x",
    "CLAUDE_CODE_USE_BEDROCK": "0",
    "SSH_AUTH_SOCK": "/run/user/0/agent.sock",
}
URL = "nats://127.0.0.1:4222"


def names(service: str, prefix: str) -> set[str]:
    return {k for k in service_env(service, ENVIRON, URL) if k.startswith(prefix)}


def test_only_pve_executor_sees_the_proxmox_settings():
    assert names("pve-executor", "BREAKGLASS_PVE_") == {k for k in ENVIRON if k.startswith("BREAKGLASS_PVE_")}
    assert names("gateway", "BREAKGLASS_PVE_") == set()
    assert names("agent-runner", "BREAKGLASS_PVE_") == set()


def test_every_service_agrees_on_the_vms():
    """The VM ids are no secret and must be the same everywhere: the gateway
    and agent-runner name them in the verbs they ask for, pve-executor
    refuses any other (under `up` with a VMID other than 102 they would
    otherwise disagree). Nothing else of the Proxmox settings passes."""
    environ = {**ENVIRON, "BREAKGLASS_PVE_VMID": "4242", "BREAKGLASS_VMS": '[{"name": "web", "vmid": 4242}]'}
    for service in SERVICES:
        env = service_env(service, environ, URL)
        assert env["BREAKGLASS_PVE_VMID"] == "4242" and env["BREAKGLASS_VMS"] == environ["BREAKGLASS_VMS"]
    assert {k for k in service_env("gateway", environ, URL) if k.startswith("BREAKGLASS_PVE_")} == {"BREAKGLASS_PVE_VMID"}


def test_only_agent_runner_sees_the_devvm_and_claude_credentials():
    for prefix in ("BREAKGLASS_DEVVM_", "ANTHROPIC_", "CLAUDE_CODE_"):
        assert names("agent-runner", prefix)
        assert names("gateway", prefix) == set()
        assert names("pve-executor", prefix) == set()


def test_only_the_gateway_sees_the_bearer_token():
    assert names("gateway", "BREAKGLASS_API_TOKEN") == {"BREAKGLASS_API_TOKEN"}
    assert names("agent-runner", "BREAKGLASS_API_TOKEN") == set()
    assert names("pve-executor", "BREAKGLASS_API_TOKEN") == set()


def test_the_ssh_agent_is_not_forwarded_where_no_devvm_shell_is_wanted():
    assert "SSH_AUTH_SOCK" in service_env("agent-runner", ENVIRON, URL)
    assert "SSH_AUTH_SOCK" not in service_env("gateway", ENVIRON, URL)
    assert "SSH_AUTH_SOCK" not in service_env("pve-executor", ENVIRON, URL)


@pytest.mark.parametrize("service", list(SERVICES))
def test_every_service_gets_up_s_nats_url_and_the_ordinary_environment(service):
    env = service_env(service, ENVIRON, URL)
    assert env["BREAKGLASS_NATS_URL"] == URL  # not the stale one inherited
    assert env["PATH"] == "/usr/bin" and env["HOME"] == "/home/op" and env["BREAKGLASS_PORT"] == "8080"
    assert ENVIRON["BREAKGLASS_NATS_URL"] == "nats://stale:4222"  # the input is left alone


def test_up_settings_defaults():
    s = UpSettings.from_env(Env({}))
    assert (s.host, s.port, s.nats_port, s.nats_url, s.data_dir.name) == ("127.0.0.1", 8080, 4222, None, ".breakglass")
    assert s.base_url == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("host", "url"),
    [("0.0.0.0", "http://127.0.0.1:9000"), ("::", "http://[::1]:9000"), ("example.lan", "http://example.lan:9000")],
)
def test_the_printed_url_is_one_a_browser_can_open(host, url):
    assert UpSettings.from_env(Env({"BREAKGLASS_HOST": host, "BREAKGLASS_PORT": "9000"})).base_url == url


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "abc"),
        ("PORT", "0"),
        ("NATS_PORT", "70000"),
        ("NATS_URL", "http://nats:4222"),
        ("STOP_GRACE_SECONDS", "x"),
    ],
)
def test_bad_settings_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=f"BREAKGLASS_{name}"):
        UpSettings.from_env(Env({f"BREAKGLASS_{name}": value}))


@pytest.mark.parametrize("argv", [[], ["nope"], ["up", "--bogus"]])
def test_unknown_or_missing_sub_command_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    assert "usage: breakglass" in capsys.readouterr().err


def test_there_is_one_sub_command_per_service():
    choices = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"up", "gateway", "agent-runner", "pve-executor"} <= set(choices)
