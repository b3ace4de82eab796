"""The runner's end of the verb tool, over its real socket and a real NATS:
policy, approvals, what is recorded, what reaches pve-executor's queue.

pve-executor is played by tests/fake_executor.py (a double bound to its real
durable consumer); the CLI and MCP server are left out here (see
test_mcp_server.py and tests/e2e/test_agent_verbs.py for them).
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from nats.js.api import ConsumerConfig

from agent_runner.bootstrap import listener, on_approval
from agent_runner.settings import APPROVE_MUTATING, AUTONOMOUS
from agent_runner.turns import ActiveTurn, Recorder
from agent_runner.verb_tool import VerbTool
from agent_runner.verb_wire import VerbAnswered, decode_answered
from events import subjects
from events.codec import decode, encode
from events.commands import AnswerApproval, ApprovalReply, StartTurn
from eventbus.log import EventLog
from events.verbs import Verb
from tests.fake_executor import fake_executor, queued_verbs


@pytest.fixture
def command() -> StartTurn:
    return StartTurn(
        by="alice", session_id=str(uuid.uuid4()), turn_id=str(uuid.uuid4()), prompt="fix it", model="sonnet",
    )


@pytest.fixture
def short_root(command) -> Path:
    # A workspace root short enough for a Unix socket name in it.
    root = Path("/tmp") / f"bg-{command.turn_id[:8]}"
    root.mkdir(mode=0o700)
    yield root
    for p in root.iterdir():
        p.unlink()
    root.rmdir()


@pytest.fixture
async def events(js, topology) -> EventLog:
    return EventLog(js, topology)


def make_tool(command, root, nc, events, **kw: Any) -> VerbTool:
    return VerbTool(command=command, root=root, records=Recorder(events, nc, command), nc=nc, events=events, **kw)


async def ask(tool: VerbTool, line: bytes) -> VerbAnswered | None:
    reader, writer = await asyncio.open_unix_connection(str(tool.socket_path))
    writer.write(line)
    await writer.drain()
    answer = await asyncio.wait_for(reader.readline(), 30)
    writer.close()
    return decode_answered(answer) if answer else None


async def session_events(events: EventLog, session_id: str) -> list[dict[str, Any]]:
    return [json.loads(r.data) for r in await events.read(session_id)]


async def audit_events(js, topology) -> list[dict[str, Any]]:
    filters = subjects.audit_filters("verb")
    sub = await js.subscribe(filters[0], stream=topology.events_stream, ordered_consumer=True,
                             config=ConsumerConfig(filter_subjects=list(filters)))
    out = []
    try:
        while True:
            out.append(json.loads((await sub.next_msg(timeout=0.5)).data))
    except Exception:
        pass
    await sub.unsubscribe()
    return out


async def wait_for_kind(events: EventLog, session_id: str, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    async def poll() -> dict[str, Any]:
        while True:
            for event in await session_events(events, session_id):
                if event["kind"] == kind:
                    return event
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), timeout)


async def test_autonomous_runs_a_mutating_verb_as_the_agent(nats_url, nc, js, topology, events, command, short_root):
    tool = make_tool(command, short_root, nc, events, policy=AUTONOMOUS)
    await tool.start()
    try:
        async with fake_executor(nats_url) as executor:
            answer = await ask(tool, b'{"verb":"reset"}\n')
    finally:
        await tool.close()
    assert answer is not None and not answer.is_error and answer.exit_code == 0
    assert answer.summary == "verb reset: exit 0" and "fake executor" in answer.stdout
    [run] = executor.commands
    assert (run.verb, run.by, run.origin, run.session_id) == (Verb.RESET, "agent", "agent", command.session_id)
    recorded = await session_events(events, command.session_id)
    assert [(e["kind"], e["phase"], e["by"]) for e in recorded] == [("verb", "requested", "agent")]
    assert recorded[0]["request_id"] == run.request_id and recorded[0]["turn_id"] == command.turn_id
    assert [e["request_id"] for e in await audit_events(js, topology)] == [run.request_id]


async def test_a_two_person_verb_waits_for_an_operator_even_when_autonomous(
        nats_url, nc, events, command, short_root):
    tool = make_tool(command, short_root, nc, events, policy=AUTONOMOUS, two_person=frozenset({Verb.CYCLE}))
    await tool.start()
    try:
        async with fake_executor(nats_url) as executor:
            reset = await ask(tool, b'{"verb":"reset"}\n')  # not on the list: autonomous as before
            asking = asyncio.create_task(ask(tool, b'{"verb":"cycle"}\n'))
            approval = await wait_for_kind(events, command.session_id, "approval")
            await asyncio.sleep(0.2)
            assert [c.verb for c in executor.commands] == [Verb.RESET] and not asking.done()
            assert tool.answer(approval["approval_id"], True, "alice") is True
            answer = await asking
    finally:
        await tool.close()
    assert reset is not None and reset.exit_code == 0
    assert answer is not None and answer.exit_code == 0 and "approved by alice" in answer.summary
    assert [c.verb for c in executor.commands] == [Verb.RESET, Verb.CYCLE]


async def test_a_read_only_verb_needs_no_approval(nats_url, nc, events, command, short_root):
    tool = make_tool(command, short_root, nc, events, policy=APPROVE_MUTATING)
    await tool.start()
    try:
        async with fake_executor(nats_url) as executor:
            for verb in ("status", "forensics"):
                answer = await ask(tool, json.dumps({"verb": verb}).encode() + b"\n")
                assert answer is not None and answer.exit_code == 0 and not answer.denied
    finally:
        await tool.close()
    assert [c.verb.value for c in executor.commands] == ["status", "forensics"]
    assert "approval" not in [e["kind"] for e in await session_events(events, command.session_id)]


async def test_an_approved_mutating_verb_runs_and_records_who_approved(nats_url, nc, events, command, short_root):
    tool = make_tool(command, short_root, nc, events, policy=APPROVE_MUTATING)
    await tool.start()
    try:
        async with fake_executor(nats_url) as executor:
            asking = asyncio.create_task(ask(tool, b'{"verb":"cycle"}\n'))
            approval = await wait_for_kind(events, command.session_id, "approval")
            await asyncio.sleep(0.2)
            assert executor.commands == [] and not asking.done()  # held until the operator answers
            assert approval["verb"] == "cycle" and approval["reason"] == "the agent asks to cycle the VM"
            assert approval["by"] == "agent"
            assert tool.answer(approval["approval_id"], True, "alice") is True
            answer = await asking
            assert tool.answer(approval["approval_id"], False, "bob") is False  # answered already
    finally:
        await tool.close()
    assert answer is not None and answer.exit_code == 0 and "approved by alice" in answer.summary
    [run] = executor.commands
    assert run.verb is Verb.CYCLE and run.by == "agent" and run.origin == "agent"
    assert approval["request_id"] == run.request_id  # links the approval to the verb events it gates
    verbs = [(e["phase"], e["by"]) for e in await session_events(events, command.session_id) if e["kind"] == "verb"]
    # the operator's decision is the gateway's to record (events.authorship; tests/gateway/test_approvals.py)
    assert verbs == [("requested", "agent")]


async def test_a_denied_verb_never_reaches_the_executor(nats_url, nc, events, command, short_root):
    tool = make_tool(command, short_root, nc, events, policy=APPROVE_MUTATING)
    await tool.start()
    try:
        asking = asyncio.create_task(ask(tool, b'{"verb":"stop"}\n'))
        approval = await wait_for_kind(events, command.session_id, "approval")
        assert tool.answer(str(uuid.uuid4()), True, "alice") is False  # not that one
        assert tool.answer(approval["approval_id"], False, "bob") is True
        answer = await asking
    finally:
        await tool.close()
    assert answer is not None and answer.denied and answer.is_error
    assert answer.summary == "verb stop: denied by bob; it did not run"
    assert await queued_verbs(nats_url) == 0
    verbs = [(e["phase"], e["by"]) for e in await session_events(events, command.session_id) if e["kind"] == "verb"]
    assert verbs == [("requested", "agent")]  # the gateway records the operator's denial


async def test_no_answer_in_time_is_a_denial(nats_url, nc, events, command, short_root):
    tool = make_tool(command, short_root, nc, events, policy=APPROVE_MUTATING, approval_timeout_seconds=1.0)
    await tool.start()
    try:
        answer = await ask(tool, b'{"verb":"reset"}\n')
        approval = next(e for e in await session_events(events, command.session_id) if e["kind"] == "approval")
        assert tool.answer(approval["approval_id"], True, "late-alice") is False
    finally:
        await tool.close()
    assert answer is not None and answer.denied
    assert answer.summary == "verb reset: no answer within 1 s: denied; it did not run"
    assert await queued_verbs(nats_url) == 0
    assert [(e["phase"], e["by"]) for e in await session_events(events, command.session_id)
            if e["kind"] == "verb"][-1] == ("denied", "timeout")


async def test_the_turn_ending_denies_what_is_still_pending(nats_url, nc, events, command, short_root):
    tool = make_tool(command, short_root, nc, events, policy=APPROVE_MUTATING)
    await tool.start()
    asking = asyncio.create_task(ask(tool, b'{"verb":"start"}\n'))
    await wait_for_kind(events, command.session_id, "approval")
    await tool.close()
    answer = await asking
    assert answer is None or answer.denied  # the client may see the answer or just the close
    last = [e for e in await session_events(events, command.session_id) if e["kind"] == "verb"][-1]
    assert (last["phase"], last["by"]) == ("denied", "agent-runner")
    assert await queued_verbs(nats_url) == 0


@pytest.mark.parametrize("line", [
    b'{"verb":"reboot"}\n', b'{"verb":"status;reboot"}\n', b'{"verb":"STATUS"}\n', b"status\n", b"{}\n",
    b'{"verb":"status","session_id":"6cfaa6bb-d10d-4842-8572-2d78d3eeee8c"}\n', b'{"verb":"reset","by":"alice"}\n',
    b"\xff\xfe\n", b"x" * (2 * 1024 * 1024) + b"\n",
], ids=["unknown", "injection", "case", "bare", "empty", "other session", "spoofed by", "binary", "huge"])
async def test_anything_but_a_bare_verb_gets_no_answer_and_publishes_nothing(
    nats_url, nc, events, command, short_root, line,
):
    tool = make_tool(command, short_root, nc, events, policy=AUTONOMOUS)
    await tool.start()
    try:
        try:
            answer = await ask(tool, line)
        except ConnectionError:
            answer = None
        assert answer is None
    finally:
        await tool.close()
    assert await queued_verbs(nats_url) == 0
    assert await session_events(events, command.session_id) == []


async def test_the_socket_and_config_are_private_and_hold_no_bus_secret(nats_url, nc, events, command, short_root):
    tool = make_tool(command, short_root, nc, events)
    config_path = await tool.start()
    try:
        assert stat.S_IMODE(os.stat(tool.socket_path).st_mode) == 0o600
        assert stat.S_ISSOCK(os.stat(tool.socket_path).st_mode)
        assert stat.S_IMODE(os.stat(config_path).st_mode) == 0o600
        assert tool.socket_path.parent == short_root and config_path.parent == short_root
        text = config_path.read_text()
        config = json.loads(text)
        [server] = config["mcpServers"].values()
        assert server["args"] == ["-m", "agent_runner.mcp_server", str(tool.socket_path)] and server["env"] == {}
        assert nats_url not in text and "nats" not in text.lower() and "BREAKGLASS" not in text
    finally:
        await tool.close()
    assert not tool.socket_path.exists() and not config_path.exists()


async def test_a_workspace_too_deep_for_a_socket_name_uses_a_private_directory(nc, events, command, tmp_path):
    deep = tmp_path / ("d" * 80) / command.session_id
    deep.mkdir(parents=True)
    tool = make_tool(command, deep, nc, events)
    await tool.start()
    try:
        private = tool.socket_path.parent
        assert private != deep and len(os.fsencode(tool.socket_path)) <= 100
        assert stat.S_IMODE(os.stat(private).st_mode) == 0o700
        assert tool.config_path.parent == deep
    finally:
        await tool.close()
    assert not private.exists()


class _Runner:
    def __init__(self) -> None:
        self.active: dict[str, ActiveTurn] = {}


async def test_an_approval_answer_reaches_only_the_owning_turn(nc, events, command, short_root):
    runner = _Runner()
    sub = await nc.subscribe(subjects.APPROVAL_ALL,
                             cb=listener(AnswerApproval, "approval answer", partial(on_approval, runner, nc)))
    tool = make_tool(command, short_root, nc, events, policy=APPROVE_MUTATING)
    await tool.start()
    turn = ActiveTurn(command)
    turn.verbs = tool
    runner.active[command.session_id] = turn
    try:
        asking = asyncio.create_task(ask(tool, b'{"verb":"reset"}\n'))
        approval = await wait_for_kind(events, command.session_id, "approval")

        async def answer(session_id: str, approval_id: str, *, subject_session: str | None = None) -> Any:
            cmd = AnswerApproval(by="alice", session_id=session_id, approval_id=approval_id, approved=False)
            try:
                reply = await nc.request(subjects.approval(subject_session or session_id), encode(cmd), timeout=1)
            except Exception as exc:
                return type(exc).__name__
            return decode(reply.data, ApprovalReply).accepted

        other = str(uuid.uuid4())
        assert await answer(other, approval["approval_id"]) == "TimeoutError"  # no turn of that session here
        assert await answer(command.session_id, approval["approval_id"], subject_session=other) == "TimeoutError"
        assert await answer(command.session_id, str(uuid.uuid4())) is False
        assert await answer(command.session_id, approval["approval_id"]) is True
        assert (await asking).denied
        assert await answer(command.session_id, approval["approval_id"]) is False
    finally:
        await tool.close()
        await sub.unsubscribe()
    last = [e for e in await session_events(events, command.session_id) if e["kind"] == "verb"][-1]
    assert (last["phase"], last["by"]) == ("requested", "agent")  # alice's denial: the gateway records it
