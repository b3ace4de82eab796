"""BREAKGLASS_NATS_URL may name several servers of one cluster, separated
by commas: every service validates each, connects to one that answers and
fails over to the others; logs show them without passwords."""

from __future__ import annotations

import pytest

from breakglass import natsd
from eventbus import bus
from events.config import ConfigError, Env, nats_url

A = "nats://gateway:s3cret@127.0.0.1:4222"
B = "nats://gateway:s3cret@127.0.0.2:4223"


def test_a_comma_separated_list_is_accepted_and_split():
    url = nats_url(Env({"BREAKGLASS_NATS_URL": f" {A} , {B} ,"}), "the gateway")
    assert bus.servers(url) == [A, B]
    assert bus.servers(A) == [A]


def test_every_server_of_the_list_is_checked_and_the_error_hides_passwords():
    with pytest.raises(ConfigError) as caught:
        nats_url(Env({"BREAKGLASS_NATS_URL": f"{A},http://gateway:s3cret@127.0.0.1:4222"}), "the gateway")
    message = str(caught.value)
    assert "BREAKGLASS_NATS_URL" in message and "comma-separated" in message
    assert "s3cret" not in message


def test_redact_and_role_work_on_a_list():
    assert bus.redact(f"{A},{B}") == "nats://gateway:***@127.0.0.1:4222,nats://gateway:***@127.0.0.2:4223"
    assert bus.role_of(f"{A},{B}") == "gateway"


async def test_connect_uses_a_live_server_of_the_list(tmp_path):
    """The first server of the list is down; the client gets the second."""
    dead = f"nats://127.0.0.1:{natsd.free_port()}"
    server = natsd.start(tmp_path / "nats")
    try:
        nc = await bus.connect(f"{dead},{server.url}", "cluster-url-test")
        try:
            assert nc.is_connected
            assert f"{nc.connected_url.hostname}:{nc.connected_url.port}" == server.url.split("//")[1]
            assert len(nc.servers) == 2
        finally:
            await nc.close()
    finally:
        server.stop()
