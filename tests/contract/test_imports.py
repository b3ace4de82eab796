"""Services never import each other; the runtime and the CLI import no service;
the contract (`events`) imports nothing but msgspec and the standard library.

The real check is `lint-imports` with the [tool.importlinter] contracts of the
root pyproject.toml. A check that can never fail proves nothing, so the same
contracts are also run against a throwaway tree that breaks them on purpose.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "pyproject.toml"
CONTRACTS = {c["name"]: c for c in tomllib.loads(CONFIG.read_text())["tool"]["importlinter"]["contracts"]}
ROOTS = tomllib.loads(CONFIG.read_text())["tool"]["importlinter"]["root_packages"]


def _lint_imports() -> str:
    beside = Path(sys.executable).parent / "lint-imports"
    found = str(beside) if beside.exists() else shutil.which("lint-imports")
    assert found, "lint-imports is not installed (it is in requirements/dev.in; run make test)"
    return found


def test_the_repository_keeps_every_import_contract() -> None:
    result = subprocess.run(
        [_lint_imports(), "--no-cache", "--no-logo", str(CONFIG)], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(CONTRACTS)} kept, 0 broken" in result.stdout


# The installed (editable) packages have these same names, so the throwaway
# tree must win the import lookup. `-I` drops PYTHONPATH and the current
# directory; the tree goes first on sys.path, ahead of site-packages and of
# any editable finder (those are appended to sys.meta_path, after the path
# finder). The script then proves where each root package resolves before
# linting: a shadowed run exits 3 instead of passing for the wrong reason.
_RUNNER = """
import importlib.util, sys
tree = sys.argv[1]
sys.path.insert(0, tree)
for name in sys.argv[3].split(","):
    spec = importlib.util.find_spec(name)
    if spec is None or not (spec.origin or "").startswith(tree):
        print(f"{name} resolves to {spec and spec.origin}, not the throwaway tree")
        sys.exit(3)
from importlinter.cli import lint_imports_command
sys.argv = ["lint-imports", "--no-cache", "--no-logo", sys.argv[2]]
sys.exit(lint_imports_command())
"""


def _tree(root: Path, imports: dict[str, str]) -> Path:
    """A package per root name; `imports` adds `import <target>` to a module."""
    for name in ROOTS:
        package = root / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text('"""stand-in for the real package."""\n')
        (package / "core.py").write_text(imports.get(name, "") + "\n")
    return root


def _lint_tree(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run(
        [sys.executable, "-I", "-c", textwrap.dedent(_RUNNER), str(tree), str(CONFIG), ",".join(ROOTS)],
        cwd=tree, env=env, capture_output=True, text=True,
    )


def test_a_tree_without_forbidden_imports_passes(tmp_path: Path) -> None:
    # The control: the stand-in tree itself satisfies the contracts, so the
    # failures below come from the import each adds and nothing else.
    result = _lint_tree(_tree(tmp_path, {"gateway": "import events\nimport eventbus", "eventbus": "import events\nimport nats",
                                         "breakglass": "import events"}))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("imports", "contract"),
    [
        ({"gateway": "import agent_runner"}, "Services never import each other"),
        ({"pve_executor": "from gateway import core"}, "Services never import each other"),
        ({"events": "import pve_executor"}, "The contract imports only msgspec and the standard library"),
        ({"events": "import nats"}, "The contract imports only msgspec and the standard library"),
        ({"events": "from eventbus import core"}, "The contract imports only msgspec and the standard library"),
        ({"eventbus": "import gateway"}, "The runtime and the command import no service"),
        ({"breakglass": "import agent_runner.core"}, "The runtime and the command import no service"),
    ],
    ids=["gateway->agent_runner", "pve_executor->gateway", "events->pve_executor", "events->nats", "events->eventbus",
         "eventbus->gateway", "breakglass->agent_runner"],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path: Path, imports: dict[str, str], contract: str) -> None:
    assert contract in CONTRACTS, f"the contract {contract!r} was renamed or removed in pyproject.toml"
    result = _lint_tree(_tree(tmp_path, imports))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"{contract} BROKEN" in output
