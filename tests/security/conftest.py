"""The real sshd and simulated Proxmox host of tests/pve_host, shared."""

from __future__ import annotations

from tests.pve_host.conftest import ssh_host as pve  # noqa: F401 - fixture
from tests.pve_host.conftest import sshd_server  # noqa: F401 - fixture
