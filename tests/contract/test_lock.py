"""requirements.lock pins everything the code imports, and nothing installs around it.

A fresh machine must install exactly what CI tested: every third-party
import resolves to a distribution the lock pins with hashes, every declared
dependency is in it, the images' shares are copied from it verbatim, and the
venv the suite runs in holds the lock's versions.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements.lock"
CODE_DIRS = ("libs", "services", "tests", "bench", "examples", "scripts")
#: Our own top-level packages and in-repo modules imported by path.
LOCAL = {"events", "eventbus", "breakglass", "gateway", "agent_runner", "pve_executor", "tests", "bench", "examples",
         "breakglass_notifier", "fakeapi", "lock_subset"}
LOCAL_DISTS = {"breakglass", "breakglass-events", "breakglass-eventbus", "breakglass-gateway",
               "breakglass-agent-runner", "breakglass-pve-executor", "breakglass-notifier"}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)")
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    return {normalise(m.group(1)): m.group(2) for line in text.splitlines() if (m := _PIN.match(line))}


LOCKED = pins(LOCK.read_text(encoding="utf-8"))


def _optional(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """An import inside `try: ... except ImportError` is optional by design."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in {"ImportError", "ModuleNotFoundError"}
            for h in node.handlers
        ):
            return True
    return False


def third_party_imports() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for top in CODE_DIRS:
        for path in sorted((REPO / top).rglob("*.py")):
            if "node_modules" in path.parts:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    root = name.split(".")[0]
                    if root in sys.stdlib_module_names or root in LOCAL or _optional(node, parents):
                        continue
                    found.setdefault(root, path.relative_to(REPO))
    return found


def test_every_import_is_pinned_by_the_lock() -> None:
    providers = importlib.metadata.packages_distributions()
    imports = third_party_imports()
    assert {"msgspec", "nats", "fastapi", "asyncssh", "pytest"} <= set(imports), "the scan finds nothing"
    unlocked = {
        module: str(where) for module, where in imports.items()
        if not any(normalise(dist) in LOCKED for dist in providers.get(module, []))
    }
    assert not unlocked, f"imported but not pinned by requirements.lock (add it, then `make lock`): {unlocked}"


def _declared() -> set[str]:
    names: set[str] = set()
    for pyproject in [*REPO.glob("libs/*/pyproject.toml"), *REPO.glob("services/*/pyproject.toml"),
                      REPO / "examples/notifier/pyproject.toml"]:
        names |= {normalise(_REQ_NAME.match(dep).group(1))  # type: ignore[union-attr]
                  for dep in tomllib.loads(pyproject.read_text())["project"]["dependencies"]}
    for line in (REPO / "requirements/dev.in").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            names.add(normalise(_REQ_NAME.match(line).group(1)))  # type: ignore[union-attr]
    return names - LOCAL_DISTS


def test_every_declared_dependency_is_pinned_with_hashes() -> None:
    missing = _declared() - set(LOCKED)
    assert not missing, f"declared but not in requirements.lock: {sorted(missing)}; run `make lock`"
    text = LOCK.read_text(encoding="utf-8")
    for block in re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2]):
        if _PIN.match(block):
            assert "--hash=sha256:" in block, f"no hash in the lock for: {block.splitlines()[0]}"
    assert not LOCAL_DISTS & set(LOCKED), "our own packages must never be resolved from an index"
    assert not re.search(r"^(?!#)\S+(>=|<=|~=|>|<)", text, re.M), "the lock holds a range, not a pin"


@pytest.mark.parametrize("image", ["gateway", "agent-runner", "pve-executor"])
def test_image_share_is_copied_verbatim_from_the_lock(image: str) -> None:
    share = (REPO / f"requirements/image-{image}.txt").read_text(encoding="utf-8")
    lock = LOCK.read_text(encoding="utf-8")
    blocks = re.split(r"\n(?=[A-Za-z0-9])", "\n".join(l for l in share.splitlines() if not l.startswith("#")))
    assert len(blocks) >= 5
    for block in blocks:
        assert block in lock, f"image-{image}.txt differs from requirements.lock at: {block.splitlines()[0]}"
    dockerfile = (REPO / f"services/{image}/Dockerfile").read_text(encoding="utf-8")
    assert "--require-hashes -r requirements.txt" in dockerfile and f"image-{image}.txt" in dockerfile
    assert re.search(r"pip install --no-deps --no-build-isolation", dockerfile), "our packages must not resolve"


def test_the_venv_holds_the_locked_versions() -> None:
    drift = {}
    for dist in importlib.metadata.distributions():
        name = normalise(dist.metadata["Name"])
        if name in LOCKED and dist.version != LOCKED[name]:
            drift[name] = f"{dist.version} installed, {LOCKED[name]} locked"
    assert not drift, f"the venv drifted from requirements.lock (rm -rf .venv, then make test): {drift}"
