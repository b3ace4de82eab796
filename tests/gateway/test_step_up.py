"""Step-up for mutating verbs (issue 19), at the API, with the gateway's real
WebAuthn verification, a real pve-executor, and a real sshd in front of the
shipped forced command over a fake `qm`. The passkey is tests/passkey.py
(the browser's own is tests/pwa/test_step_up.py), so a test can make what
an attacker would: an assertion for another request, a replay, a stale one,
one without user verification, one from another origin or operator."""

from __future__ import annotations

import asyncio
import uuid
from msgspec.structs import replace

import httpx
import nats
import pytest

from events import subjects
from events.codec import decode_command, encode
from events.commands import AnswerApproval, ApprovalReply
from eventbus.topology import ensure
from events.verbs import Verb
from gateway.app import create_app
from gateway.settings import Settings
from tests.passkey import UP, SoftPasskey
from tests.pve_executor.rig import executor, settings_for
from tests.pve_host.conftest import ssh_host as pve  # noqa: F401 - fixture
from tests.pve_host.conftest import sshd_server  # noqa: F401 - fixture
from tests.gateway.test_approvals import ask_approval, hold_turn
from tests.servers import serve_app, wait_ready

SECRET = "edge-proxy-secret-for-step-up"


def as_user(user: str) -> dict[str, str]:
    return {"X-authentik-username": user, "X-Breakglass-Edge-Secret": SECRET}


@pytest.fixture
def step_up_seconds() -> float:
    return 60.0


@pytest.fixture
async def gateway(nats_url, js, step_up_seconds):  # type: ignore[no-untyped-def]
    await ensure(js)
    settings = Settings(nats_url=nats_url, trust_edge_header=True, edge_secret=SECRET, step_up=True,
                        step_up_seconds=step_up_seconds, verb_wait_seconds=30)
    with serve_app(create_app(settings)) as base:
        await asyncio.to_thread(wait_ready, base)
        yield base


@pytest.fixture
async def alice(gateway):  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=gateway, headers=as_user("alice"), timeout=40) as c:
        yield c


async def enrol(client: httpx.AsyncClient) -> SoftPasskey:
    key = SoftPasskey()
    options = (await client.post("/api/passkeys/options")).json()
    assert options["authenticatorSelection"]["userVerification"] == "required"
    answer = await client.post("/api/passkeys", json={"credential": key.register(options)})
    assert answer.status_code == 200, answer.text
    return key


async def session(client: httpx.AsyncClient) -> str:
    return (await client.post("/api/session")).json()["session_id"]


async def asked(client: httpx.AsyncClient, path: str, body: dict) -> dict:
    answer = await client.post(path, json=body)
    assert answer.status_code == 428, answer.text
    assert answer.json()["detail"].startswith("confirm ")
    return answer.json()["step_up"]


async def test_without_a_passkey_a_mutating_press_is_refused_and_reads_still_run(alice, nats_url, sshd_server, pve):  # noqa: F811
    async with executor(settings_for(nats_url, sshd_server)):
        refused = await alice.post("/api/pve/cycle", json={})
        status = await alice.post("/api/pve/status", json={})
    assert refused.status_code == 403 and "register one in Settings" in refused.json()["detail"]
    assert status.status_code == 200  # read-only verbs never ask
    assert pve.calls() == ["status 102"]
    state = (await alice.get("/api/passkeys")).json()
    assert state == {"user": "alice", "passkeys": [], "step_up": True, "two_person": []}


async def test_a_fresh_assertion_runs_the_cycle_once_and_a_replay_is_refused(alice, nats_url, sshd_server, pve):  # noqa: F811
    key = await enrol(alice)
    sid = await session(alice)
    body = {"session_id": sid, "idempotency_key": "press-1"}
    async with executor(settings_for(nats_url, sshd_server)):
        step = await asked(alice, "/api/pve/cycle", body)
        assert pve.calls() == []  # nothing ran while it waited for the passkey
        proof = key.assert_(step["public_key"])
        ran = await alice.post("/api/pve/cycle", json={**body, "step_up": proof})
        assert ran.status_code == 200, ran.text
        calls = pve.calls()
        assert any(c.startswith("stop") for c in calls) and any(c.startswith("start") for c in calls), calls
        replay = await alice.post("/api/pve/cycle", json={**body, "idempotency_key": "press-2", "step_up": proof})
    assert replay.status_code == 403
    assert replay.json()["detail"] == "this passkey confirmation is unknown or was already used; confirm again"
    assert pve.calls() == calls
    # the verb ran under the request id the challenge was made for
    events = (await alice.get(f"/api/session/{sid}/events")).json()["events"]
    assert {e["request_id"] for e in events if e["kind"] == "verb"} == {step["request_id"]}


async def test_an_assertion_made_for_another_request_is_refused(gateway, alice, nats_url, sshd_server, pve):  # noqa: F811
    key = await enrol(alice)
    one, other = await session(alice), await session(alice)
    async with executor(settings_for(nats_url, sshd_server)):
        step = await asked(alice, "/api/pve/cycle", {"session_id": one})
        for wrong, why in (
            ({"session_id": other}, f"made for pressing `cycle` on VM devvm in session {one}, "
                                    f"not for pressing `cycle` on VM devvm in session {other}"),
            ({"session_id": one, "idempotency_key": "k"}, "made for pressing `cycle`"),
        ):
            refused = await alice.post("/api/pve/cycle", json={**wrong, "step_up": key.assert_(step["public_key"])})
            assert refused.status_code == 403 and why in refused.json()["detail"], refused.text
        refused = await alice.post("/api/pve/stop", json={"session_id": one, "step_up": key.assert_(step["public_key"])})
        assert refused.status_code == 403 and "not for pressing `stop`" in refused.json()["detail"]
        async with httpx.AsyncClient(base_url=gateway, headers=as_user("bob"), timeout=40) as bob:
            stolen = await bob.post("/api/pve/cycle", json={"session_id": one, "step_up": key.assert_(step["public_key"])})
        assert stolen.status_code == 403 and "by alice" in stolen.json()["detail"], stolen.text
        # still good for its own request: a mismatch does not spend it
        ran = await alice.post("/api/pve/cycle", json={"session_id": one, "step_up": key.assert_(step["public_key"])})
    assert ran.status_code == 200, ran.text


async def test_no_user_verification_or_another_origin_does_not_verify(alice, nats_url, sshd_server, pve):  # noqa: F811
    key = await enrol(alice)
    for forged in ({"flags": UP}, {"origin": "https://evil.example"}):
        step = await asked(alice, "/api/pve/reset", {})
        refused = await alice.post("/api/pve/reset", json={"step_up": key.assert_(step["public_key"], **forged)})
        assert refused.status_code == 403, refused.text
        assert refused.json()["detail"].startswith("the passkey assertion did not verify"), refused.text
    garbage = await alice.post("/api/pve/reset", json={"step_up": {"response": {"clientDataJSON": "!!"}}})
    assert garbage.status_code == 403 and "not a passkey credential" in garbage.json()["detail"]
    assert pve.calls() == []


@pytest.mark.parametrize("step_up_seconds", [5.0])
async def test_a_stale_assertion_is_refused(alice, nats_url, sshd_server, pve):  # noqa: F811
    key = await enrol(alice)
    step = await asked(alice, "/api/pve/stop", {})
    proof = key.assert_(step["public_key"])
    await asyncio.sleep(5.2)
    stale = await alice.post("/api/pve/stop", json={"step_up": proof})
    assert stale.status_code == 403 and "expired" in stale.json()["detail"], stale.text
    assert pve.calls() == []


async def test_approving_the_agents_cycle_needs_a_passkey_bound_to_that_approval(gateway, alice, nats_url):
    key = await enrol(alice)
    sid = await session(alice)
    nc = await nats.connect(nats_url)
    try:
        await hold_turn(nc, sid)
        first, second = str(uuid.uuid4()), str(uuid.uuid4())
        await ask_approval(nc, sid, first, Verb.CYCLE)
        await ask_approval(nc, sid, second, Verb.CYCLE)
        answered: list[AnswerApproval] = []

        async def runner(msg) -> None:  # type: ignore[no-untyped-def]
            answered.append(decode_command(msg.data))  # type: ignore[arg-type]
            await msg.respond(encode(ApprovalReply(accepted=True)))

        await nc.subscribe(subjects.approval(sid), cb=runner)
        step = await asked(alice, f"/api/session/{sid}/approval/{first}", {"approve": True})
        proof = key.assert_(step["public_key"])
        wrong = await alice.post(f"/api/session/{sid}/approval/{second}", json={"approve": True, "step_up": proof})
        assert wrong.status_code == 403 and f"approving `cycle` in session {sid}" in wrong.json()["detail"]
        assert answered == []
        ok = await alice.post(f"/api/session/{sid}/approval/{first}", json={"approve": True, "step_up": proof})
        assert ok.status_code == 200 and ok.json() == {"accepted": True}, ok.text
        assert [(a.approval_id, a.approved, a.by) for a in answered] == [(first, True, "alice")]
        deny = await alice.post(f"/api/session/{sid}/approval/{second}", json={"approve": False})
        assert deny.status_code == 200  # a Deny never needs the passkey
    finally:
        await nc.close()


def test_the_check_other_parts_call():
    from gateway.stepup import required

    on = Settings(nats_url="nats://127.0.0.1:1", step_up=True)
    assert [v for v in Verb if required(on, v)] == [Verb.RESET, Verb.STOP, Verb.START, Verb.CYCLE]
    assert not any(required(replace(on, step_up=False), v) for v in Verb)


async def test_a_further_passkey_needs_one_the_operator_already_has(alice):
    key = await enrol(alice)
    thief = SoftPasskey()
    step = await asked(alice, "/api/passkeys/options", {})  # the token alone no longer enrols
    assert step["public_key"]["allowCredentials"]
    forged = await alice.post("/api/passkeys/options", json={"step_up": thief.register({"challenge": "x" * 43})})
    assert forged.status_code == 403
    options = await alice.post("/api/passkeys/options", json={"step_up": key.assert_(step["public_key"])})
    assert options.status_code == 200 and options.json()["excludeCredentials"], options.text
    added = await alice.post("/api/passkeys", json={"credential": SoftPasskey().register(options.json())})
    assert added.status_code == 200, added.text
    assert len((await alice.get("/api/passkeys")).json()["passkeys"]) == 2
