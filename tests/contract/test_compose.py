"""compose.yaml keeps the deployment promises of SPEC §2, checked statically.

There is no Docker engine in CI, so nothing here starts a container; instead
the file is read as data and held to what matters most: each key reaches only
the service that needs it, nothing runs as root, and every command and
Dockerfile points at something that exists.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from eventbus import access

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
OURS = ("gateway", "agent-runner", "pve-executor")
#: The one-shot service that sets up the JetStream topology as NATS `admin`.
SETUP = "nats-setup"
#: Who connects to NATS as which user (eventbus.access); the reader is for
#: auditors' one-off `docker compose run`, so no service holds it.
NATS_USER_OF = {"gateway": access.GATEWAY, "agent-runner": access.AGENT_RUNNER,
                "pve-executor": access.PVE_EXECUTOR, SETUP: access.ADMIN}
PASSWORD_VAR = {role: ref.name for role, ref in access.env_refs().items()}

# Who may see what. Anything matching a marker (in secrets, volumes, env
# names or values) may appear only in the services listed for it.
ONLY_IN: dict[str, tuple[str, ...]] = {
    "pve_key": ("pve-executor",),
    "pve_known_hosts": ("pve-executor",),
    "BREAKGLASS_PVE_": ("pve-executor",),
    "devvm_key": ("agent-runner",),
    "devvm_known_hosts": ("agent-runner",),
    "BREAKGLASS_DEVVM_": ("agent-runner",),
    "ANTHROPIC_": ("agent-runner",),
    "CLAUDE_CODE_": ("agent-runner",),
    "BREAKGLASS_API_TOKEN": ("gateway",),
    # each NATS password: the server, and the one service that is that user
    **{PASSWORD_VAR[role]: ("nats", *(s for s, r in NATS_USER_OF.items() if r == role)) for role in access.ROLES},
}


def _strings(node: Any) -> list[str]:
    """Every key and scalar in a service definition, as text."""
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (str(k), *_strings(v))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [] if node is None else [str(node)]


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    assert command, "every service states its command, so the entry point is reviewed here"
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def test_all_services_exist() -> None:
    assert set(SERVICES) == {"nats", SETUP, *OURS}


#: agent-runner is started as root only to run the CLI as another uid inside
#: its sandbox (README: Threat model), with these capabilities and no other.
RUNNER_CAPS = {"SETUID", "SETGID", "SETPCAP", "CHOWN", "DAC_OVERRIDE", "SYS_ADMIN"}


@pytest.mark.parametrize("name", sorted(set(SERVICES) - {"agent-runner"}))
def test_service_runs_as_a_non_root_user(name: str) -> None:
    user = str(SERVICES[name].get("user", ""))
    uid = user.split(":", 1)[0]
    assert uid, f"{name} sets no `user:`, so it runs as the image's default (often root)"
    assert uid != "root" and not (uid.isdigit() and int(uid) == 0), f"{name} runs as root"


def test_the_runner_is_root_only_to_hand_the_agent_another_uid() -> None:
    runner = SERVICES["agent-runner"]
    assert runner["cap_drop"] == ["ALL"] and set(runner["cap_add"]) == RUNNER_CAPS
    assert "no-new-privileges:true" in runner["security_opt"] and not runner.get("privileged")
    dockerfile = _dockerfile("agent-runner").read_text()
    assert "bubblewrap" in dockerfile and "--uid 10002" in dockerfile and "breakglass-agent" in dockerfile
    # The agent's uid is not the one the service's key files belong to (10001).
    assert "USER 10001" not in dockerfile


@pytest.mark.parametrize("marker", sorted(ONLY_IN))
def test_secrets_and_settings_reach_only_their_service(marker: str) -> None:
    holders = sorted(name for name, service in SERVICES.items() if any(marker in s for s in _strings(service)))
    assert set(holders) <= set(ONLY_IN[marker]), f"{marker} appears in {holders}, allowed only in {ONLY_IN[marker]}"


def test_each_key_is_mounted_where_it_is_needed() -> None:
    def names(service: str) -> set[str]:
        return {s["source"] if isinstance(s, dict) else s for s in SERVICES[service].get("secrets", [])}

    assert {"pve_key", "pve_known_hosts"} <= names("pve-executor")
    assert {"devvm_key", "devvm_known_hosts"} <= names("agent-runner")
    env = SERVICES["pve-executor"]["environment"]
    assert env["BREAKGLASS_PVE_KEY_FILE"] == "/run/secrets/pve_key"
    assert env["BREAKGLASS_PVE_KNOWN_HOSTS"] == "/run/secrets/pve_known_hosts"
    for secret in ("pve_key", "pve_known_hosts", "devvm_key", "devvm_known_hosts"):
        assert "file" in COMPOSE["secrets"][secret]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_keys_arrive_only_as_compose_secrets(name: str) -> None:
    # A bind-mounted key directory or an env_file would slip past the checks
    # above; secrets are the one reviewed way in.
    service = SERVICES[name]
    assert "env_file" not in service and not service.get("privileged")
    for volume in service.get("volumes", []):
        source = volume.get("source", "") if isinstance(volume, dict) else str(volume).split(":", 1)[0]
        assert not re.search(r"secret|key|\.ssh", source, re.IGNORECASE), f"{name} mounts {source}"


def test_dockerignore_keeps_keys_out_of_build_contexts() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert "secrets/" in lines


@pytest.mark.parametrize("name", [*OURS, SETUP])
def test_service_talks_to_the_compose_nats_as_its_own_user(name: str) -> None:
    role = NATS_USER_OF[name]
    env = SERVICES[name]["environment"]
    assert env["BREAKGLASS_NATS_URL"] == f"nats://{role}@nats:4222", f"{name} should connect as NATS user {role}"
    # Its password arrives as a file only (a secret made from `.env`), owned by the service's uid, 0400.
    assert env["BREAKGLASS_NATS_PASSWORD_FILE"] == "/run/secrets/nats_password"
    [secret] = [s for s in SERVICES[name]["secrets"] if isinstance(s, dict) and s["target"] == "nats_password"]
    uid = str(SERVICES[name]["user"]).split(":", 1)[0]
    assert (secret["uid"], secret["mode"]) == (uid, 0o400)
    assert COMPOSE["secrets"][secret["source"]] == {"environment": PASSWORD_VAR[role]}
    assert not [v for v in map(str, env.values()) if PASSWORD_VAR[role] in v], "a password in the environment"
    assert SERVICES[name]["depends_on"]["nats"] == {"condition": "service_healthy"}


@pytest.mark.parametrize("name", OURS)
def test_services_start_once_the_topology_is_set_up(name: str) -> None:
    assert SERVICES[name]["depends_on"][SETUP] == {"condition": "service_completed_successfully"}


def test_setup_runs_the_setup_command_once() -> None:
    setup = SERVICES[SETUP]
    assert _command(setup) == ["breakglass", "setup"] and "setup" in _cli_subcommands()
    assert setup.get("restart") in ("no", "on-failure")
    assert "libs/cli" in _dockerfile(SETUP).read_text()


def test_nats_takes_every_password_from_its_environment() -> None:
    env = SERVICES["nats"]["environment"]
    for role, var in PASSWORD_VAR.items():
        assert re.fullmatch(rf"\$\{{{var}:\?[^}}]+\}}", str(env[var])), f"{var} must be required, not defaulted"


def test_gateway_publishes_8080() -> None:
    assert any(str(port).endswith(":8080") for port in SERVICES["gateway"]["ports"])
    assert all("ports" not in SERVICES[name] for name in SERVICES if name != "gateway")


def _cli_subcommands() -> set[str]:
    from breakglass.cli import build_parser

    parser = build_parser()
    return {name for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for name in action.choices}


def _runnable(module: str) -> bool:
    """True when `python -m module` would find something to run."""
    try:
        spec = importlib.util.find_spec(module)
        if spec is None:
            return False
        return spec.submodule_search_locations is None or importlib.util.find_spec(module + ".__main__") is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


@pytest.mark.parametrize("name", OURS)
def test_command_is_a_real_entry_point(name: str) -> None:
    command = _command(SERVICES[name])
    if command[0] == "breakglass":
        assert command[1:] == [name], f"{name} should run `breakglass {name}`"
        assert name in _cli_subcommands(), f"`breakglass {name}` is not a sub-command"
        from breakglass.settings import SERVICES as MODULES

        assert _runnable(MODULES[name]), f"`breakglass {name}` runs `python -m {MODULES[name]}`, which is missing"
    else:
        assert command[:2] == ["python", "-m"], f"{name}: unexpected command {command}"
        assert _runnable(command[2]), f"`python -m {command[2]}` cannot run"


def _dockerfile(name: str) -> Path:
    build = SERVICES[name]["build"]
    assert build["context"] == ".", "the context is the repository root, so libs/ can be copied"
    return REPO / build["dockerfile"]


@pytest.mark.parametrize("name", sorted(set(OURS) - {"agent-runner"}))  # its root: see test_the_runner_is_root_...
def test_dockerfile_exists_and_drops_root(name: str) -> None:
    path = _dockerfile(name)
    assert path.is_file(), f"{path} is missing"
    text = path.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users, f"{path} has no USER line: the container would run as root"
    uid = users[-1].split(":", 1)[0]
    assert uid not in {"root", "0"}, f"{path} ends as root"
    assert uid == str(SERVICES[name]["user"]).split(":", 1)[0], "compose `user:` and the image's USER disagree"


@pytest.mark.parametrize("name", OURS)
def test_dockerfile_copies_what_exists(name: str) -> None:
    text = _dockerfile(name).read_text()
    sources = [line.split()[1:-1] for line in text.splitlines() if line.startswith("COPY ") and "--from" not in line]
    copied = {source for parts in sources for source in parts}
    assert {"libs/events", "libs/eventbus", "libs/cli", f"services/{name}"} <= copied
    for source in copied:
        assert (REPO / source).exists(), f"{_dockerfile(name)} copies {source}, which does not exist"


def test_nats_runs_jetstream_from_the_mounted_config() -> None:
    nats = SERVICES["nats"]
    assert nats["image"].startswith("nats:2.11")
    mounts = [str(v).split(":") for v in nats["volumes"]]
    config = next(m for m in mounts if m[0].startswith("./"))
    assert (REPO / config[0]).is_file() and config[1] in _command(nats)
    text = (REPO / config[0]).read_text()
    store = re.search(r'^\s*store_dir:\s*"?([^"\s]+)', text, re.MULTILINE)
    assert "jetstream" in text and store, "JetStream must be on, with an explicit store_dir"
    volumes = {target for source, target, *_ in mounts if source in (COMPOSE.get("volumes") or {})}
    assert any(store.group(1).startswith(target) for target in volumes), "the JetStream store is not on a named volume"


def test_nats_enforces_the_generated_users() -> None:
    """nats.conf includes the generated users, mounted beside it."""
    mounts = {source: target for source, target, *_ in (str(v).split(":") for v in SERVICES["nats"]["volumes"])}
    config = mounts["./deploy/nats/nats.conf"]
    included = re.findall(r'^\s*include\s+"?([^"\s]+)"?', (REPO / "deploy/nats/nats.conf").read_text(), re.MULTILINE)
    assert included == ["authorization.conf"]
    assert mounts[f"./{access.DEPLOY_CONFIG}"] == str(Path(config).parent / "authorization.conf")
    assert "no_auth_user" not in (REPO / "deploy/nats/nats.conf").read_text()


def test_setup_and_the_workers_agree_on_the_topology_settings() -> None:
    """agent-runner and pve-executor check the topology at start-up against
    their own settings; set up with different ones, they would stop."""
    names = ("BREAKGLASS_RETENTION_DAYS", "BREAKGLASS_NATS_REPLICAS")
    for name in ("agent-runner", "pve-executor"):
        env = SERVICES[name]["environment"]
        assert all(env.get(n, "unset") == SERVICES[SETUP]["environment"].get(n, "unset") for n in names), name
