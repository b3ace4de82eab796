"""Fixtures for the Proxmox host's forced command: a simulated host, a real sshd."""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import Iterator

import pytest

from tests import sshd
from tests.pve_host.host import PveHost, make_host


@pytest.fixture
def pve_host() -> Iterator[PveHost]:
    """A simulated host whose script the test runs directly (as itself)."""
    host = make_host(os.geteuid())
    yield host
    shutil.rmtree(host.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def sshd_server() -> Iterator[sshd.Sshd]:
    """One real sshd per test module; tests point its forced command at their host."""
    reason = sshd.unavailable()
    if reason:
        pytest.skip(reason)
    server = sshd.start("/bin/false")
    yield server
    server.stop()


@pytest.fixture
def ssh_host(sshd_server: sshd.Sshd) -> Iterator[PveHost]:
    """A simulated host behind the real sshd: the key's forced command is its script."""
    host = make_host(pwd.getpwnam(sshd_server.user).pw_uid)
    sshd_server.set_forced_command(host.forced_command)
    yield host
    sshd_server.set_forced_command("/bin/false")
    shutil.rmtree(host.dir, ignore_errors=True)
