"""Fixtures for pve-executor: the real sshd and the simulated Proxmox host of
tests/pve_host (the shipped forced command over a fake `qm`), shared."""

from __future__ import annotations

from tests.pve_host.conftest import ssh_host as pve  # noqa: F401 - fixture, under the name these tests use
from tests.pve_host.conftest import sshd_server  # noqa: F401 - fixture
