"""The approval route: Approve/Deny travels to whichever runner owns the turn
(played here by a responder on the session's approval subject); anything
that is not a clear "taken" from it is `accepted: false`."""

from __future__ import annotations

import json
import uuid

import httpx
import nats
import pytest

from events import subjects
from events.codec import decode, decode_command, encode
from events.commands import AnswerApproval, ApprovalGrant, ApprovalReply
from events.kinds import ApprovalRequested
from eventbus.locks import TurnLocks
from eventbus.log import EventLog
from eventbus.topology import Topology, grant_key
from events.verbs import Verb

APPROVAL = "00000000-0000-4000-8000-000000000001"


@pytest.fixture
async def client(gateway):
    async with httpx.AsyncClient(base_url=gateway.base, headers=gateway.headers, timeout=10) as c:
        yield c


@pytest.fixture
async def bus(gateway):
    nc = await nats.connect(gateway.nats_url)
    yield nc
    await nc.close()


async def open_session(client) -> str:
    return (await client.post("/api/session")).json()["session_id"]


async def hold_turn(nc, session_id: str) -> None:
    js = nc.jetstream()
    kv = await js.key_value(Topology().kv_bucket)
    assert await TurnLocks(kv, EventLog(js)).take(session_id, str(uuid.uuid4()), "operator")


async def ask_approval(nc, session_id: str, approval_id: str = APPROVAL, verb: Verb = Verb.RESET) -> str:
    """What the runner records when the agent asks for a mutating verb."""
    request_id = str(uuid.uuid4())
    await EventLog(nc.jetstream()).append(ApprovalRequested(
        session_id=session_id, by="agent", approval_id=approval_id, verb=verb, request_id=request_id))
    return request_id


def url(session_id: str, approval_id: str = APPROVAL) -> str:
    return f"/api/session/{session_id}/approval/{approval_id}"


async def test_the_owning_runner_gets_the_answer_with_the_callers_identity(client, bus):
    sid = await open_session(client)
    await hold_turn(bus, sid)
    seen: list[AnswerApproval] = []

    async def runner(msg) -> None:
        command = decode_command(msg.data)
        assert isinstance(command, AnswerApproval) and msg.subject == subjects.approval(command.session_id)
        seen.append(command)
        await msg.respond(encode(ApprovalReply(accepted=True)))

    await bus.subscribe(subjects.approval(sid), cb=runner)
    await bus.flush()
    request_id = await ask_approval(bus, sid, verb=Verb.CYCLE)
    assert (await client.post(url(sid), json={"approve": True})).json() == {"accepted": True}
    assert (await client.post(url(sid), json={"approve": False})).json() == {"accepted": True}
    assert [(c.approval_id, c.approved, c.by, c.session_id) for c in seen] == [
        (APPROVAL, True, "operator", sid), (APPROVAL, False, "operator", sid)]
    # the gateway records the operator's decisions, under its own writer subject
    decisions = [(json.loads(r.data), r.writer) for r in await EventLog(bus.jetstream()).read(sid)]
    assert [(e["phase"], e["by"], e["request_id"], w) for e, w in decisions if e["kind"] == "verb"] == [
        ("approved", "operator", request_id, "gateway"), ("denied", "operator", request_id, "gateway")]
    # the Approve is also the grant pve-executor redeems, bound to what was asked
    kv = await bus.jetstream().key_value(Topology().kv_bucket)
    grant = decode((await kv.get(grant_key(APPROVAL))).value, ApprovalGrant)
    assert (grant.session_id, grant.request_id, grant.verb, grant.approved_by) == (
        sid, request_id, Verb.CYCLE, "operator")


async def test_approving_what_was_never_asked_grants_nothing(client, bus):
    sid = await open_session(client)
    await hold_turn(bus, sid)
    asked: list[bytes] = []

    async def runner(msg) -> None:
        asked.append(msg.data)
        await msg.respond(encode(ApprovalReply(accepted=True)))

    await bus.subscribe(subjects.approval(sid), cb=runner)
    await bus.flush()
    other = str(uuid.uuid4())
    await ask_approval(bus, sid, approval_id=other)  # a different approval of the same session
    assert (await client.post(url(sid), json={"approve": True})).json() == {"accepted": False}
    assert asked == []
    kv = await bus.jetstream().key_value(Topology().kv_bucket)
    with pytest.raises(nats.js.errors.KeyNotFoundError):
        await kv.get(grant_key(APPROVAL))


async def test_a_runner_that_no_longer_waits_is_accepted_false(client, bus):
    sid = await open_session(client)
    await hold_turn(bus, sid)

    async def runner(msg) -> None:
        await msg.respond(encode(ApprovalReply(accepted=False)))

    await bus.subscribe(subjects.approval(sid), cb=runner)
    await bus.flush()
    await ask_approval(bus, sid)
    answer = await client.post(url(sid), json={"approve": True})
    assert answer.status_code == 200 and answer.json() == {"accepted": False}


async def test_no_turn_running_is_accepted_false_without_asking(client, bus):
    sid = await open_session(client)
    asked: list[bytes] = []

    async def runner(msg) -> None:
        asked.append(msg.data)
        await msg.respond(encode(ApprovalReply(accepted=True)))

    await bus.subscribe(subjects.APPROVAL_ALL, cb=runner)
    await bus.flush()
    assert (await client.post(url(sid), json={"approve": True})).json() == {"accepted": False}
    assert asked == []


@pytest.mark.parametrize("reply", [None, b"not json", b'{"accepted": "yes"}'], ids=["no runner", "junk", "wrong type"])
async def test_no_usable_reply_is_accepted_false(client, bus, reply):
    sid = await open_session(client)
    await hold_turn(bus, sid)
    if reply is not None:
        async def runner(msg) -> None:
            await msg.respond(reply)

        await bus.subscribe(subjects.approval(sid), cb=runner)
        await bus.flush()
    await ask_approval(bus, sid)
    answer = await client.post(url(sid), json={"approve": True})
    assert answer.status_code == 200 and answer.json() == {"accepted": False}


async def test_an_unknown_session_is_404(client):
    answer = await client.post(url(str(uuid.uuid4())), json={"approve": True})
    assert answer.status_code == 404


@pytest.mark.parametrize("body", [{}, {"approve": "yes"}, {"approve": 1}, {"approve": None}, [], "true"])
async def test_a_bad_body_is_422(client, body):
    sid = await open_session(client)
    assert (await client.post(url(sid), json=body)).status_code == 422


@pytest.mark.parametrize("session_id,approval_id", [
    ("nope", APPROVAL), ("6CFAA6BB-D10D-4842-8572-2D78D3EEEE8C", APPROVAL), (None, "nope"), (None, "a.b.>"),
])
async def test_bad_ids_are_422(client, session_id, approval_id):
    sid = session_id or await open_session(client)
    assert (await client.post(url(sid, approval_id), json={"approve": True})).status_code == 422
