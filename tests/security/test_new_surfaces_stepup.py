"""Step-up passkeys, attacked with a stolen login (red team).

tests/gateway/test_step_up.py covers an assertion replayed, stale, made for
another request/verb/session, or carried by another operator. Here:

- every mutating path demands the passkey: /api/pve/<verb> and
  /api/vms/<name or vmid>/pve/<verb>, and approving a colleague's
  two-person press in the page;
- an assertion made for a press on one VM does not press on another;
- a passkey of bob's does not step alice up;
- a registration challenge fetched while alice had no passkey cannot
  register a second one after her first (the token alone enrols once).
Real gateway, real WebAuthn verification, the soft passkey of tests/passkey.py.
"""

from __future__ import annotations

import pytest
from webauthn.helpers import bytes_to_base64url

from events.verbs import MUTATING, Verb
from tests.gateway.operators import asked, edge_gateway, enrol, operator
from tests.passkey import SoftPasskey
from tests.pve_executor.test_many_vms import TWO


@pytest.fixture
async def gateway(nats_url, js):  # type: ignore[no-untyped-def]
    async with edge_gateway(nats_url, js, step_up=True, step_up_seconds=60, verb_wait_seconds=5, vms=TWO,
                            two_person=frozenset({Verb.CYCLE})) as base:
        yield base


@pytest.fixture
async def alice(gateway):  # type: ignore[no-untyped-def]
    async with operator(gateway, "alice") as c:
        yield c


@pytest.fixture
async def bob(gateway):  # type: ignore[no-untyped-def]
    async with operator(gateway, "bob") as c:
        yield c


def offered_to(key: SoftPasskey, public_key: dict) -> dict:
    """The options as a forger would rewrite them so `key` answers them."""
    return {**public_key, "allowCredentials": [{"type": "public-key", "id": bytes_to_base64url(key.credential_id)}]}


async def test_every_mutating_path_demands_the_passkey(alice, bob, js):
    key = await enrol(alice)
    bobs = await enrol(bob)
    web = (await alice.post("/api/session", json={"vm": "web"})).json()["session_id"]
    db = (await alice.post("/api/session", json={"vm": "db"})).json()["session_id"]
    missed = []
    for verb in sorted(v.value for v in MUTATING):
        for path, body in ((f"/api/pve/{verb}", {"session_id": web}), (f"/api/vms/web/pve/{verb}", {"session_id": web}),
                           (f"/api/vms/102/pve/{verb}", {"session_id": web}), (f"/api/vms/db/pve/{verb}", {"session_id": db}),
                           (f"/api/vms/103/pve/{verb}", {"session_id": db, "idempotency_key": "k1"})):
            answer = await alice.post(path, json=body)
            if answer.status_code != 428:
                missed.append((path, answer.status_code, answer.text))
    assert missed == []
    # a passkey alice never registered does not press
    step = await asked(alice, "/api/vms/db/pve/cycle", {"session_id": db})
    forged = await alice.post("/api/vms/db/pve/cycle", json={"session_id": db, "step_up": (stranger := SoftPasskey())
                                                             .assert_(offered_to(stranger, step["public_key"]))})
    assert forged.status_code == 403, forged.text
    # the press itself, with her own: it waits for a second operator, whose Approve needs his passkey
    step = await asked(alice, "/api/vms/db/pve/cycle", {"session_id": db})
    pressed = await alice.post("/api/vms/db/pve/cycle", json={"session_id": db, "step_up": key.assert_(step["public_key"])})
    assert pressed.status_code == 202, pressed.text
    approval = f"/api/session/{db}/approval/{pressed.json()['approval_id']}"
    step = await asked(bob, approval, {"approve": True})
    own = await asked(alice, approval, {"approve": True})  # her passkey, her own press: still refused
    mine = await alice.post(approval, json={"approve": True, "step_up": key.assert_(own["public_key"])})
    assert mine.status_code == 403 and "yourself" in mine.json()["detail"], mine.text
    carried = await alice.post(approval, json={"approve": True, "step_up": bobs.assert_(step["public_key"])})
    assert carried.status_code == 403 and "by bob" in carried.json()["detail"], carried.text


async def test_an_assertion_for_one_vm_never_presses_on_another(alice):
    key = await enrol(alice)
    step = await asked(alice, "/api/vms/web/pve/stop", {})
    tries = {path: await alice.post(path, json={"step_up": key.assert_(step["public_key"])})
             for path in ("/api/vms/db/pve/stop", "/api/vms/103/pve/stop")}
    assert {p: r.status_code for p, r in tries.items()} == {p: 403 for p in tries}, {p: r.text for p, r in tries.items()}
    assert all("on VM web" in r.json()["detail"] and "on VM db" in r.json()["detail"] for r in tries.values())


async def test_bobs_passkey_does_not_step_alice_up(alice, bob):
    await enrol(alice)
    bobs = await enrol(bob)
    step = await asked(alice, "/api/vms/web/pve/reset", {})
    borrowed = await alice.post("/api/vms/web/pve/reset",
                                json={"step_up": bobs.assert_(offered_to(bobs, step["public_key"]))})
    assert borrowed.status_code == 403 and "not registered for alice" in borrowed.json()["detail"], borrowed.text


async def test_a_challenge_fetched_before_the_first_passkey_cannot_enrol_a_second(alice):
    """A thief with alice's token asks for creation options before she
    registers; once she has, those options must not add the thief's key."""
    thiefs_options = (await alice.post("/api/passkeys/options")).json()
    await enrol(alice)  # alice's first passkey, with options of her own
    late = await alice.post("/api/passkeys", json={"credential": SoftPasskey().register(thiefs_options)})
    state = (await alice.get("/api/passkeys")).json()
    assert late.status_code == 403, late.text
    assert len(state["passkeys"]) == 1
