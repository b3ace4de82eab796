"""A nats-server with the real permission matrix (eventbus.access): one user
per role with a random password, the topology set up by the admin user, the
way `breakglass up` runs it. Fixtures for tests/security (imported by the
modules that use them)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest

from breakglass import natsauth, natsd
from eventbus import access
from eventbus.topology import Topology, ensure


@dataclass
class Secured:
    server: natsd.Natsd
    passwords: dict[str, str]
    host: str
    port: int

    def url(self, role: str) -> str:
        return natsauth.url(role, self.passwords[role], self.host, self.port)

    @property
    def anonymous(self) -> str:
        return f"nats://{self.host}:{self.port}"


def start_bare(tmp: Path) -> Secured:
    """The server with the permission matrix and no topology yet (what
    `breakglass setup` finds)."""
    passwords = {role: secrets.token_urlsafe(24) for role in access.ROLES}
    config = tmp / "auth.conf"
    config.write_text(access.render(passwords))
    server = natsd.start(tmp / "nats", config_file=config, log_file=tmp / "nats.log")
    host, port = server.url.rsplit("//", 1)[1].rsplit(":", 1)
    return Secured(server, passwords, host, int(port))


def start_secured(tmp: Path) -> Secured:
    secured = start_bare(tmp)

    async def set_up() -> None:
        nc = await nats.connect(secured.url(access.ADMIN), inbox_prefix=access.inbox_prefix(access.ADMIN))
        try:
            await ensure(nc.jetstream(), Topology())
        finally:
            await nc.close()

    try:
        asyncio.run(set_up())
    except BaseException:
        secured.server.stop()
        raise
    return secured


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Secured]:
    s = start_secured(tmp_path)
    try:
        yield s
    finally:
        s.server.stop()


@pytest.fixture(scope="module")
def secured_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    s = start_secured(tmp_path_factory.mktemp("secured"))
    try:
        yield s
    finally:
        s.server.stop()
