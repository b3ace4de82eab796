"""Fixtures of the chaos suite: the whole system as killable processes
(stack.py) next to a real sshd and a simulated Proxmox host. Knobs: knobs.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakeapi import FakeAnthropic
from tests.fakeapi.cli import require_claude
from tests.pve_host.conftest import ssh_host as pve  # noqa: F401 - fixture
from tests.pve_host.conftest import sshd_server  # noqa: F401 - fixture

from .knobs import SEED
from .stack import ChaosStack, model


@pytest.fixture(scope="session")
def chaos_seed() -> str:
    return SEED


@pytest.fixture
def chaos_stack(tmp_path, sshd_server, pve) -> Iterator[ChaosStack]:  # noqa: F811 - fixtures
    claude = str(require_claude())
    with FakeAnthropic(default=model) as api:
        stack = ChaosStack(dir=tmp_path, api=api, sshd=sshd_server, pve=pve, claude_bin=claude)
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()
