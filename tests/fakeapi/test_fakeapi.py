"""The fake Anthropic Messages API, checked by itself and against the REAL Claude Code CLI.

The CLI tests run tools/claude-cli/node_modules/.bin/claude (installed by
scripts/test-deps.sh) offline against FakeAnthropic, as root-safe print-mode
turns: `--tools Bash,Read,Grep,Glob --allowedTools Bash Read Grep Glob`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.fakeapi import (
    FakeAnthropic,
    bash,
    echo_tool_results,
    error,
    hang,
    message,
    stream_error,
    text,
    text_block,
    thinking_block,
    tool_use,
    tool_use_block,
)
from tests.fakeapi.cli import NPM_CLI, PINNED_VERSION, claude_argv, claude_env, require_claude, run_claude

# ---------------------------------------------------------------- helpers


def sse_events(body: str) -> list[tuple[str, dict]]:
    out = []
    for frame in body.split("\n\n"):
        if not frame.strip():
            continue
        fields = dict(line.split(": ", 1) for line in frame.splitlines())
        out.append((fields["event"], json.loads(fields["data"])))
    return out


def post(client: httpx.Client, api: FakeAnthropic, stream: bool = True, **body) -> httpx.Response:
    messages = [{"role": "user", "content": "hi"}]
    payload = {"model": "claude-x", "max_tokens": 100, "stream": stream, "messages": messages}
    payload.update(body)
    return client.post(f"{api.url}/v1/messages?beta=true", json=payload)


@pytest.fixture
def api():
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture(scope="module")
def claude() -> Path:
    return require_claude()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


# ---------------------------------------------------------------- the fake by itself


def test_streamed_text_is_standard_messages_sse(api):
    api.script(text("one two three", delay=0.01))
    with httpx.Client() as c:
        r = post(c, api)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    names = [e for e, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert {"content_block_start", "content_block_delta", "content_block_stop"} <= set(names)
    assert all(e == d["type"] for e, d in events)
    deltas = [d["delta"]["text"] for e, d in events if e == "content_block_delta"]
    assert len(deltas) > 1 and "".join(deltas) == "one two three"
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert events[0][1]["message"]["model"] == "claude-x"
    assert api.requests[0].query == {"beta": "true"} and api.requests[0].stream


def test_streamed_tool_use_arrives_as_input_json_deltas(api):
    api.script(tool_use("mcp__breakglass__pve", {"verb": "status", "vmid": 101}, preamble="Checking."))
    with httpx.Client() as c:
        events = sse_events(post(c, api).text)
    starts = [d["content_block"] for e, d in events if e == "content_block_start"]
    assert [b["type"] for b in starts] == ["text", "tool_use"]
    assert starts[1]["name"] == "mcp__breakglass__pve" and starts[1]["id"].startswith("toolu_")
    partial = "".join(d["delta"]["partial_json"] for e, d in events if e == "content_block_delta" and d["index"] == 1)
    assert json.loads(partial) == {"verb": "status", "vmid": 101}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_non_streaming_request_gets_a_whole_message(api):
    api.script(message(thinking_block("hmm"), text_block("answer"), tool_use_block("Read", {"file_path": "/x"})))
    with httpx.Client() as c:
        r = post(c, api, stream=False)
    body = r.json()
    assert r.status_code == 200 and body["type"] == "message" and body["role"] == "assistant"
    assert [b["type"] for b in body["content"]] == ["thinking", "text", "tool_use"]
    assert body["content"][1]["text"] == "answer" and body["content"][2]["input"] == {"file_path": "/x"}
    assert body["stop_reason"] == "tool_use" and body["usage"]["output_tokens"] > 0


@pytest.mark.parametrize(
    ("status", "etype"), [(500, "api_error"), (401, "authentication_error"), (529, "overloaded_error")]
)
def test_http_errors_carry_anthropic_error_json(api, status, etype):
    api.script(error(status))
    with httpx.Client() as c:
        r = post(c, api)
    assert r.status_code == status
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == etype and r.json()["error"]["message"]


def test_script_is_consumed_in_order_then_default_and_callables_see_the_request(api):
    api.default = lambda req: text(f"default saw {len(req.messages)} message(s)")
    api.script(text("first"), lambda req: text("echo: " + req.messages[-1]["content"]))
    with httpx.Client() as c:
        got = [post(c, api, stream=False, messages=[{"role": "user", "content": f"m{i}"}]).json() for i in range(3)]
    assert [g["content"][0]["text"] for g in got] == ["first", "echo: m1", "default saw 1 message(s)"]
    assert api.pending == 0 and len(api.model_requests) == 3
    assert [r.json["messages"][0]["content"] for r in api.model_requests] == ["m0", "m1", "m2"]


def test_a_broken_scripted_callable_answers_500_and_is_reported(api):
    api.script(lambda req: 1 / 0)
    with httpx.Client() as c:
        assert post(c, api).status_code == 500
    assert api.errors and "ZeroDivisionError" in api.errors[0]


def test_other_routes_answer_harmlessly(api):
    with httpx.Client() as c:
        assert c.head(f"{api.url}/api/hello").status_code == 200
        count = c.post(f"{api.url}/v1/messages/count_tokens?beta=true", json={"messages": []})
        assert count.status_code == 200 and count.json()["input_tokens"] >= 1
        assert c.get(f"{api.url}/something/else").status_code == 200
    assert [(r.method, r.path) for r in api.unknown] == [("GET", "/something/else")]
    assert api.model_requests == []


def test_hang_streams_slowly_until_the_client_leaves(api):
    api.script(hang(interval=0.05, seconds=30))
    with httpx.Client() as c:
        with c.stream("POST", f"{api.url}/v1/messages", json={"model": "m", "stream": True, "messages": []}) as r:
            seen = 0
            for line in r.iter_lines():
                seen += '"text_delta"' in line
                if seen == 3:
                    break
    assert api.wait_for(lambda a: a.requests[0].disconnected, timeout=5)
    assert not api.requests[0].finished


# ---------------------------------------------------------------- the real CLI


def test_cli_is_the_pinned_version(claude):
    out = subprocess.run([str(claude), "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    if claude == NPM_CLI:
        assert out.stdout.startswith(PINNED_VERSION)


def test_plain_text_turn(claude, api, home):
    api.script(text("Hello from the fake model."))
    sid = str(uuid.uuid4())
    run = run_claude(claude, api, home, "say hi", session_id=sid)
    print(f"\nplain turn, cold start to exit: {run.seconds:.3f} s")
    assert run.returncode == 0, run.stderr
    assert [ln["type"] for ln in run.lines] == ["system", "assistant", "result"]
    init, _, result = run.lines
    assert init["subtype"] == "init" and init["session_id"] == sid
    assert sorted(init["tools"]) == ["Bash", "Glob", "Grep", "Read"]  # --tools restricts exactly
    assert run.text == "Hello from the fake model."
    assert result["subtype"] == "success" and result["is_error"] is False
    assert result["result"] == "Hello from the fake model." and result["session_id"] == sid
    (req,) = api.model_requests
    assert req.stream and req.query.get("beta") == "true"
    assert "say hi" in req.text_of()
    assert api.unknown == [] and api.errors == []


def test_bash_tool_round_trip(claude, api, home):
    api.script(bash("echo hello-from-tool", preamble="Running it."), echo_tool_results("The tool said: "))
    run = run_claude(claude, api, home, "run the echo", session_id=str(uuid.uuid4()))
    assert run.returncode == 0, run.stderr
    (use,) = run.content("tool_use")
    assert use["name"] == "Bash" and use["input"]["command"] == "echo hello-from-tool"
    (res,) = run.content("tool_result", role="user")
    assert res["tool_use_id"] == use["id"] and "hello-from-tool" in str(res["content"])
    assert not res.get("is_error")
    assert run.result["result"] == "The tool said: hello-from-tool" and not run.result["is_error"]
    # The model saw the tool's real output in the second request.
    first, second = api.model_requests
    assert first.tool_results == []
    (sent,) = second.tool_results
    assert sent["tool_use_id"] == use["id"] and "hello-from-tool" in str(sent["content"])


def test_resumed_turn_resends_the_earlier_messages(claude, api, home):
    sid = str(uuid.uuid4())
    api.script(text("First answer."))
    first = run_claude(claude, api, home, "first prompt", session_id=sid)
    assert first.returncode == 0, first.stderr
    api.script(text("Second answer."))
    second = run_claude(claude, api, home, "second prompt", resume=sid)
    assert second.returncode == 0, second.stderr
    assert second.result["result"] == "Second answer." and second.result["session_id"] == sid
    req = api.model_requests[-1]
    roles = [m["role"] for m in req.messages if m["role"] != "system"]
    assert roles[-3:] == ["user", "assistant", "user"]
    sent = req.text_of()
    assert sent.index("first prompt") < sent.index("First answer.") < sent.index("second prompt")


def test_http_500_is_an_error_result_and_exit_1(claude, api, home):
    api.script(error(500))
    run = run_claude(claude, api, home, "hi", session_id=str(uuid.uuid4()))
    assert run.returncode == 1
    assert run.result["is_error"] is True and run.result.get("api_error_status") == 500
    synthetic = [ln for ln in run.of("assistant") if ln["message"].get("model") == "<synthetic>"]
    assert synthetic and synthetic[0].get("error")
    assert len(api.model_requests) == 1  # CLAUDE_CODE_MAX_RETRIES=0


def test_partial_messages_yield_text_delta_stream_events(claude, api, home):
    api.script(text("alpha", " beta", " gamma", delay=0.02))
    run = run_claude(claude, api, home, "hi", session_id=str(uuid.uuid4()), partial=True)
    assert run.returncode == 0, run.stderr
    deltas = [
        ln["event"]["delta"]["text"]
        for ln in run.of("stream_event")
        if ln["event"]["type"] == "content_block_delta" and ln["event"]["delta"]["type"] == "text_delta"
    ]
    assert deltas == ["alpha", " beta", " gamma"]
    assert run.text == "alpha beta gamma"


def test_broken_stream_is_retried_without_streaming(claude, api, home):
    api.script(stream_error(), text("Recovered."))
    run = run_claude(claude, api, home, "hi", session_id=str(uuid.uuid4()))
    assert run.returncode == 0, run.stderr
    assert run.result["result"] == "Recovered."
    assert [r.stream for r in api.model_requests] == [True, False]


def test_sigint_during_a_hanging_stream_cancels_the_turn(claude, api, home):
    api.script(hang(interval=0.05))
    argv = claude_argv(claude, "hi", session_id=str(uuid.uuid4()), partial=True)
    proc = subprocess.Popen(
        argv,
        env=claude_env(api.url, home),
        cwd=home,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines, sent_at = [], None
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = json.loads(raw)
            lines.append(line)
            is_delta = line["type"] == "stream_event" and line["event"]["type"] == "content_block_delta"
            if is_delta and sent_at is None and len(lines) > 4:
                sent_at = time.monotonic()
                proc.send_signal(signal.SIGINT)
        rc = proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert sent_at is not None and rc == 0
    assert lines[-1]["type"] == "result" and lines[-1]["subtype"] == "error_during_execution"
    assert api.wait_for(lambda a: a.model_requests[0].disconnected, timeout=5)


async def test_async_use_with_an_asyncio_subprocess(claude, home):
    """From an async test: `async with`, `await api.until(...)`, the CLI as an asyncio subprocess."""
    import asyncio

    async with FakeAnthropic() as api:
        api.script(text("async hello"))
        proc = await asyncio.create_subprocess_exec(
            *claude_argv(claude, "hi", session_id=str(uuid.uuid4())),
            env=claude_env(api.url, home),
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert await api.until(lambda a: len(a.model_requests) == 1, timeout=30)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err
    result = json.loads(out.decode().splitlines()[-1])
    assert result["type"] == "result" and result["result"] == "async hello"
