"""Every setting the code reads is in README's settings table, and the
SPEC §10 names exist in the code (names must not drift)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
READ = re.compile(r"""env\.(?:str|int|float|bool|list|choice|required|raw|secret)\(\s*["']([A-Z0-9_]+)["']""")
SPEC_NAMES = [
    "NATS_URL", "DATA_DIR", "HOST", "PORT", "API_TOKEN", "TRUST_EDGE_HEADER", "EDGE_USER_HEADER", "CLAUDE_BIN",
    "MODEL", "MODELS", "TURN_TIMEOUT_SECONDS", "VERB_POLICY", "PVE_HOST", "PVE_PORT", "PVE_USER", "PVE_KEY_FILE",
    "PVE_KNOWN_HOSTS", "PVE_VMID", "DEVVM_HOST",
]


def settings_read_by_code() -> set[str]:
    names: set[str] = set()
    for path in [*REPO.glob("libs/*/src/**/*.py"), *REPO.glob("services/*/src/**/*.py")]:
        names |= set(READ.findall(path.read_text()))
    names.discard("NATS_URL")  # read through events.config.nats_url
    # env.secret(NAME) reads BREAKGLASS_NAME_FILE, or (discouraged) BREAKGLASS_NAME.
    secrets = {n + "_FILE" for path in [*REPO.glob("libs/*/src/**/*.py"), *REPO.glob("services/*/src/**/*.py")]
               for n in re.findall(r"""env\.secret\(\s*["']([A-Z0-9_]+)["']""", path.read_text())}
    return names | secrets | {"NATS_URL"}


def test_every_setting_read_is_documented_in_the_readme():
    table = REPO.joinpath("README.md").read_text()
    missing = sorted(n for n in settings_read_by_code() if f"`BREAKGLASS_{n}`" not in table)
    assert not missing, f"add these to README's settings table: {missing}"


def test_the_spec_names_are_all_read_somewhere():
    missing = sorted(set(SPEC_NAMES) - settings_read_by_code())
    assert not missing, f"SPEC §10 names not read by any service: {missing}"
