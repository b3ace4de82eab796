"""Escalation: an approval nobody answers within N seconds also goes to the
notifier's second channel, and the session records where (`escalated`,
through the gateway's API), so the page can show it. An approval decided in
time goes nowhere else."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import msgspec
import nats
import pytest

from events.kinds import ApprovalRequested, VerbPhase, VerbProgressed
from eventbus.log import EventLog
from eventbus.topology import ensure
from events.verbs import Verb
from gateway.app import create_app
from gateway.settings import Settings as GatewaySettings
from tests.notifier.rig import Receiver, running, settings_for
from tests.servers import serve_app, wait_ready

TOKEN = "escalation-token"


@pytest.fixture
def second() -> Receiver:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
async def gateway(nats_url, tmp_path):
    nc = await nats.connect(nats_url)
    await ensure(nc.jetstream())
    await nc.close()
    with serve_app(create_app(GatewaySettings(nats_url=nats_url, api_token=TOKEN, data_dir=tmp_path))) as base:
        await asyncio.to_thread(wait_ready, base)
        yield base


async def ask(nc, session_id: str) -> ApprovalRequested:
    event = ApprovalRequested(session_id=session_id, turn_id=str(uuid.uuid4()), by="agent",
                              approval_id=str(uuid.uuid4()), verb=Verb.RESET, request_id=str(uuid.uuid4()))
    await EventLog(nc.jetstream(), writer="agent-runner").append(event)
    return event


async def test_an_unanswered_approval_escalates_and_the_session_says_where(nats_url, receiver, second, gateway):
    settings = settings_for(nats_url, receiver.url, escalate_url=second.url, escalate_format="ntfy",
                            escalate_seconds=1.0, gateway_url=gateway, gateway_token=TOKEN)
    nc = await nats.connect(nats_url)
    async with running(settings), httpx.AsyncClient(base_url=gateway, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        sid = (await c.post("/api/session")).json()["session_id"]
        decided, waiting = await ask(nc, sid), await ask(nc, sid)
        await EventLog(nc.jetstream(), writer="gateway").append(VerbProgressed(
            session_id=sid, turn_id=decided.turn_id, by="operator", verb=Verb.RESET, phase=VerbPhase.APPROVED,
            request_id=decided.request_id))
        started = time.monotonic()
        [escalation] = await second.wait_for(1, timeout=10)
        assert time.monotonic() - started >= 0.5  # not before its time
        assert escalation.headers["priority"] == "5" and "approve reset?" in escalation.headers["title"]
        assert escalation.path == "/notify/topic"
        deadline = time.monotonic() + 5
        escalated = []
        while not escalated and time.monotonic() < deadline:
            records = (await c.get(f"/api/session/{sid}/events")).json()
            escalated = [e for e in records["events"] if e["kind"] == "escalated"]
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)
        assert len(second.snapshot()) == 1  # the approval decided in time went nowhere else
    await nc.close()
    [event] = escalated
    assert event["approval_id"] == waiting.approval_id and event["by"] == "operator"
    assert event["channel"] == "ntfy at 127.0.0.1" and event["after_seconds"] >= 1.0
    assert len(receiver.snapshot()) == 2  # the first channel had both approvals at once


async def test_the_gateway_refuses_to_record_a_decided_or_unknown_approval(nats_url, gateway):
    nc = await nats.connect(nats_url)
    async with httpx.AsyncClient(base_url=gateway, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        sid = (await c.post("/api/session")).json()["session_id"]
        asked = await ask(nc, sid)
        await EventLog(nc.jetstream(), writer="gateway").append(VerbProgressed(
            session_id=sid, turn_id=asked.turn_id, by="alice", verb=Verb.RESET, phase=VerbPhase.DENIED,
            request_id=asked.request_id))
        body = {"channel": "ntfy at ntfy.example", "after_seconds": 120}
        late = await c.post(f"/api/session/{sid}/approval/{asked.approval_id}/escalation", json=body)
        unknown = await c.post(f"/api/session/{sid}/approval/{uuid.uuid4()}/escalation", json=body)
        secret = await c.post(f"/api/session/{sid}/approval/{asked.approval_id}/escalation",
                              json={**body, "channel": "ntfy\nat evil"})
        anonymous = await httpx.AsyncClient(base_url=gateway).post(
            f"/api/session/{sid}/approval/{asked.approval_id}/escalation", json=body)
    await nc.close()
    assert late.status_code == 409 and late.json()["detail"] == "already decided by alice"
    assert unknown.status_code == 404 and secret.status_code == 422 and anonymous.status_code == 401
