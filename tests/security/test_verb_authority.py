"""Authority comes from the transport, not the payload (issue 14, part 3).

With agent-runner's NATS credential (readable wherever the agent runs, so
assume the agent has it) a thief can publish any RunVerb body it likes.
Against the real permission matrix, a real pve-executor and a real sshd in
front of the shipped forced command over a fake `qm`:

- an agent verb that claims `by: operator` is still the agent's, and its
  mutating verb needs the operator's grant: refused, recorded, not run;
- the operator's subject refuses the runner's publish outright;
- a grant the runner makes up (KV write denied, or a grant id that does
  not exist, or one for another request) is refused;
- a real grant runs exactly one verb: the same command replayed is refused.

Every refusal is answered on the reply subject and recorded as a rejected
`done` on the audit subject with the reason; `qm` sees nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import nats
import pytest

from eventbus import access
from events import subjects
from events.codec import decode, encode
from events.commands import ApprovalGrant, RunVerb, SessionRecord, VerbResult
from events.kinds import VerbPhase
from eventbus.topology import Topology, grant_key, session_key
from events.types import new_id, utcnow
from events.verbs import Verb

from tests.pve_executor.rig import audit_of, executor, settings_for
from tests.security.nats_rig import Secured, secured  # noqa: F401 - fixture

T = Topology()


@contextlib.asynccontextmanager
async def connect(s: Secured, role: str) -> AsyncIterator[nats.NATS]:
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    nc = await nats.connect(s.url(role), inbox_prefix=access.inbox_prefix(role), error_cb=on_error,
                            allow_reconnect=False)
    try:
        yield nc
    finally:
        await nc.close()


async def ask(nc: nats.NATS, subject: str, command: RunVerb, *, msg_id: str | None = None) -> VerbResult:
    """Publish like agent-runner does and wait for pve-executor's answer."""
    reply = await nc.subscribe(subjects.verb_reply(command.request_id), max_msgs=1)
    await nc.jetstream().publish(subject, encode(command), headers={"Nats-Msg-Id": msg_id or new_id()})
    return decode((await reply.next_msg(timeout=30)).data, VerbResult)


async def refused_and_recorded(s: Secured, command: RunVerb, result: VerbResult, why: str) -> None:
    assert result.rejected and result.exit_code == 64, result
    assert why in result.stderr, result.stderr
    async with connect(s, access.READER) as nc:
        done = [e for e in await audit_of(nc.jetstream(), command.request_id) if e.phase is VerbPhase.DONE]
    assert len(done) == 1 and done[0].rejected and why in (done[0].stderr or "")
    assert done[0].by == "agent"  # whatever the body claimed


@pytest.fixture
async def running(secured: Secured, sshd_server, pve):  # type: ignore[no-untyped-def]  # noqa: F811
    async with executor(settings_for(secured.url(access.PVE_EXECUTOR), sshd_server)):
        yield pve


async def test_an_agent_verb_claiming_to_be_the_operator_needs_an_approval(secured: Secured, running) -> None:  # noqa: F811
    session = new_id()
    forged = RunVerb(by="operator", origin="operator", request_id=new_id(), verb=Verb.CYCLE, session_id=session)
    async with connect(secured, access.AGENT_RUNNER) as nc:
        result = await ask(nc, subjects.AGENT_VERB, forged)
    await refused_and_recorded(secured, forged, result, "needs the operator's approval")
    assert running.calls() == []


async def test_the_runner_cannot_publish_an_operator_verb(secured: Secured, running) -> None:  # noqa: F811
    command = RunVerb(by="operator", request_id=new_id(), verb=Verb.STOP)
    async with connect(secured, access.AGENT_RUNNER) as nc:
        with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):
            await nc.jetstream(timeout=0.5).publish(subjects.VERB, encode(command))
    async with connect(secured, access.ADMIN) as nc:
        assert (await nc.jetstream().stream_info(T.commands_stream)).state.messages == 0
    await asyncio.sleep(0.5)
    assert running.calls() == []


def approved(
    verb: Verb, approved_by: str, expires_in: timedelta = timedelta(minutes=5),
) -> tuple[RunVerb, ApprovalGrant]:
    """An agent's verb carrying an approval, and the grant the gateway
    would mint for it; the session and approval ids are fresh."""
    session, approval = new_id(), new_id()
    command = RunVerb(by="agent", origin="agent", request_id=new_id(), verb=verb, session_id=session,
                      approval_id=approval)
    return command, ApprovalGrant(approval_id=approval, session_id=session, request_id=command.request_id,
                                  verb=verb, approved_by=approved_by, expires_at=utcnow() + expires_in)


async def test_a_forged_approval_is_refused(secured: Secured, running) -> None:  # noqa: F811
    command, grant = approved(Verb.RESET, "operator")
    approval = grant.approval_id
    async with connect(secured, access.AGENT_RUNNER) as nc:
        kv = await nc.jetstream(timeout=0.5).key_value(T.kv_bucket)
        with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):
            await kv.put(grant_key(approval), encode(grant))  # only the gateway may mint one
        result = await ask(nc, subjects.AGENT_VERB, command)
    await refused_and_recorded(secured, command, result, f"no operator approval {approval} exists")
    assert running.calls() == []


async def test_a_grant_runs_one_verb_once_and_only_its_own(secured: Secured, running) -> None:  # noqa: F811
    stop, grant = approved(Verb.STOP, "alice")
    session, approval = grant.session_id, grant.approval_id
    async with connect(secured, access.GATEWAY) as gw:  # the session, and the operator's Approve
        kv = await gw.jetstream().key_value(T.kv_bucket)
        await kv.put(session_key(session), encode(SessionRecord(session_id=session, created_by="alice",
                                                                created_at=utcnow())))
        await kv.put(grant_key(approval), encode(grant))
    async with connect(secured, access.AGENT_RUNNER) as nc:
        # another verb, or another request, under the same grant
        other_verb = RunVerb(by="agent", origin="agent", request_id=stop.request_id, verb=Verb.CYCLE,
                             session_id=session, approval_id=approval)
        result = await ask(nc, subjects.AGENT_VERB, other_verb)
        assert result.rejected and "was given for `stop`" in result.stderr, result
        assert running.calls() == []
        first = await ask(nc, subjects.AGENT_VERB, stop)
        assert not first.rejected and first.exit_code == 0, first
        ran = running.calls()
        assert any(call.startswith("stop") for call in ran), ran
        replayed = await ask(nc, subjects.AGENT_VERB, stop)  # the same body, a new message id
    assert replayed.rejected and "already used" in replayed.stderr, replayed
    assert running.calls() == ran  # nothing more reached the host


async def test_an_expired_grant_is_refused(secured: Secured, running) -> None:  # noqa: F811
    command, grant = approved(Verb.STOP, "alice", expires_in=-timedelta(seconds=1))
    approval = grant.approval_id
    async with connect(secured, access.GATEWAY) as gw:
        await (await gw.jetstream().key_value(T.kv_bucket)).put(grant_key(approval), encode(grant))
    async with connect(secured, access.AGENT_RUNNER) as nc:
        result = await ask(nc, subjects.AGENT_VERB, command)
    await refused_and_recorded(secured, command, result, "expired")
    assert running.calls() == []
