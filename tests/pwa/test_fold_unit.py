"""Runs the transcript fold's unit tests (node's test runner, `npm test` in
frontend/) inside the pytest run, so CI sees them fail."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.processes import REPO


def test_the_fold_unit_tests_pass():
    node = shutil.which("node")
    if node is None:
        pytest.skip("needs Node (scripts/test-deps.sh)")
    run = subprocess.run([node, "test/run.mjs"], cwd=REPO / "frontend", capture_output=True, text=True, timeout=120)
    summary = re.search(r"^(\d+) passed, (\d+) failed$", run.stdout, re.M)
    assert summary, run.stdout[-3000:] + run.stderr[-2000:]
    passed, failed = map(int, summary.groups())
    assert run.returncode == 0 and failed == 0 and passed >= 20, run.stdout[-5000:]
