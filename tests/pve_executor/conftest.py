"""Fixtures for pve-executor: one real sshd per module, a simulated Proxmox
host (the shipped forced command over a fake `qm`) per test."""

from __future__ import annotations

import pwd
import shutil
from collections.abc import Iterator

import pytest

from tests import sshd
from tests.pve_host.host import PveHost, make_host


@pytest.fixture(scope="module")
def sshd_server() -> Iterator[sshd.Sshd]:
    reason = sshd.unavailable()
    if reason:
        pytest.skip(reason)
    server = sshd.start("/bin/false")
    yield server
    server.stop()


@pytest.fixture
def pve(sshd_server: sshd.Sshd) -> Iterator[PveHost]:
    """The Proxmox host behind the real sshd: the key's forced command is
    deploy/pve-host/breakglass-pve, acting on VM 102 through the fake qm."""
    host = make_host(pwd.getpwnam(sshd_server.user).pw_uid)
    sshd_server.set_forced_command(host.forced_command)
    yield host
    sshd_server.set_forced_command("/bin/false")
    shutil.rmtree(host.dir, ignore_errors=True)
