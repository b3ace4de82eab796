"""The CLI's stream-json → events, pinned against lines captured from the
real CLI (fixtures/claude-stream-json, copied from the shared captures)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_runner.translate import DEFAULT_OUTPUT_CAP, Translator, cap_output
from events import codec
from events.kinds import (
    CliSessionBound,
    ResultReported,
    TextDelta,
    TextSaid,
    ToolCalled,
    ToolReturned,
    UsageReported,
    kind_of,
)

FIXTURES = Path(__file__).parent / "fixtures" / "claude-stream-json"
SID = "6cfaa6bb-d10d-4842-8572-2d78d3eeee8c"
TID = "0b3f6a52-9d7e-4c1a-8f2e-5a6b7c8d9e0f"


def kinds(spec: str) -> list[str]:
    """"session delta*3 text" → ["session", "delta", "delta", "delta", "text"]."""
    out: list[str] = []
    for word in spec.split():
        kind, _, n = word.partition("*")
        out += [kind] * int(n or 1)
    return out


#: file → (event kinds in order, is_error of each result, the CLI's cost).
EXPECTED: dict[str, tuple[str, tuple[bool, ...], float | None]] = {
    "01-plain-text-first-turn": ("session text result usage", (False,), 0.00014),
    "02-resumed-turn-bash-tool-roundtrip": ("session text tool tool_result text result usage", (False,), 0.00042),
    "03-api-500-after-retries": ("session result usage", (True,), 0.0),
    "04-sigint-mid-stream-partial-messages": ("session delta*21 text result usage", (True,), 0.00094),
    "05-sigterm-mid-stream-partial-messages": ("session delta*21", (), None),
    "06-mcp-tool-roundtrip": ("session text tool tool_result text result usage", (False,), 0.00028),
    "v2.1.330/b_tool_multi": ("session text tool*3 tool_result*3 text result usage", (False,), 0.00028),
    "v2.1.330/b_write_default": ("session tool tool_result text result usage", (False,), 0.00028),
    "v2.1.330/c_resume_after_sigint": ("session text result usage", (False,), 0.00014),
    "v2.1.330/d_conn_refused": ("session result usage", (True,), 0.0),
    "v2.1.330/d_err_401": ("session result usage", (True,), 0.0),
    "v2.1.330/d_err_500": ("session result usage", (True,), 0.0),
    "v2.1.330/d_err_529": ("session result usage", (True,), 0.0),
    "v2.1.330/d_max_turns": ("session text tool tool_result result usage", (True,), 0.00014),
    "v2.1.330/d_stream_error": ("session text result usage", (False,), 0.00014),
    "v2.1.330/e_sigINT_during_tool": ("session text tool tool_result result usage", (True,), 0.00014),
    "v2.1.330/e_sigTERM_during_tool": ("session text tool tool_result", (), None),
    "v2.1.330/f_partial_tool": ("session delta*2 text tool tool_result delta*3 text result usage", (False,), 0.00028),
    "v2.1.330/g_resume_unknown": ("result usage", (True,), 0.0),
    "v2.1.330/h_bare": ("session text result usage", (False,), 0.00014),
    "v2.1.330/i_subagent": ("session text tool tool_result text*3 result usage result usage", (False, False), 0.00056),
    "v2.1.330/x_tools_restrict": ("session text result usage", (False,), 0.00014),
}


def run(name: str, **kwargs) -> tuple[Translator, list]:
    t = Translator(SID, TID, **kwargs)
    lines = (FIXTURES / f"{name}.jsonl").read_bytes().splitlines()
    return t, [event for line in lines for event in t.feed(line)]


def of(events: list, type_: type) -> list:
    return [e for e in events if isinstance(e, type_)]


def test_every_captured_file_has_an_expectation():
    captured = {str(p.relative_to(FIXTURES).with_suffix("")) for p in FIXTURES.rglob("*.jsonl")}
    assert captured == EXPECTED.keys()


@pytest.mark.parametrize("name", EXPECTED)
def test_fixture_translates_to_the_expected_events(name):
    spec, result_errors, cost = EXPECTED[name]
    t, events = run(name)

    assert [kind_of(type(e)) for e in events] == kinds(spec)
    assert tuple(r.is_error for r in of(events, ResultReported)) == result_errors
    assert t.saw_result == bool(result_errors)
    if cost is not None:
        assert of(events, UsageReported)[-1].cost_usd == pytest.approx(cost)
    # Fact 4: every result answers a call made earlier in the turn.
    called = [c.tool_use_id for c in of(events, ToolCalled)]
    assert all(c for c in called)
    assert all(r.tool_use_id in called for r in of(events, ToolReturned))
    for e in events:
        assert (e.session_id, e.turn_id, e.by) == (SID, TID, "agent")
        assert codec.decode_event(codec.encode(e)) == e


def test_bash_result_is_the_plain_string_output():
    _, events = run("02-resumed-turn-bash-tool-roundtrip")
    (call,) = of(events, ToolCalled)
    (result,) = of(events, ToolReturned)
    assert (call.name, call.input["command"]) == ("Bash", "echo hello-from-tool; uptime")
    assert result.tool_use_id == call.tool_use_id == "toolu_ca541abceb7c45478341"
    assert result.output.startswith("hello-from-tool\n") and "load average" in result.output
    assert not result.is_error and not result.truncated


def test_mcp_result_list_content_is_joined_text():
    _, events = run("06-mcp-tool-roundtrip")
    (call,) = of(events, ToolCalled)
    (result,) = of(events, ToolReturned)
    assert (call.name, call.input) == ("mcp__breakglass__pve", {"verb": "status"})
    assert result.tool_use_id == call.tool_use_id
    assert result.output == "verb status: exit 0, status: running"
    assert result.is_error is False  # absent in the line


def test_results_in_completion_order_are_matched_by_id():
    _, events = run("v2.1.330/b_tool_multi")
    calls = {c.tool_use_id: c for c in of(events, ToolCalled)}
    assert [c.name for c in calls.values()] == ["Bash", "Bash", "Read"]
    got = {calls[r.tool_use_id].input.get("command", "Read"): (r.is_error, r.output) for r in of(events, ToolReturned)}
    assert list(got) == ["Read", "echo one", "ls /definitely/not/here"]
    assert got["echo one"] == (False, "one")
    assert got["ls /definitely/not/here"][0] is True
    assert got["ls /definitely/not/here"][1].startswith("Exit code 2\n")
    # The thinking block is not shown.
    assert [t.text for t in of(events, TextSaid)][0] == "Running several tools."


@pytest.mark.parametrize("name", ["03-api-500-after-retries", "v2.1.330/d_conn_refused", "v2.1.330/d_err_401",
                                  "v2.1.330/d_err_500", "v2.1.330/d_err_529"])
def test_api_failure_is_an_erroring_result_not_assistant_text(name):
    # Fact 1: subtype "success", is_error true, after a synthetic assistant line.
    t, events = run(name)
    (result,) = of(events, ResultReported)
    assert result.is_error and result.result
    assert not of(events, TextSaid)
    assert t.last_error == result.result


def test_synthetic_api_error_line_alone_is_kept_as_last_error():
    lines = (FIXTURES / "v2.1.330/d_err_401.jsonl").read_bytes().splitlines()
    t = Translator(SID, TID)
    assert [t.feed(line) for line in lines[1:2]] == [[]]
    assert t.last_error == "Invalid API key · Fix external API key"
    assert not t.saw_result


def test_usage_carries_the_result_tokens():
    _, events = run("01-plain-text-first-turn")
    (usage,) = of(events, UsageReported)
    tokens = usage.tokens
    assert (tokens.input, tokens.output, tokens.cache_read, tokens.cache_creation) == (10, 5, 0, 0)
    (result,) = of(events, ResultReported)
    assert (result.result, result.duration_ms) == ("Hello from the fake model.", 113)


def test_sigint_cancellation_is_an_erroring_result_and_deltas_rebuild_the_text():
    t, events = run("04-sigint-mid-stream-partial-messages")
    deltas = of(events, TextDelta)
    (text,) = of(events, TextSaid)
    assert "".join(d.text for d in deltas) == text.text
    assert {d.block for d in deltas} == {"msg_63de2bbef16445fea7bd:0"}
    (result,) = of(events, ResultReported)
    assert result.is_error and result.result == "aborted streaming"
    assert t.saw_result


def test_deltas_of_each_message_share_a_block_key():
    _, events = run("v2.1.330/f_partial_tool")
    by_block: dict[str, str] = {}
    for d in of(events, TextDelta):
        by_block[d.block] = by_block.get(d.block, "") + d.text
    assert list(by_block.values()) == [t.text for t in of(events, TextSaid)]
    assert list(by_block) == ["msg_fake_4bd73ea146444f38a473:0", "msg_fake_73531dfc2466445193d0:0"]


@pytest.mark.parametrize("name", ["05-sigterm-mid-stream-partial-messages", "v2.1.330/e_sigTERM_during_tool"])
def test_sigterm_leaves_no_result_for_the_process_manager_to_see(name):
    t, _ = run(name)
    assert not t.saw_result and t.last_error is None


def test_error_result_without_text_gives_its_reason():
    t, events = run("v2.1.330/d_max_turns")
    assert of(events, ResultReported)[0].result == "Reached maximum number of turns (1)"
    t, events = run("v2.1.330/g_resume_unknown")
    assert of(events, ResultReported)[0].result.startswith("No conversation found with session ID")
    assert not of(events, CliSessionBound)


def test_repeated_init_binds_once_per_cli_session():
    _, events = run("v2.1.330/i_subagent")  # two init lines, one session
    assert [(e.cli_session_id, e.model) for e in of(events, CliSessionBound)] == [
        ("baf23795-c4a6-4249-b5b1-ef597e2c49e5", "claude-opus-5-5")
    ]
    t = Translator(SID, TID)
    init = {"type": "system", "subtype": "init", "session_id": "a", "model": "m"}
    assert len(t.feed(json.dumps(init))) == 1
    assert t.feed(json.dumps(init)) == []
    assert len(t.feed(json.dumps(init | {"session_id": "b"}))) == 1


def test_init_after_noise_still_binds():
    _, events = run("v2.1.330/h_bare")  # ui_invalidate comes first
    assert isinstance(events[0], CliSessionBound)


# --- Lines the captures do not show -----------------------------------------

MALFORMED = [
    b"not json",
    b'{"type": "assistant", "message": ',
    b"[1, 2, 3]",
    b"42",
    b'"a string"',
    b'{"no_type": 1}',
    b'{"type": 7}',
    b'{"type": "assistant"}',
    b'{"type": "assistant", "message": {"content": 5}}',
    b'{"type": "user", "message": {"content": [{"type": "tool_result", "is_error": "yes"}]}}',
    b'{"type": "result", "is_error": "no"}',
    b'{"type": "stream_event", "event": []}',
    b"\xff\xfe garbage",
]


@pytest.mark.parametrize("line", MALFORMED)
def test_malformed_line_is_logged_and_skipped(line, caplog):
    t = Translator(SID, TID)
    with caplog.at_level(logging.WARNING, logger="agent_runner.translate"):
        assert t.feed(line) == []
    assert "malformed" in caplog.text
    assert not t.saw_result


@pytest.mark.parametrize("line", [b'{"type": "future_kind", "x": 1}', b'{"type": "system", "subtype": "new_thing"}',
                                  b"", b"  \n", '{"type": "rate_limit_event"}'])
def test_unknown_or_empty_line_is_quiet_noise(line, caplog):
    with caplog.at_level(logging.WARNING, logger="agent_runner.translate"):
        assert Translator(SID, TID).feed(line) == []
    assert caplog.text == ""


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
shaped = st.fixed_dictionaries(
    {"type": st.sampled_from(["system", "assistant", "user", "stream_event", "result"])},
    optional={"subtype": st.sampled_from(["init", "success"]) | st.text(max_size=5), "message": json_values,
              "event": json_values, "is_error": json_values, "usage": json_values, "result": json_values},
)


@given(line=st.binary(max_size=200) | json_values.map(json.dumps) | shaped.map(json.dumps))
def test_no_line_raises(line):
    t = Translator(SID, TID)
    for event in t.feed(line):
        codec.encode(event)


def tool_result_line(content, **extra) -> str:
    block = {"type": "tool_result", "tool_use_id": "toolu_x", "content": content} | extra
    return json.dumps({"type": "user", "message": {"role": "user", "content": [block]}})


def test_output_over_the_cap_is_cut_on_a_character_boundary_and_marked():
    text = "€" * 10  # 3 bytes each
    (event,) = Translator(SID, TID, output_cap=10).feed(tool_result_line(text))
    assert event.truncated
    assert event.output == "… [truncated: 21 bytes omitted]\n€€€"  # the tail: logs are read from the end
    assert codec.decode_event(codec.encode(event)) == event


@pytest.mark.parametrize("cap", range(0, 13))
def test_cap_output_never_splits_a_character(cap):
    text = "aé€😀" * 2  # 1, 2, 3 and 4 UTF-8 bytes
    kept, truncated = cap_output(text, cap)
    assert truncated == (cap < len(text.encode()))
    if truncated:
        marker, _, tail = kept.partition(" bytes omitted]\n")
        assert text.endswith(tail) and len(tail.encode()) <= cap
        assert len(tail.encode()) > cap - 4  # at most one character dropped
        assert marker == f"… [truncated: {len(text.encode()) - len(tail.encode())}"


def test_output_at_the_cap_is_whole():
    text = "x" * DEFAULT_OUTPUT_CAP
    (event,) = Translator(SID, TID).feed(tool_result_line(text))
    assert (event.output, event.truncated) == (text, False)


def test_list_content_names_non_text_blocks():
    content = [{"type": "text", "text": "before"}, {"type": "image", "source": {"data": "..."}},
               {"type": "text", "text": "after"}]
    (event,) = Translator(SID, TID).feed(tool_result_line(content, is_error=True))
    assert (event.output, event.is_error) == ("before\n[image]\nafter", True)


def test_result_without_is_error_falls_back_on_subtype():
    t = Translator(SID, TID)
    ok = t.feed(b'{"type": "result", "subtype": "success", "result": "fine"}')[0]
    bad = t.feed(b'{"type": "result", "subtype": "error_during_execution"}')[0]
    assert (ok.is_error, ok.result) == (False, "fine")
    assert (bad.is_error, bad.result) == (True, "error_during_execution")
    assert t.last_error == "error_during_execution"


def test_unknown_content_blocks_are_skipped():
    line = {"type": "assistant", "message": {"id": "m", "content": [
        {"type": "server_tool_use", "id": "s"}, {"type": "redacted_thinking", "data": "x"},
        {"type": "text", "text": "kept"}]}}
    assert [e.text for e in Translator(SID, TID).feed(json.dumps(line))] == ["kept"]


def test_cap_must_not_be_negative():
    with pytest.raises(ValueError):
        Translator(SID, TID, output_cap=-1)


def test_text_block_names_match_the_deltas_they_replace():
    """With partial messages on, every delta's block equals the block of the
    `text` event that carries the whole text."""
    path = FIXTURES / "04-sigint-mid-stream-partial-messages.jsonl"
    t = Translator(SID, TID)
    events = [e for line in path.read_bytes().splitlines() for e in t.feed(line)]
    delta_blocks = {e.block for e in events if isinstance(e, TextDelta)}
    text_blocks = {e.block for e in events if isinstance(e, TextSaid)}
    assert delta_blocks and text_blocks and text_blocks <= delta_blocks
