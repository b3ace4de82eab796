"""Every service's log lines over a real turn and real verbs (issue #10).

The same run as the metrics test: an agent's turn that asks for a `reset`
(approved through the gateway, run by the real pve-executor over sshd) and
an operator's `status` press. Every line each service wrote must be one
JSON object; the turn's id must be in all three services' lines, the
press's request id (the gateway's `X-Request-Id`) in the gateway's and
pve-executor's; no configured secret and no prompt text may appear.
"""

from __future__ import annotations

import json

import nats

from eventbus.topology import Topology
from tests.e2e.test_agent_verbs import answer_approval, has_approval, of, pve, turn_ended
from tests.fakeapi import text
from tests.sse import collect

from .scrape import eventually
from .test_metrics import assert_no_secret

PROMPT = "the VM is wedged: reset it, codeword PELICAN-7"


def json_lines(path) -> list[dict]:  # type: ignore[no-untyped-def]
    lines = []
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = json.loads(raw)  # fails the test on any line that is not JSON
        assert isinstance(line, dict) and {"ts", "level", "service", "msg"} <= line.keys(), f"{path.name}:{n}: {raw}"
        lines.append(line)
    return lines


async def test_one_turn_is_traceable_through_every_services_json_logs(stack, client, observed, nats_url):
    stack.api.script(pve("reset"), text("Reset done."))
    sid = (await client.post("/api/session")).json()["session_id"]
    prompted = await client.post(f"/api/session/{sid}/prompt", json={"prompt": PROMPT})
    assert prompted.status_code == 202, prompted.text
    prompt_request = prompted.headers["X-Request-Id"]
    frames = await collect(client, f"/api/session/{sid}/stream", until=has_approval, timeout=60)
    approval = of(frames, "approval")[0]
    assert await answer_approval(client, sid, approval["approval_id"], True) == {"accepted": True}
    frames = await collect(client, f"/api/session/{sid}/stream", until=turn_ended, timeout=60)
    turn_id = of(frames, "turn_end")[0]["turn_id"]
    await assert_events_name_their_request(nats_url, frames, prompt_request, turn_id)
    pressed = await client.post("/api/pve/status")
    assert pressed.status_code == 200, pressed.text
    request_id = pressed.headers["X-Request-Id"]
    # The last lines are written after the answers: wait for the executor's
    # line about the press and the runner's about the turn's end.
    await eventually(observed.executor, lambda s: s.value("breakglass_verbs_total", verb="status", outcome="ok") >= 1)

    def logged() -> dict[str, list[dict]]:
        services = {"gateway": stack.gateway, "agent-runner": stack.runner, "pve-executor": stack.extras[0]}
        return {name: json_lines(service.log_path) for name, service in services.items()}

    logs = logged()
    for name, lines in logs.items():
        assert {line["service"] for line in lines} == {name}
        assert any(line.get("turn_id") == turn_id for line in lines), f"turn {turn_id} not in {name}'s log"
    runner_lines = [line for line in logs["agent-runner"] if line.get("turn_id") == turn_id]
    assert {line.get("session_id") for line in runner_lines} == {sid}
    assert any(line["msg"].startswith("turn ended: ok") for line in runner_lines)
    executor_turn = [line for line in logs["pve-executor"] if line.get("turn_id") == turn_id]
    assert {line.get("verb") for line in executor_turn} == {"reset"} and {line.get("by") for line in executor_turn} == {"agent"}
    for name in ("gateway", "pve-executor"):
        pressed_lines = [line for line in logs[name] if line.get("request_id") == request_id]
        assert pressed_lines and {line.get("verb") for line in pressed_lines} == {"status"}, name

    for lines in logs.values():
        for line in lines:
            raw = json.dumps(line)
            assert "PELICAN-7" not in raw, "prompt text in a log line"
            assert_no_secret(raw, observed.secrets)


async def assert_events_name_their_request(nats_url: str, frames, request_id: str, turn_id: str) -> None:  # type: ignore[no-untyped-def]
    """The stored events of the turn carry the prompt's request id and the
    turn id as NATS headers: the runner wrote them under the ids the
    gateway's command brought (eventbus.trace)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        stored = [await js.get_msg(Topology().events_stream, int(f.id)) for f in frames if f.id]
    finally:
        await nc.close()
    kinds = {json.loads(m.data)["kind"]: m for m in stored}
    assert {"user", "session", "result", "turn_end"} <= kinds.keys()
    for msg in stored:
        assert (msg.headers or {}).get("Breakglass-Turn-Id") == turn_id, msg.headers
    for kind in ("user", "session", "result", "turn_end"):  # the verb's events carry the verb's own request id
        assert kinds[kind].headers["Breakglass-Request-Id"] == request_id, kind
