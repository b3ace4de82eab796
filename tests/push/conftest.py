from __future__ import annotations

import time
import uuid
from msgspec.structs import replace

import httpx
import nats
import pytest

from events.kinds import ApprovalRequested
from eventbus.locks import TurnLocks
from eventbus.log import EventLog
from eventbus.topology import Topology
from events.verbs import Verb
from gateway.app import create_app
from tests.gateway.conftest import TOKEN, Gateway, _ensure, gateway_settings  # noqa: F401
from tests.servers import serve_app, wait_ready

from .service import push_service


@pytest.fixture
def push():
    with push_service() as service:
        yield service


def push_settings(settings, data_dir, **more):
    return replace(settings, data_dir=data_dir, push_allow_http=True, **more)


def start_gateway(settings):
    """A context manager: a gateway on a real socket, ready, push started."""
    return serve_app(create_app(settings))


def wait_push_ready(base: str, headers: dict[str, str], timeout: float = 10.0) -> str:
    """The VAPID public key, once the gateway's push sender is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(f"{base}/api/push/key", headers=headers, timeout=2)
        if r.status_code == 200:
            return r.json()["public_key"]
        time.sleep(0.05)
    raise TimeoutError("the push sender did not start")


@pytest.fixture
def push_gateway(nats_url, gateway_settings, tmp_path):  # noqa: F811
    _ensure(nats_url)
    settings = push_settings(gateway_settings, tmp_path / "gw")
    with start_gateway(settings) as base:
        wait_ready(base)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        wait_push_ready(base, headers)
        yield Gateway(base, nats_url, headers, settings)


@pytest.fixture
async def nc(nats_url):
    conn = await nats.connect(nats_url)
    yield conn
    await conn.close()


async def hold_turn(conn, session_id: str) -> str:
    js = conn.jetstream()
    kv = await js.key_value(Topology().kv_bucket)
    turn_id = str(uuid.uuid4())
    assert await TurnLocks(kv, EventLog(js)).take(session_id, turn_id, "operator")
    return turn_id


async def ask_approval(conn, session_id: str, verb: Verb = Verb.CYCLE, turn_id: str | None = None):
    """What agent-runner records when the agent asks for a mutating verb."""
    approval_id, request_id = str(uuid.uuid4()), str(uuid.uuid4())
    await EventLog(conn.jetstream(), writer="agent-runner").append(ApprovalRequested(
        session_id=session_id, turn_id=turn_id, by="agent", approval_id=approval_id, verb=verb,
        request_id=request_id, reason="the agent asks to cycle the VM because of SECRET transcript words"))
    return approval_id, request_id
