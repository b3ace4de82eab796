"""The two-person rule and many VMs, attacked (red team).

tests/security/test_two_person.py covers a press with no grant, a grant the
presser gave themselves, the agent as approver, a grant moved to another
operator's press. Here:

- the presser approving under another spelling of their own name (the edge
  proxy's `Alice` for `alice`), or as `agent`/`Agent`: refused;
- a grant approved for a press on VM web, re-sent for VM db with the
  gateway's NATS credential or agent-runner's: refused before the grant is
  spent, so the real command on web still runs, once;
- an agent's approved verb re-sent for another VM does not burn its grant;
- the host's forced command, sent VM ids that are not plainly a listed one.
Real NATS with the shipped permissions, real pve-executor, real sshd in
front of the shipped forced command over a fake `qm`.
"""

from __future__ import annotations

from msgspec.structs import replace
from datetime import timedelta

import pytest
from msgspec.structs import replace as again

from eventbus import access
from events import subjects
from events.codec import encode
from events.commands import ApprovalGrant, RunVerb, SessionRecord
from eventbus.topology import Topology, grant_key, session_key
from events.types import new_id, utcnow
from events.verbs import Verb
from tests.gateway.test_two_person import client as as_client
from tests.gateway.test_two_person import gateway, wait_seconds  # noqa: F401 - fixtures
from tests.pve_executor.rig import executor
from tests.pve_executor.test_many_vms import settings as two_vm_settings
from tests.pve_executor.test_many_vms import two  # noqa: F401 - fixture
from tests.pve_host.host import EX_REFUSED, PveHost
from tests.security.nats_rig import Secured, secured  # noqa: F401 - fixture
from tests.security.test_two_person import put_grant
from tests.security.test_verb_authority import ask, connect

T = Topology()


async def test_the_presser_cannot_approve_under_another_spelling_nor_as_the_agent(gateway):  # noqa: F811
    async with as_client(gateway, "alice") as alice:
        sid = (await alice.post("/api/session")).json()["session_id"]
        pressed = await alice.post("/api/pve/cycle", json={"session_id": sid})
        assert pressed.status_code == 202, pressed.text
        approval = f"/api/session/{sid}/approval/{pressed.json()['approval_id']}"
        answers = {}
        for name in ("Alice", "ALICE", "alice", "agent", "Agent", "AGENT"):
            async with as_client(gateway, name) as c:
                answers[name] = await c.post(approval, json={"approve": True})
        async with as_client(gateway, "bob") as bob:
            taken = await bob.post(approval, json={"approve": True})
    assert {n: r.status_code for n, r in answers.items()} == {n: 403 for n in answers}, \
        {n: r.text for n, r in answers.items()}
    assert taken.status_code == 200 and taken.json() == {"accepted": True}


async def bound_session(s: Secured, vm: str) -> str:
    session_id = new_id()
    async with connect(s, access.GATEWAY) as gw:
        kv = await gw.jetstream().key_value(T.kv_bucket)
        await kv.create(session_key(session_id), encode(SessionRecord(
            session_id=session_id, created_by="alice", created_at=utcnow(), vm=vm)))
    return session_id


@pytest.fixture
async def running(secured: Secured, sshd_server, two: PveHost):  # type: ignore[no-untyped-def]  # noqa: F811
    settings = replace(two_vm_settings(secured.url(access.PVE_EXECUTOR), sshd_server),
                       two_person=frozenset({Verb.CYCLE}))
    async with executor(settings):
        yield two


async def test_a_grant_for_one_vm_is_refused_on_another_and_still_runs_on_its_own(secured: Secured, running):  # noqa: F811
    session_id = await bound_session(secured, "web")
    command = RunVerb(by="alice", request_id=new_id(), verb=Verb.CYCLE, session_id=session_id,
                      approval_id=new_id(), vmid=102)
    await put_grant(secured, command, approved_by="bob", requested_by="alice")
    elsewhere = again(command, vmid=103)
    async with connect(secured, access.GATEWAY) as gw:
        by_gateway = await ask(gw, subjects.VERB, elsewhere)
    async with connect(secured, access.AGENT_RUNNER) as runner:
        by_runner = await ask(runner, subjects.AGENT_VERB, elsewhere)
    before = running.calls()
    async with connect(secured, access.GATEWAY) as gw:
        own = await ask(gw, subjects.VERB, command)
        replayed = await ask(gw, subjects.VERB, command)
    assert by_gateway.rejected and "this session is about VM web, not db (103)" in by_gateway.stderr, by_gateway
    assert by_runner.rejected and by_runner.exit_code == EX_REFUSED, by_runner
    assert before == []
    assert not own.rejected and own.exit_code == 0, own
    assert [c for c in running.calls() if c.startswith(("stop", "start"))] == ["stop 102 --timeout 45", "start 102"]
    assert replayed.rejected and "already used" in replayed.stderr


async def test_an_agents_grant_resent_for_another_vm_is_not_burnt(secured: Secured, sshd_server, two: PveHost):  # noqa: F811
    session_id = await bound_session(secured, "web")
    command = RunVerb(by="agent", origin="agent", request_id=new_id(), verb=Verb.RESET, session_id=session_id,
                      approval_id=new_id(), vmid=102)
    grant = ApprovalGrant(approval_id=command.approval_id, session_id=session_id, request_id=command.request_id,
                          verb=Verb.RESET, approved_by="alice", requested_by="agent",
                          expires_at=utcnow() + timedelta(minutes=5))
    async with connect(secured, access.GATEWAY) as gw:
        await (await gw.jetstream().key_value(T.kv_bucket)).put(grant_key(command.approval_id), encode(grant))
    async with executor(two_vm_settings(secured.url(access.PVE_EXECUTOR), sshd_server)):
        async with connect(secured, access.AGENT_RUNNER) as runner:
            wrong = await ask(runner, subjects.AGENT_VERB, again(command, vmid=103))
            right = await ask(runner, subjects.AGENT_VERB, command)
    assert wrong.rejected and "not db (103)" in wrong.stderr, wrong
    assert not right.rejected and right.exit_code == 0, right
    assert [c for c in two.calls() if c.startswith("reset")] == ["reset 102"]


HOSTILE_VMIDS = ["status 102;id", "status 102 103", "status 0102", "status 1020", "status 10", "status 102\n",
                 "status 104", "status $(echo 102)", "status 10 2", "status 102\t", "status -102", "status 1e2",
                 "status ../102", "status ١٠٢"]


@pytest.mark.parametrize("request_line", HOSTILE_VMIDS, ids=repr)
def test_the_host_refuses_any_vm_id_but_a_plain_listed_one(sshd_server, two: PveHost, request_line):  # noqa: F811
    res = sshd_server.run(request_line)
    assert res.returncode == EX_REFUSED, res
    assert res.stderr.startswith(b"refused: ") and res.stdout == b""
    assert two.calls() == []
