"""The agent's narrow path to power verbs, end to end: the REAL Claude CLI
calls `mcp__breakglass__pve` (scripted by the fake Messages API), the
runner's MCP server and socket apply the policy, approvals go through the
gateway's route, and the command reaches pve-executor's queue.

pve-executor itself is not in this stack: tests/fake_executor.py plays it
(a test double bound to its real durable consumer, answering on the verb's
reply subject). The executor's own behaviour is tested with the executor.
"""

from __future__ import annotations

import json
import os
import socket
import stat

from tests.fake_executor import fake_executor, queued_verbs
from tests.fakeapi import text, tool_use
from tests.sse import collect

TOOL = "mcp__breakglass__pve"


def pve(verb: str):
    return tool_use(TOOL, {"verb": verb})


def turn_ended(frames) -> bool:
    return any(f.kind == "turn_end" for f in frames)


def has_approval(frames) -> bool:
    return any(f.kind == "approval" for f in frames)


def of(frames, kind: str) -> list[dict]:
    return [f.json for f in frames if f.kind == kind]


def verb_phases(frames) -> list[tuple[str, str, str]]:
    return [(e["verb"], e["phase"], e["by"]) for e in of(frames, "verb")]


def tool_result_sent_to_model(api) -> tuple[str, bool]:
    """What the model was told about the pve call (the request after it)."""
    for request in api.model_requests:
        for block in request.tool_results:
            content = block["content"]
            texts = [content] if isinstance(content, str) else [b.get("text", "") for b in content]
            return "\n".join(texts), bool(block.get("is_error"))
    raise AssertionError("no tool_result reached the model")


async def start(client, prompt: str) -> str:
    sid = (await client.post("/api/session")).json()["session_id"]
    answer = await client.post(f"/api/session/{sid}/prompt", json={"prompt": prompt})
    assert answer.status_code == 202, answer.text
    return sid


async def answer_approval(client, sid: str, approval_id: str, approve: bool) -> dict:
    answer = await client.post(f"/api/session/{sid}/approval/{approval_id}", json={"approve": approve})
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_autonomous_the_agents_verb_reaches_the_executor_and_the_result_the_model(stack, client, nats_url):
    stack.restart_runner(BREAKGLASS_VERB_POLICY="autonomous")
    stack.api.script(pve("reset"), text("Reset done."))
    async with fake_executor(nats_url) as executor:
        sid = await start(client, "the VM is wedged, reset it")
        frames = await collect(client, f"/api/session/{sid}/stream", until=turn_ended, timeout=60)
    [run] = executor.commands
    assert (run.verb.value, run.by, run.origin, run.session_id) == ("reset", "agent", "agent", sid)
    assert not has_approval(frames)
    assert verb_phases(frames) == [("reset", "requested", "agent")]
    assert of(frames, "verb")[0]["request_id"] == run.request_id
    tool = of(frames, "tool")[0]
    assert tool["name"] == TOOL and tool["input"] == {"verb": "reset"}
    result = of(frames, "tool_result")[0]
    assert result["tool_use_id"] == tool["tool_use_id"] and "verb reset: exit 0" in result["output"]
    told, is_error = tool_result_sent_to_model(stack.api)
    assert "verb reset: exit 0" in told and "fake executor" in told and not is_error
    assert of(frames, "turn_end")[0]["outcome"] == "ok"


async def test_approve_mutating_a_read_only_verb_runs_without_approval(stack, client, nats_url):
    stack.api.script(pve("status"), text("It runs."))
    async with fake_executor(nats_url) as executor:
        sid = await start(client, "is it up?")
        frames = await collect(client, f"/api/session/{sid}/stream", until=turn_ended, timeout=60)
    assert [c.verb.value for c in executor.commands] == ["status"]
    assert not has_approval(frames)
    assert verb_phases(frames) == [("status", "requested", "agent")]
    assert "verb status: exit 0" in tool_result_sent_to_model(stack.api)[0]


async def test_approve_mutating_a_reset_waits_for_the_operator_then_runs(stack, client, nats_url):
    stack.api.script(pve("reset"), text("Reset after approval."))
    async with fake_executor(nats_url) as executor:
        sid = await start(client, "reset it")
        frames = await collect(client, f"/api/session/{sid}/stream", until=has_approval, timeout=60)
        approval = of(frames, "approval")[0]
        assert approval["verb"] == "reset" and approval["by"] == "agent" and "reset" in approval["reason"]
        assert executor.commands == []

        # While it waits: the CLI's MCP config names only the socket, never the bus.
        workspace = stack.runner_env["BREAKGLASS_DATA_DIR"] + f"/sessions/{sid}"
        [config_name] = [n for n in os.listdir(workspace) if n.startswith("mcp-") and n.endswith(".json")]
        config_text = open(os.path.join(workspace, config_name)).read()
        assert nats_url not in config_text and "nats" not in config_text.lower()
        assert "BREAKGLASS" not in config_text and "token" not in config_text.lower()
        [server] = json.loads(config_text)["mcpServers"].values()
        socket_path = server["args"][-1]
        assert server["args"][:2] == ["-m", "agent_runner.mcp_server"] and server["env"] == {}
        assert stat.S_ISSOCK(os.stat(socket_path).st_mode) and stat.S_IMODE(os.stat(socket_path).st_mode) == 0o600

        assert await answer_approval(client, sid, approval["approval_id"], True) == {"accepted": True}
        frames = await collect(client, f"/api/session/{sid}/stream", until=turn_ended, timeout=60)
        assert await answer_approval(client, sid, approval["approval_id"], True) == {"accepted": False, "decided_by": "operator"}
    [run] = executor.commands
    assert (run.verb.value, run.by, run.origin, run.session_id) == ("reset", "agent", "agent", sid)
    assert verb_phases(frames) == [("reset", "requested", "agent"), ("reset", "approved", "operator")]
    assert {e["request_id"] for e in of(frames, "verb")} == {approval["request_id"]} == {run.request_id}
    told, is_error = tool_result_sent_to_model(stack.api)
    assert "verb reset: exit 0" in told and "approved by operator" in told and not is_error
    # The socket lives as long as the CLI that was told about it: gone with a
    # per-turn CLI; a warm CLI's refuses everything between turns.
    if os.path.exists(socket_path):
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(socket_path)
            conn.sendall(b'{"verb": "status"}\n')
            between = json.loads(conn.makefile().readline())
        assert between["rejected"] and "no turn is running" in between["summary"], between
        assert len(executor.commands) == 1


async def test_approve_mutating_a_denied_reset_is_never_published(stack, client, nats_url):
    stack.api.script(pve("reset"), text("Understood, not resetting."))
    sid = await start(client, "reset it")
    frames = await collect(client, f"/api/session/{sid}/stream", until=has_approval, timeout=60)
    approval = of(frames, "approval")[0]
    assert await answer_approval(client, sid, approval["approval_id"], False) == {"accepted": True}
    frames = await collect(client, f"/api/session/{sid}/stream", until=turn_ended, timeout=60)
    assert await queued_verbs(nats_url) == 0
    assert verb_phases(frames) == [("reset", "requested", "agent"), ("reset", "denied", "operator")]
    told, is_error = tool_result_sent_to_model(stack.api)
    assert "denied by operator" in told and "did not run" in told and is_error
    assert of(frames, "turn_end")[0]["outcome"] == "ok"


async def test_approve_mutating_no_answer_in_time_is_denied(stack, client, nats_url):
    stack.restart_runner(BREAKGLASS_APPROVAL_TIMEOUT_SECONDS="1")
    stack.api.script(pve("cycle"), text("Nobody answered."))
    sid = await start(client, "cycle it")
    frames = await collect(client, f"/api/session/{sid}/stream", until=turn_ended, timeout=60)
    approval = of(frames, "approval")[0]
    assert verb_phases(frames) == [("cycle", "requested", "agent"), ("cycle", "denied", "timeout")]
    assert await queued_verbs(nats_url) == 0
    told, is_error = tool_result_sent_to_model(stack.api)
    assert "no answer within 1 s: denied" in told and is_error
    assert await answer_approval(client, sid, approval["approval_id"], True) == {"accepted": False, "decided_by": "timeout"}


async def test_stop_while_an_approval_waits_denies_it_and_ends_the_turn(stack, client, nats_url):
    stack.api.script(pve("stop"), text("unused"))
    sid = await start(client, "stop it")
    frames = await collect(client, f"/api/session/{sid}/stream", until=has_approval, timeout=60)
    approval = of(frames, "approval")[0]
    assert (await client.post(f"/api/session/{sid}/cancel")).json() == {"cancelled": True}
    frames = await collect(client, f"/api/session/{sid}/stream", until=turn_ended, timeout=60)
    assert [f.kind for f in frames if f.kind in ("cancelled", "turn_end")] == ["cancelled", "turn_end"]
    assert verb_phases(frames)[-1] == ("stop", "denied", "agent-runner")
    assert await queued_verbs(nats_url) == 0
    assert await answer_approval(client, sid, approval["approval_id"], True) == {"accepted": False, "decided_by": "agent-runner"}
