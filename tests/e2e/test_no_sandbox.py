"""Where no sandbox can be made, the runner refuses turns and says why in
one line; the explicit opt-out lets them run, loudly."""

from __future__ import annotations

from tests.fakeapi import bash, text
from tests.sse import collect


def ended(frames) -> bool:
    return any(f.kind == "turn_end" for f in frames)


def of(frames, kind: str) -> list[dict]:
    return [f.json for f in frames if f.kind == kind]


async def turn(client, prompt: str) -> list:
    sid = (await client.post("/api/session")).json()["session_id"]
    answer = await client.post(f"/api/session/{sid}/prompt", json={"prompt": prompt})
    assert answer.status_code == 202, answer.text
    return await collect(client, f"/api/session/{sid}/stream", until=ended, timeout=60)


async def test_without_bubblewrap_every_turn_is_refused_in_one_line(stack, client, tmp_path):
    (tmp_path / "bin").mkdir()
    stack.restart_runner(PATH=str(tmp_path / "bin"))  # this machine, minus bwrap
    frames = await turn(client, "check the vm")
    [error] = of(frames, "error")
    assert error["error"].startswith("no turn runs without the agent's sandbox: bubblewrap (`bwrap`) is not installed")
    assert "\n" not in error["error"]
    assert of(frames, "turn_end")[0]["outcome"] == "error"
    assert not of(frames, "tool") and not stack.api.model_requests  # the CLI never started
    assert "no turn will run: bubblewrap" in stack.runner.log()


async def test_the_opt_out_runs_turns_unsandboxed_and_says_so(stack, client, tmp_path):
    (tmp_path / "bin").mkdir()
    stack.restart_runner(PATH=str(tmp_path / "bin"), BREAKGLASS_ALLOW_UNSANDBOXED_AGENT="1")
    stack.api.script(bash("echo out-of-the-box"), text("done"))
    frames = await turn(client, "check the vm")
    assert of(frames, "turn_end")[0]["outcome"] == "ok", of(frames, "error")
    assert "out-of-the-box" in of(frames, "tool_result")[0]["output"]
    log = stack.runner.log()
    assert "NO SANDBOX for the agent" in log and "the CLI runs WITHOUT a sandbox" in log
