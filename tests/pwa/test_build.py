"""The committed build (services/gateway/src/gateway/static) is what the
sources in frontend/ build to, byte for byte: rebuild into a temporary
directory and compare. Needs Node and `npm ci` in frontend/ (scripts/test-deps.sh)."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.processes import REPO

FRONTEND = REPO / "frontend"
COMMITTED = REPO / "services" / "gateway" / "src" / "gateway" / "static"


def tree(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_committed_build_is_not_stale(tmp_path):
    vite = FRONTEND / "node_modules" / "vite" / "bin" / "vite.js"
    node = shutil.which("node")
    if node is None or not vite.exists():
        pytest.skip("needs Node and `npm ci` in frontend/ (scripts/test-deps.sh installs them)")
    out = tmp_path / "static"
    build = subprocess.run(
        [node, str(vite), "build", "--outDir", str(out), "--emptyOutDir", "--logLevel", "error"],
        cwd=FRONTEND, capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    fresh, committed = tree(out), tree(COMMITTED)
    hint = "the committed PWA build is stale: run `npm run build` in frontend/ and commit the result"
    assert sorted(fresh) == sorted(committed), f"{hint}\nfiles differ: {sorted(set(fresh) ^ set(committed))}"
    changed = [name for name in fresh if not filecmp.cmp(fresh[name], committed[name], shallow=False)]
    assert changed == [], f"{hint}\ncontents differ: {changed}"
    assert "index.html" in committed and "sw.js" in committed and "manifest.webmanifest" in committed
