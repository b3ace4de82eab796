"""The two-person rule over HTTP (issue 19): an operator's press of a listed
verb waits in its session; the presser cannot approve it, a second operator
can, the first decision wins, and the verb then runs once on a real sshd in
front of the shipped forced command over a fake `qm` (pve-executor holding
the same list: tests/security/test_two_person.py shows it refuses what the
gateway did not grant)."""

from __future__ import annotations

import asyncio
import time
from msgspec.structs import replace

import httpx
import pytest

from eventbus.topology import ensure
from events.verbs import Verb
from gateway.app import create_app
from gateway.settings import Settings
from tests.gateway.test_step_up import SECRET, as_user
from tests.pve_executor.rig import executor, settings_for
from tests.pve_host.conftest import ssh_host as pve  # noqa: F401 - fixture
from tests.pve_host.conftest import sshd_server  # noqa: F401 - fixture
from tests.servers import serve_app, wait_ready

TWO = frozenset({Verb.CYCLE})


@pytest.fixture
def wait_seconds() -> float:
    return 600.0


@pytest.fixture
async def gateway(nats_url, js, wait_seconds):  # type: ignore[no-untyped-def]
    await ensure(js)
    settings = Settings(nats_url=nats_url, trust_edge_header=True, edge_secret=SECRET, two_person=TWO,
                        two_person_wait_seconds=wait_seconds, verb_wait_seconds=30)
    with serve_app(create_app(settings)) as base:
        await asyncio.to_thread(wait_ready, base)
        yield base


def client(base: str, user: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, headers=as_user(user), timeout=40)


async def events(c: httpx.AsyncClient, sid: str) -> list[dict]:
    return (await c.get(f"/api/session/{sid}/events")).json()["events"]


async def until_done(c: httpx.AsyncClient, sid: str, seconds: float = 30) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done = [e for e in await events(c, sid) if e["kind"] == "verb" and e["phase"] == "done"]
        if done:
            return done[0]
        await asyncio.sleep(0.2)
    raise AssertionError("the approved verb never finished")


async def test_a_press_waits_for_a_second_operator_and_runs_once(gateway, nats_url, sshd_server, pve):  # noqa: F811
    async with client(gateway, "alice") as alice, client(gateway, "bob") as bob, client(gateway, "carol") as carol, \
            executor(settings_for(nats_url, sshd_server, two_person=TWO)):
        no_session = await alice.post("/api/pve/cycle", json={})
        assert no_session.status_code == 400 and "two-person rule" in no_session.json()["detail"]
        sid = (await alice.post("/api/session")).json()["session_id"]
        pressed = await alice.post("/api/pve/cycle", json={"session_id": sid})
        assert pressed.status_code == 202, pressed.text
        pending = pressed.json()
        assert pending["pending"] is True and "another operator" in pending["detail"]
        approval = f"/api/session/{sid}/approval/{pending['approval_id']}"
        [asked] = [e for e in await events(alice, sid) if e["kind"] == "approval"]
        assert (asked["by"], asked["verb"], asked["request_id"]) == ("alice", "cycle", pending["request_id"])

        own = await alice.post(approval, json={"approve": True})
        assert own.status_code == 403 and "you pressed `cycle` yourself" in own.json()["detail"]
        await asyncio.sleep(0.5)
        assert pve.calls() == []  # nothing ran on one person's word

        ok = await bob.post(approval, json={"approve": True})
        assert ok.status_code == 200 and ok.json() == {"accepted": True}, ok.text
        done = await until_done(alice, sid)
        assert (done["exit_code"], done["by"], done["request_id"]) == (0, "alice", pending["request_id"])
        calls = pve.calls()
        assert any(c.startswith("stop") for c in calls) and any(c.startswith("start") for c in calls), calls

        late = await carol.post(approval, json={"approve": True})
        assert late.status_code == 409 and late.json()["detail"] == "already approved by bob"
        again = await bob.post(approval, json={"approve": True})
        assert again.status_code == 409
        await asyncio.sleep(0.5)
        phases = [(e["phase"], e["by"]) for e in await events(alice, sid) if e["kind"] == "verb"]
    assert pve.calls() == calls  # ran once
    assert ("approved", "bob") in phases and phases.count(("done", "alice")) == 1


async def test_the_presser_may_withdraw_and_then_nobody_can_approve(gateway, nats_url, sshd_server, pve):  # noqa: F811
    async with client(gateway, "alice") as alice, client(gateway, "bob") as bob, \
            executor(settings_for(nats_url, sshd_server, two_person=TWO)):
        sid = (await alice.post("/api/session")).json()["session_id"]
        pending = (await alice.post("/api/pve/cycle", json={"session_id": sid})).json()
        approval = f"/api/session/{sid}/approval/{pending['approval_id']}"
        withdrawn = await alice.post(approval, json={"approve": False})
        assert withdrawn.status_code == 200 and withdrawn.json() == {"accepted": True}
        late = await bob.post(approval, json={"approve": True})
        assert late.status_code == 409 and late.json()["detail"] == "already denied by alice"
        await asyncio.sleep(0.5)
    assert pve.calls() == []


@pytest.mark.parametrize("wait_seconds", [10.0])
async def test_an_expired_press_is_no_longer_waiting(gateway, nats_url, sshd_server, pve):  # noqa: F811
    async with client(gateway, "alice") as alice, client(gateway, "bob") as bob:
        sid = (await alice.post("/api/session")).json()["session_id"]
        pending = (await alice.post("/api/pve/cycle", json={"session_id": sid})).json()
        await asyncio.sleep(10.2)
        late = await bob.post(f"/api/session/{sid}/approval/{pending['approval_id']}", json={"approve": True})
    assert late.status_code == 200 and late.json() == {"accepted": False}
    assert pve.calls() == []


def test_the_rule_is_read_from_the_environment():
    from events.config import ConfigError, Env

    base = {"BREAKGLASS_NATS_URL": "nats://127.0.0.1:4222"}
    assert Settings.from_env(Env({**base, "BREAKGLASS_TWO_PERSON_VERBS": "cycle, stop"})).two_person == {
        Verb.CYCLE, Verb.STOP}
    assert Settings.from_env(Env({**base, "BREAKGLASS_TWO_PERSON_VERBS": "all"})).two_person == {
        Verb.CYCLE, Verb.STOP, Verb.START, Verb.RESET}
    with pytest.raises(ConfigError, match="only mutating verbs"):
        Settings.from_env(Env({**base, "BREAKGLASS_TWO_PERSON_VERBS": "status"}))
    assert replace(Settings(nats_url="nats://x"), two_person=TWO).two_person == TWO
