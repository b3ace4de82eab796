"""The NATS configuration as shipped: compose's committed users file is the
current matrix and works with a real server; `breakglass up`'s credentials
are private and stable; URLs never leak their password; `breakglass setup`
is the admin's job only."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import nats
import pytest

from breakglass import natsauth, natsd
from eventbus import access
from eventbus.bus import redact
from eventbus.topology import Topology, check

from tests.security.nats_rig import Secured, secured, start_bare  # noqa: F401 - fixture

REPO = Path(__file__).resolve().parents[2]


def test_the_committed_compose_users_are_the_current_matrix() -> None:
    committed = (REPO / access.DEPLOY_CONFIG).read_text(encoding="utf-8")
    assert committed == access.deploy_config(), f"{access.DEPLOY_CONFIG} is stale: run `make docs`"


def test_the_committed_users_file_runs_on_a_real_server(tmp_path: Path) -> None:
    passwords = {role: "p" + secrets.token_hex(16) for role in access.ROLES}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env |= {access.env_refs()[role].name: password for role, password in passwords.items()}
    server = natsd.start(tmp_path / "store", config_file=REPO / access.DEPLOY_CONFIG, env=env,
                         log_file=tmp_path / "nats.log")
    host, port = server.url.rsplit("//", 1)[1].rsplit(":", 1)

    async def probe() -> None:
        for role in access.ROLES:
            nc = await nats.connect(natsauth.url(role, passwords[role], host, int(port)), allow_reconnect=False)
            await nc.close()
        with pytest.raises(Exception):
            await nats.connect(server.url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)

    try:
        asyncio.run(probe())
    finally:
        server.stop()


def test_a_missing_password_stops_the_server(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # none of the NATS_*_PASSWORD
    with pytest.raises(natsd.NatsdError):
        natsd.start(tmp_path / "store", config_file=REPO / access.DEPLOY_CONFIG, env=env, ready_timeout=5)


def test_render_refuses_what_it_cannot_quote() -> None:
    for bad in ('a"$b', "new\nline", "caf\u00e9"):
        with pytest.raises(ValueError):
            access.render({access.GATEWAY: bad})
    with pytest.raises(ValueError):
        access.EnvRef("NOT-A-NAME")
    assert '"$JS.API.INFO"' in access.render({access.ADMIN: "x"})


def test_the_matrix_lists_every_role_and_each_inbox_once() -> None:
    matrix = access.matrix(Topology())
    assert tuple(matrix) == access.ROLES
    for role, perms in matrix.items():
        inboxes = [s for s in perms.subscribe if s.startswith("_INBOX")]
        assert inboxes == [f"_INBOX.{role}.>"]
        assert set(access.ALWAYS_DENIED) <= set(perms.deny_publish)
        assert not any(s in (">", "$JS.API.>", "_INBOX.>") for s in perms.publish + perms.subscribe)
    assert [r for r, p in matrix.items() if p.allow_responses] == [access.AGENT_RUNNER]


# --- `breakglass up`'s credentials --------------------------------------------------


def test_credentials_are_private_stable_and_complete(tmp_path: Path) -> None:
    first = natsauth.load_or_create(tmp_path)
    path = natsauth.auth_dir(tmp_path) / natsauth.CREDENTIALS_FILE
    assert set(first) == set(access.ROLES) - {access.ADMIN} and len(set(first.values())) == len(first)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert natsauth.load_or_create(tmp_path) == first

    # an older file without a role gets that role added, the others kept; an
    # admin password a former version kept is dropped (admin is set-up only)
    data = json.loads(path.read_text())
    del data["users"][access.READER]
    data["users"][access.ADMIN] = "kept-by-an-older-version"
    path.write_text(json.dumps(data))
    os.chmod(path, 0o644)
    again = natsauth.load_or_create(tmp_path)
    kept = [r for r in natsauth.KEPT_ROLES if r != access.READER]
    assert {r: again[r] for r in kept} == {r: first[r] for r in kept}
    assert access.ADMIN not in json.loads(path.read_text())["users"]
    assert again[access.READER] and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert natsauth.reader_password(tmp_path) == again[access.READER]

    config = natsauth.write_config(tmp_path, again)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert all(json.dumps(p) in config.read_text() for p in again.values())


def test_a_broken_credentials_file_is_one_clear_error(tmp_path: Path) -> None:
    path = natsauth.auth_dir(tmp_path) / natsauth.CREDENTIALS_FILE
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(natsauth.CredentialsError, match="remove it"):
        natsauth.load_or_create(tmp_path)
    assert natsauth.reader_password(tmp_path) is None
    assert natsauth.reader_password(tmp_path / "elsewhere") is None


def test_urls_quote_the_userinfo_and_redact_hides_it() -> None:
    url = natsauth.url("agent-runner", "p@ss:w/rd", "127.0.0.1", 4222)
    assert url == "nats://agent-runner:p%40ss%3Aw%2Frd@127.0.0.1:4222"
    assert redact(url) == "nats://agent-runner:***@127.0.0.1:4222"
    assert redact("nats://token@nats:4222") == "nats://***@nats:4222"
    assert redact("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"


# --- `breakglass setup` ------------------------------------------------------------


def _setup(url: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "BREAKGLASS_NATS_URL": url}
    return subprocess.run([sys.executable, "-m", "breakglass", "setup"], env=env, capture_output=True, text=True,
                          timeout=60)


def test_setup_as_admin_sets_up_the_topology_and_a_service_cannot(tmp_path: Path) -> None:
    bare = start_bare(tmp_path)
    passwords = bare.passwords
    try:
        refused = _setup(bare.url(access.GATEWAY))
        assert refused.returncode == 1, refused
        [line] = refused.stderr.splitlines()
        assert "stream BREAKGLASS_EVENTS is missing" in line and "admin" in line
        assert passwords[access.GATEWAY] not in refused.stderr + refused.stdout

        done = _setup(bare.url(access.ADMIN))
        assert done.returncode == 0, done.stderr
        assert "admin:***@" in done.stdout and passwords[access.ADMIN] not in done.stdout

        async def checked() -> str | None:
            nc = await nats.connect(bare.url(access.GATEWAY),
                                    inbox_prefix=access.inbox_prefix(access.GATEWAY))
            try:
                return await check(nc.jetstream())
            finally:
                await nc.close()

        assert asyncio.run(checked()) is None
    finally:
        bare.server.stop()


async def test_a_service_passes_its_start_up_check_without_writing(secured: Secured) -> None:  # noqa: F811
    """Each service's `ensure` on a topology the admin set up only reads."""
    from eventbus.topology import ensure

    seen: list[str] = []

    async def record(exc: Exception) -> None:
        seen.append(str(exc))

    for role in (access.AGENT_RUNNER, access.PVE_EXECUTOR):
        nc = await nats.connect(secured.url(role), inbox_prefix=access.inbox_prefix(role), error_cb=record)
        try:
            await ensure(nc.jetstream(), Topology())
        finally:
            await nc.close()
    assert seen == []
