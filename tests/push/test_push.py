"""Web Push from the gateway through a real push service on this machine
(tests/push/service.py): VAPID checked, payload decrypted, then the
notification's decision grant used as an attacker would use it."""

from __future__ import annotations

import asyncio
import os
import stat
import time
import uuid

import httpx
import msgspec
import nats
import pytest

from events import subjects
from events.codec import decode_command, encode
from events.commands import AnswerApproval, ApprovalReply
from events.kinds import Outcome, TurnEnded, TurnStatus, VerbPhase, VerbProgressed
from eventbus.log import EventLog
from eventbus.topology import Topology, ensure, kv_keys
from events.verbs import Verb
from gateway.push import vapid
from tests.gateway.conftest import TOKEN
from tests.servers import wait_ready

from .conftest import ask_approval, hold_turn, push_settings, start_gateway, wait_push_ready

GRANT = "X-Breakglass-Push-Grant"


class Runner:
    """Plays the runner that owns the turn: the first answer to an approval
    is taken, every later one is not (agent-runner's pending future)."""

    def __init__(self) -> None:
        self.answers: list[AnswerApproval] = []

    async def on(self, msg) -> None:  # type: ignore[no-untyped-def]
        command = decode_command(msg.data)
        first = not any(a.approval_id == command.approval_id for a in self.answers)
        self.answers.append(command)
        await msg.respond(encode(ApprovalReply(accepted=first)))


async def subscribe(client: httpx.AsyncClient, browser, **body) -> httpx.Response:
    return await client.post("/api/push/subscription", json={**browser.subscription(), **body})


@pytest.fixture
async def client(push_gateway):
    async with httpx.AsyncClient(base_url=push_gateway.base, headers=push_gateway.headers, timeout=15) as c:
        yield c


@pytest.fixture
async def session(client, nc):
    sid = (await client.post("/api/session")).json()["session_id"]
    turn_id = await hold_turn(nc, sid)
    runner = Runner()
    sub = await nc.subscribe(subjects.approval(sid), cb=runner.on)
    yield sid, turn_id, runner
    await sub.unsubscribe()


def test_the_vapid_key_is_made_once_and_kept_0600(tmp_path):
    first = vapid.load_or_create(tmp_path)
    again = vapid.load_or_create(tmp_path)
    assert vapid.public_key(first) == vapid.public_key(again)
    assert stat.S_IMODE(os.stat(tmp_path / vapid.KEY_FILE).st_mode) == 0o600


async def test_an_approval_push_is_encrypted_signed_and_carries_no_transcript(push, client, session, nc):
    sid, turn_id, _ = session
    push.application_key = (await client.get("/api/push/key")).json()["public_key"]
    browser = push.browser()
    assert (await subscribe(client, browser)).status_code == 201
    approval_id, request_id = await ask_approval(nc, sid, turn_id=turn_id)
    [got] = await asyncio.to_thread(push.wait, 1, kind="approval")
    assert got.claims["aud"] == push.base and got.headers["urgency"] == "high"
    payload = dict(got.payload)
    grant, expires_at = payload.pop("grant"), payload.pop("expires_at")
    assert payload == {"kind": "approval", "title": "breakglass: approve cycle?", "session_id": sid,
                       "id": approval_id, "verb": "cycle"}
    assert "SECRET" not in str(got.payload)
    assert len(grant) == 43 and time.time() + 250 < expires_at <= time.time() + 300


async def test_approve_from_the_notification_decides_once_as_the_subscriber(push, client, session, nc):
    sid, turn_id, runner = session
    browser = push.browser()
    await subscribe(client, browser)
    approval_id, request_id = await ask_approval(nc, sid, turn_id=turn_id)
    [got] = await asyncio.to_thread(push.wait, 1, kind="approval")
    grant = got.payload["grant"]
    async with httpx.AsyncClient(base_url=client.base_url, timeout=15) as stranger:  # no bearer: the SW has none
        assert (await stranger.post("/api/push/decision", json={"approve": True})).status_code == 401
        forged = await stranger.post("/api/push/decision", json={"approve": True}, headers={GRANT: "A" * 43})
        assert forged.status_code == 403
        decided = await stranger.post("/api/push/decision", json={"approve": True}, headers={GRANT: grant})
        assert decided.status_code == 200, decided.text
        assert decided.json() == {"accepted": True, "by": "operator", "session_id": sid, "approval_id": approval_id}
        replayed = await stranger.post("/api/push/decision", json={"approve": False}, headers={GRANT: grant})
        assert replayed.status_code == 409 and "already used" in replayed.json()["detail"]
    assert [(a.approval_id, a.approved, a.by) for a in runner.answers] == [(approval_id, True, "operator")]
    events = [msgspec.json.decode(r.data) for r in await EventLog(nc.jetstream()).read(sid)]
    assert [(e["phase"], e["by"]) for e in events if e["kind"] == "verb"] == [("approved", "operator")]
    kv = await nc.jetstream().key_value(Topology().kv_bucket)
    stored = msgspec.json.decode((await kv.get(f"grants.{approval_id}")).value)
    assert (stored["request_id"], stored["verb"], stored["approved_by"]) == (request_id, "cycle", "operator")
    # The page's own Approve afterwards is told who decided first.
    late = await client.post(f"/api/session/{sid}/approval/{approval_id}", json={"approve": False})
    assert late.json() == {"accepted": False, "decided_by": "operator"}


async def test_a_second_notification_is_told_who_decided_first(push, client, session, nc):
    sid, turn_id, _ = session
    phone, laptop = push.browser(), push.browser()
    await subscribe(client, phone)
    await subscribe(client, laptop)
    approval_id, _ = await ask_approval(nc, sid, turn_id=turn_id)
    grants = {r.endpoint: r.payload["grant"] for r in await asyncio.to_thread(push.wait, 2, kind="approval")}
    assert len(set(grants.values())) == 2  # one grant per subscription
    async with httpx.AsyncClient(base_url=client.base_url, timeout=15) as sw:
        first = await sw.post("/api/push/decision", json={"approve": False}, headers={GRANT: grants[phone.endpoint]})
        second = await sw.post("/api/push/decision", json={"approve": True}, headers={GRANT: grants[laptop.endpoint]})
    assert first.status_code == 200
    assert second.status_code == 409 and second.json()["detail"] == "already decided by operator"


async def test_a_grant_is_refused_after_the_approval_timeout(push, nats_url, gateway_settings, tmp_path, nc):
    settings = push_settings(gateway_settings, tmp_path / "gw", approval_timeout_seconds=1.0)
    with start_gateway(settings) as base:
        await ensure(nc.jetstream())
        await asyncio.to_thread(wait_ready, base)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        await asyncio.to_thread(wait_push_ready, base, headers)
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=15) as c:
            sid = (await c.post("/api/session")).json()["session_id"]
            turn_id = await hold_turn(nc, sid)
            await subscribe(c, push.browser())
            await ask_approval(nc, sid, turn_id=turn_id)
            [got] = await asyncio.to_thread(push.wait, 1, kind="approval")
            await asyncio.sleep(max(0.0, got.payload["expires_at"] - time.time()) + 0.1)
            late = await c.post("/api/push/decision", json={"approve": True}, headers={GRANT: got.payload["grant"]})
    assert late.status_code == 410 and "time is over" in late.json()["detail"]


async def test_turn_end_and_a_mutating_verbs_result_push(push, client, session, nc):
    sid, turn_id, _ = session
    await subscribe(client, push.browser())
    log = EventLog(nc.jetstream(), writer="pve-executor")
    request_id = str(uuid.uuid4())
    await log.append(VerbProgressed(session_id=sid, by="agent", verb=Verb.STATUS, phase=VerbPhase.DONE,
                                    request_id=str(uuid.uuid4()), exit_code=0, stdout="vm secret output"))
    await log.append(VerbProgressed(session_id=sid, by="agent", verb=Verb.RESET, phase=VerbPhase.DONE,
                                    request_id=request_id, exit_code=0, stdout="vm secret output"))
    await EventLog(nc.jetstream(), writer="agent-runner").append(
        TurnEnded(session_id=sid, turn_id=turn_id, by="agent-runner", outcome=Outcome.CANCELLED))
    [verb] = await asyncio.to_thread(push.wait, 1, kind="verb")
    [ended] = await asyncio.to_thread(push.wait, 1, kind="turn_end")
    assert verb.payload == {"kind": "verb", "title": "breakglass: VM reset done", "session_id": sid,
                            "id": request_id, "verb": "reset", "exit_code": 0}
    assert ended.payload == {"kind": "turn_end", "title": "breakglass: turn stopped", "session_id": sid,
                             "id": turn_id, "outcome": "cancelled"}
    assert not [r for r in push.received if r.payload.get("verb") == "status"]  # read-only: no push


async def test_a_silent_turn_and_a_lost_runner_push_once(push, nats_url, gateway_settings, tmp_path, nc):
    settings = push_settings(gateway_settings, tmp_path / "gw", silence_warning_seconds=60.0)
    with start_gateway(settings) as base:
        await ensure(nc.jetstream())
        await asyncio.to_thread(wait_ready, base)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        await asyncio.to_thread(wait_push_ready, base, headers)
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=15) as c:
            sid = (await c.post("/api/session")).json()["session_id"]
            turn_id = str(uuid.uuid4())
            await subscribe(c, push.browser())
            for since in (30.0, 61.0, 66.0):  # the runner's heartbeats, then none
                beat = TurnStatus(session_id=sid, turn_id=turn_id, by="agent-runner", elapsed_seconds=since,
                                  since_output_seconds=since, lease_seconds=1.0)
                await nc.publish(subjects.live(sid), encode(beat))
            await nc.flush()
            [silent] = await asyncio.to_thread(push.wait, 1, kind="silent")
            [lost] = await asyncio.to_thread(push.wait, 1, kind="lost")
            await asyncio.sleep(1.5)
    assert silent.payload["id"] == turn_id == lost.payload["id"] and silent.payload["session_id"] == sid
    assert len([r for r in push.received if r.payload["kind"] in ("silent", "lost")]) == 2


@pytest.mark.parametrize("status", [404, 410])
async def test_a_gone_endpoint_is_removed(push, client, session, nc, status):
    sid, turn_id, _ = session
    gone, kept = push.browser(), push.browser()
    await subscribe(client, gone)
    await subscribe(client, kept)
    push.answer[gone.endpoint.rsplit("/", 1)[1]] = status
    await ask_approval(nc, sid, turn_id=turn_id)
    await asyncio.to_thread(push.wait, 1, kind="approval")
    kv = await nc.jetstream().key_value(Topology().kv_bucket)
    deadline = time.monotonic() + 5
    while len(await kv_keys(kv, "pushsubs.*")) != 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    [left] = await kv_keys(kv, "pushsubs.*")
    assert msgspec.json.decode((await kv.get(left)).value)["endpoint"] == kept.endpoint
    await ask_approval(nc, sid, turn_id=turn_id)
    await asyncio.to_thread(push.wait, 2, kind="approval")
    assert len([r for r in push.refused if r[1] == status]) == 1  # never tried again


async def test_an_expired_subscription_gets_nothing_and_is_removed(push, client, session, nc):
    sid, turn_id, _ = session
    soon = push.browser()
    answer = await subscribe(client, soon, expirationTime=(time.time() + 1.0) * 1000)
    assert answer.status_code == 201
    await subscribe(client, push.browser())
    await asyncio.sleep(1.2)
    await ask_approval(nc, sid, turn_id=turn_id)
    got = await asyncio.to_thread(push.wait, 1, kind="approval")
    await asyncio.sleep(0.3)
    assert [r.endpoint for r in push.received] == [got[0].endpoint] and got[0].endpoint != soon.endpoint
    kv = await nc.jetstream().key_value(Topology().kv_bucket)
    assert len(await kv_keys(kv, "pushsubs.*")) == 1


async def test_bad_subscriptions_are_refused_whole(push, push_gateway):
    async with httpx.AsyncClient(base_url=push_gateway.base, headers=push_gateway.headers, timeout=10) as c:
        browser = push.browser()
        good = browser.subscription()
        cases = [
            {**good, "endpoint": "ftp://example/x"},
            {**good, "keys": {"p256dh": "AAAA", "auth": good["keys"]["auth"]}},
            {**good, "keys": {"p256dh": good["keys"]["p256dh"], "auth": "AAAA"}},
            {**good, "expirationTime": 1000.0},
        ]
        for body in cases:
            answer = await c.post("/api/push/subscription", json=body)
            assert answer.status_code == 400, (body, answer.text)
            assert "detail" in answer.json()
        async with httpx.AsyncClient(base_url=push_gateway.base, timeout=10) as stranger:
            assert (await stranger.post("/api/push/subscription", json=good)).status_code == 401
            assert (await stranger.get("/api/push/key")).status_code == 401
        assert (await c.post("/api/push/subscription", json=good)).status_code == 201
        gone = await c.request("DELETE", "/api/push/subscription", json={"endpoint": good["endpoint"]})
        assert gone.status_code == 204
        again = await c.request("DELETE", "/api/push/subscription", json={"endpoint": good["endpoint"]})
        assert again.status_code == 404


async def test_two_gateways_push_each_event_once(push, nats_url, gateway_settings, tmp_path, nc):
    shared = tmp_path / "shared"  # the replicas share the VAPID key file
    settings = push_settings(gateway_settings, shared)
    with start_gateway(settings) as one, start_gateway(settings) as two:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        await ensure(nc.jetstream())
        for base in (one, two):
            await asyncio.to_thread(wait_ready, base)
            await asyncio.to_thread(wait_push_ready, base, headers)
        async with httpx.AsyncClient(base_url=one, headers=headers, timeout=15) as c:
            sid = (await c.post("/api/session")).json()["session_id"]
            await subscribe(c, push.browser())
        await asyncio.sleep(0.3)  # the other gateway hears of it through its KV watch
        for _ in range(5):
            await ask_approval(nc, sid)
        await asyncio.to_thread(push.wait, 5, kind="approval")
        await asyncio.sleep(0.5)
    assert len(push.received) == 5 and len({r.payload["id"] for r in push.received}) == 5


async def test_the_sweep_drops_old_claims_and_dead_grants_only(nats_url, gateway_settings, tmp_path, nc):
    from gateway.bus import Bus
    from gateway.push import grants
    from gateway.push.sender import CLAIM_KEEP_SECONDS, Pusher

    await ensure(nc.jetstream())
    bus = Bus(nats_url)
    await bus.start()
    while bus.nc is None or not bus.nc.is_connected:
        await asyncio.sleep(0.02)
    pusher = Pusher(bus, push_settings(gateway_settings, tmp_path / "gw"))
    kv = await bus.kv()
    now = time.time()
    ids = dict(session_id=str(uuid.uuid4()), approval_id=str(uuid.uuid4()), request_id=str(uuid.uuid4()), verb="cycle")
    live = await grants.issue(kv, identity="operator", expires_at=now + 60, **ids)
    dead = await grants.issue(kv, identity="operator", expires_at=now - 1, **ids)
    await kv.put("pushsent." + "a" * 40, f"{now - CLAIM_KEEP_SECONDS - 5:.3f} s".encode())
    await kv.put("pushsent." + "b" * 40, f"{now:.3f} s".encode())
    try:
        assert await pusher.sweep(now) == 2
        assert sorted(await kv_keys(kv, "pushsent.*")) == ["pushsent." + "b" * 40]
        assert (await grants.spend(kv, live, "approve")).approval_id == ids["approval_id"]
        with pytest.raises(grants.GrantRefused, match="unknown"):
            await grants.spend(kv, dead, "approve")
    finally:
        await pusher.close()
        await bus.close()


async def test_the_decision_is_the_subscribers_and_only_for_the_grants_own_approval(
        push, nats_url, gateway_settings, tmp_path, nc):
    """Behind the edge proxy: alice subscribes, bob does not; alice's Deny on
    her notification is recorded as hers, and nothing in the body (another
    approval, another session, another `by`) moves it elsewhere."""
    secret = "edge-secret-0123456789"
    settings = push_settings(gateway_settings, tmp_path / "gw", trust_edge_header=True, edge_secret=secret)
    alice = {settings.edge_secret_header: secret, settings.edge_user_header: "alice"}
    with start_gateway(settings) as base:
        await ensure(nc.jetstream())
        await asyncio.to_thread(wait_ready, base)
        await asyncio.to_thread(wait_push_ready, base, alice)
        async with httpx.AsyncClient(base_url=base, headers=alice, timeout=15) as c:
            sid = (await c.post("/api/session")).json()["session_id"]
            other_sid = (await c.post("/api/session")).json()["session_id"]
            turn_id = await hold_turn(nc, sid)
            await hold_turn(nc, other_sid)
            runner = Runner()
            await nc.subscribe(subjects.approval(sid), cb=runner.on)
            await nc.subscribe(subjects.approval(other_sid), cb=runner.on)
            assert (await subscribe(c, push.browser())).status_code == 201
            target, _ = await ask_approval(nc, sid, turn_id=turn_id)
            other, _ = await ask_approval(nc, other_sid)
            grant = next(r.payload["grant"] for r in await asyncio.to_thread(push.wait, 2, kind="approval")
                         if r.payload["id"] == target)
            answer = await httpx.AsyncClient(base_url=base, timeout=15).post(
                "/api/push/decision", headers={GRANT: grant},
                json={"approve": False, "approval_id": other, "session_id": other_sid, "by": "mallory"})
    assert answer.status_code == 200 and answer.json()["by"] == "alice", answer.text
    assert [(a.session_id, a.approval_id, a.approved, a.by) for a in runner.answers] == [(sid, target, False, "alice")]
    events = [msgspec.json.decode(r.data) for r in await EventLog(nc.jetstream()).read(sid)]
    assert [(e["phase"], e["by"]) for e in events if e["kind"] == "verb"] == [("denied", "alice")]
    kv = await nc.jetstream().key_value(Topology().kv_bucket)
    assert await kv_keys(kv, "grants.*") == []  # a Deny stores no executor grant


async def test_with_step_up_a_push_carries_no_grant_and_no_grant_decides(push, nats_url, gateway_settings, tmp_path, nc):
    """The hook the step-up work fills in (`approvals.decided_in_page_only`):
    where a passkey must be shown, the notification only opens the page."""
    from msgspec.structs import replace

    from gateway.push import grants

    settings = replace(push_settings(gateway_settings, tmp_path / "gw"), step_up=True)
    with start_gateway(settings) as base:
        await ensure(nc.jetstream())
        await asyncio.to_thread(wait_ready, base)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        await asyncio.to_thread(wait_push_ready, base, headers)
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=15) as c:
            sid = (await c.post("/api/session")).json()["session_id"]
            turn_id = await hold_turn(nc, sid)
            await subscribe(c, push.browser())
            approval_id, request_id = await ask_approval(nc, sid, turn_id=turn_id)
            [got] = await asyncio.to_thread(push.wait, 1, kind="approval")
            kv = await nc.jetstream().key_value(Topology().kv_bucket)
            minted = await grants.issue(kv, identity="operator", session_id=sid, approval_id=approval_id,
                                        request_id=request_id, verb="cycle", expires_at=time.time() + 60)
            refused = await c.post("/api/push/decision", headers={GRANT: minted}, json={"approve": True})
    assert "grant" not in got.payload and got.payload["expires_at"] > time.time()
    assert refused.status_code == 403 and "passkey" in refused.json()["detail"]


async def test_a_data_dir_that_cannot_hold_the_key_turns_push_off_not_the_gateway(gateway_settings, tmp_path, nc):
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the data directory should be")
    with start_gateway(push_settings(gateway_settings, blocked)) as base:
        await ensure(nc.jetstream())
        await asyncio.to_thread(wait_ready, base)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=15) as c:
            key = await c.get("/api/push/key")
            session = await c.post("/api/session")
    assert key.status_code == 503 and "BREAKGLASS_DATA_DIR" in key.json()["detail"]
    assert session.status_code == 200
