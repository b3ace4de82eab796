"""The two-person rule where the key is (issue 19): pve-executor, holding
BREAKGLASS_TWO_PERSON_VERBS too, runs such a verb only against a grant (KV,
gateway-only) whose approver is an operator other than who asked. Against
the real permission matrix, a real pve-executor and a real sshd in front of
the shipped forced command over a fake `qm`, as an attacker holding one
service's credential would try it:

- the operator's own press, published without a grant (a gateway that
  skipped the rule), or with a grant the presser gave themselves: refused;
- the agent's verb under the autonomous policy, with no grant, or with a
  grant naming the agent as approver: refused;
- agent-runner cannot write a grant, a decision, a passkey, a step-up
  challenge or an observer link (KV writes denied);
- a grant by a second operator runs the verb once.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import nats
import pytest

from eventbus import access
from events import subjects
from events.codec import encode
from events.commands import ApprovalGrant, RunVerb
from eventbus.topology import Topology, decision_key, grant_key, observer_key, passkey_key, stepup_key
from events.types import new_id, utcnow
from events.verbs import AUTONOMOUS, Verb

from tests.pve_executor.rig import executor, settings_for
from tests.security.nats_rig import Secured, secured  # noqa: F401 - fixture
from tests.security.test_verb_authority import ask, connect

T = Topology()
HEX = "ab" * 32


@pytest.fixture
async def running(secured: Secured, sshd_server, pve):  # type: ignore[no-untyped-def]  # noqa: F811
    settings = settings_for(secured.url(access.PVE_EXECUTOR), sshd_server, two_person=frozenset({Verb.CYCLE}),
                            verb_policy=AUTONOMOUS)
    async with executor(settings):
        yield pve


async def put_grant(s: Secured, command: RunVerb, approved_by: str, requested_by: str | None) -> None:
    assert command.approval_id and command.session_id
    grant = ApprovalGrant(approval_id=command.approval_id, session_id=command.session_id,
                          request_id=command.request_id, verb=command.verb, approved_by=approved_by,
                          requested_by=requested_by, expires_at=utcnow() + timedelta(minutes=5))
    async with connect(s, access.GATEWAY) as gw:
        await (await gw.jetstream().key_value(T.kv_bucket)).put(grant_key(command.approval_id), encode(grant))


def press(by: str = "alice", approval: str | None = None, verb: Verb = Verb.CYCLE) -> RunVerb:
    return RunVerb(by=by, request_id=new_id(), verb=verb, session_id=new_id(), approval_id=approval)


async def test_an_operator_press_without_a_second_operator_is_refused(secured: Secured, running) -> None:  # noqa: F811
    async with connect(secured, access.GATEWAY) as gw:
        bare = await ask(gw, subjects.VERB, press())
        own = press(approval=new_id())
        await put_grant(secured, own, approved_by="alice", requested_by="alice")
        self_approved = await ask(gw, subjects.VERB, own)
        swapped = press(approval=new_id())  # a grant for bob's press, replayed as alice's
        await put_grant(secured, swapped, approved_by="carol", requested_by="bob")
        foreign = await ask(gw, subjects.VERB, swapped)
        status = await ask(gw, subjects.VERB, press(verb=Verb.STATUS))  # not on the list: runs as before
    assert bare.rejected and "needs a second operator's approval (two-person rule)" in bare.stderr, bare
    assert self_approved.rejected and "given by 'alice' for a request by 'alice'" in self_approved.stderr
    assert foreign.rejected and "two-person rule" in foreign.stderr, foreign
    assert not status.rejected and status.exit_code == 0
    assert [c for c in running.calls() if not c.startswith("status")] == []


async def test_the_agent_never_counts_as_an_approver(secured: Secured, running) -> None:  # noqa: F811
    async with connect(secured, access.AGENT_RUNNER) as nc:
        bare = await ask(nc, subjects.AGENT_VERB, press(by="agent"))  # autonomous policy, still refused
        forged = press(by="agent", approval=new_id())
        await put_grant(secured, forged, approved_by="agent", requested_by="agent")
        by_agent = await ask(nc, subjects.AGENT_VERB, forged)
    assert bare.rejected and "two-person rule" in bare.stderr, bare
    assert by_agent.rejected and "given by 'agent'" in by_agent.stderr, by_agent
    assert running.calls() == []


@pytest.mark.parametrize("key", [grant_key(new_id()), decision_key(new_id()), passkey_key(HEX), stepup_key(HEX),
                                 observer_key(HEX)])
async def test_the_runner_cannot_write_what_the_gateway_decides(secured: Secured, key: str) -> None:  # noqa: F811
    async with connect(secured, access.AGENT_RUNNER) as nc:
        kv = await nc.jetstream(timeout=0.5).key_value(T.kv_bucket)
        with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):
            await kv.put(key, b"{}")
    async with connect(secured, access.PVE_EXECUTOR) as nc:
        kv = await nc.jetstream(timeout=0.5).key_value(T.kv_bucket)
        with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):
            await kv.put(key, b"{}")


async def test_a_second_operators_grant_runs_the_press_once(secured: Secured, running) -> None:  # noqa: F811
    command = press(approval=new_id())
    await put_grant(secured, command, approved_by="bob", requested_by="alice")
    async with connect(secured, access.GATEWAY) as gw:
        first = await ask(gw, subjects.VERB, command)
        assert not first.rejected and first.exit_code == 0, first
        ran = running.calls()
        assert any(c.startswith("stop") for c in ran) and any(c.startswith("start") for c in ran), ran
        replayed = await ask(gw, subjects.VERB, command)
    assert replayed.rejected and "already used" in replayed.stderr
    assert running.calls() == ran
