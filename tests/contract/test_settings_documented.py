"""Every setting the code reads is in README's settings table with the
default the code declares, and the SPEC §10 names exist in the code (names
and defaults must not drift)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent_runner.settings import Settings as RunnerSettings
from breakglass.settings import UpSettings
from events.config import settings
from gateway.settings import Settings as GatewaySettings
from pve_executor.settings import Settings as ExecutorSettings

REPO = Path(__file__).resolve().parents[2]
SOURCES = [*REPO.glob("libs/*/src/**/*.py"), *REPO.glob("services/*/src/**/*.py")]
#: Settings read one by one (shared ones: logging, topology, the VM list...).
READ = re.compile(r"""env\.(?:str|int|float|bool|list|choice|required|raw|secret)\(\s*["']([A-Z0-9_]+)["']""")
#: Settings declared as fields: one Struct per service (events.config.load),
#: by the name README's "used by" column gives the service.
DECLARED = {"gateway": GatewaySettings, "agent-runner": RunnerSettings, "pve-executor": ExecutorSettings,
            "up": UpSettings}
#: Defaults that follow other settings: README says how, in words.
DERIVED = {"MODEL", "WEBAUTHN_ORIGINS"}
SPEC_NAMES = [
    "NATS_URL", "DATA_DIR", "HOST", "PORT", "API_TOKEN", "TRUST_EDGE_HEADER", "EDGE_USER_HEADER", "CLAUDE_BIN",
    "MODEL", "MODELS", "TURN_TIMEOUT_SECONDS", "VERB_POLICY", "PVE_HOST", "PVE_PORT", "PVE_USER", "PVE_KEY_FILE",
    "PVE_KNOWN_HOSTS", "PVE_VMID", "DEVVM_HOST",
]


def settings_read_by_code() -> set[str]:
    names = {f.encode_name for cls in DECLARED.values() for f in settings(cls)}
    for path in SOURCES:
        text = path.read_text()
        names |= set(READ.findall(text))
        # env.secret(NAME) reads BREAKGLASS_NAME_FILE, or (discouraged) BREAKGLASS_NAME.
        names |= {n + "_FILE" for n in re.findall(r"""env\.secret\(\s*["']([A-Z0-9_]+)["']""", text)}
    return names


def readme_row(name: str) -> list[str]:
    table = REPO.joinpath("README.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith(f"| `BREAKGLASS_{name}` |"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def shown(default: object) -> str | None:
    """A default as README writes it, or None when it has no short form."""
    if isinstance(default, bool):
        return str(int(default))
    if isinstance(default, float):
        return f"{default:g}"
    if isinstance(default, tuple):
        return ",".join(default) or None
    return None if default is None or not isinstance(default, (int, str, Path)) else str(default)


def test_every_setting_read_is_documented_in_the_readme():
    table = REPO.joinpath("README.md").read_text()
    missing = sorted(n for n in settings_read_by_code() if f"`BREAKGLASS_{n}`" not in table)
    assert not missing, f"add these to README's settings table: {missing}"


@pytest.mark.parametrize("service", DECLARED)
def test_the_readme_gives_each_declared_default_and_user(service):
    wrong = {}
    for field in settings(DECLARED[service]):
        _, default_cell, used_by = readme_row(field.encode_name)[:3]
        default = shown(field.default)
        if default is not None and field.encode_name not in DERIVED and f"`{default}`" not in default_cell:
            wrong[field.encode_name] = (default, default_cell)
        if not {service, "all"} & {user.strip() for user in used_by.split(",")}:
            wrong[field.encode_name] = (f"used by {service}", used_by)
    assert not wrong, f"README's settings table disagrees with the code: {wrong}"


def test_the_spec_names_are_all_read_somewhere():
    missing = sorted(set(SPEC_NAMES) - settings_read_by_code())
    assert not missing, f"SPEC §10 names not read by any service: {missing}"
