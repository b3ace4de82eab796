"""argv and environment of the CLI: pure functions, pinned here."""

from __future__ import annotations

from pathlib import Path

from agent_runner.agent import instructions
from agent_runner.cli import Invocation, argv, environment
from agent_runner.workspace import Workspace

import pytest

SID = "6cfaa6bb-d10d-4842-8572-2d78d3eeee8c"


def test_first_turn_uses_session_id_and_later_turns_resume():
    first = argv(Invocation(bin="claude", model="sonnet", session_id=SID, resume=False), "hi")
    later = argv(Invocation(bin="claude", model="sonnet", session_id=SID, resume=True), "hi")
    assert ["--session-id", SID] == first[first.index("--session-id"):first.index("--session-id") + 2]
    assert "--resume" not in first and "--session-id" not in later
    assert later[later.index("--resume") + 1] == SID
    for args in (first, later):
        assert args[:2] == ["claude", "-p"]
        assert "--tools=Bash,Read,Grep,Glob" in args and "--include-partial-messages" in args
        assert args[args.index("--output-format") + 1] == "stream-json" and "--verbose" in args


@pytest.mark.parametrize("prompt", ["--help", "; rm -rf /", "$(reboot)", "a\nb", "-p"])
def test_the_prompt_is_one_argument_after_the_end_of_options(prompt):
    args = argv(Invocation(bin="claude", model="m", session_id=SID, resume=False), prompt)
    assert args[-2:] == ["--", prompt]


def test_environment_passes_only_anthropic_and_claude_code_variables(tmp_path):
    ws = Workspace.for_session(tmp_path, SID)
    runner_env = {
        "ANTHROPIC_API_KEY": "k", "CLAUDE_CODE_MAX_RETRIES": "0", "BREAKGLASS_NATS_URL": "nats://x",
        "BREAKGLASS_PVE_KEY_FILE": "/k", "NATS_CREDS": "c", "HOME": "/root", "AWS_SECRET_ACCESS_KEY": "s",
    }
    env = environment(runner_env, ws)
    assert env["ANTHROPIC_API_KEY"] == "k" and env["CLAUDE_CODE_MAX_RETRIES"] == "0"
    assert env["HOME"] == str(ws.home) and env["CLAUDE_CODE_TMPDIR"] == str(ws.tmp)
    assert not [k for k in env if k.startswith(("BREAKGLASS_", "NATS", "AWS"))]


@pytest.mark.parametrize("bad", ["../../etc", "x", "6CFAA6BB-D10D-4842-8572-2D78D3EEEE8C"])
def test_a_workspace_is_only_ever_made_for_a_uuid(tmp_path, bad):
    with pytest.raises(ValueError):
        Workspace.for_session(tmp_path, bad)


def test_workspace_remembers_the_cli_session(tmp_path):
    ws = Workspace.for_session(tmp_path, SID).prepare()
    assert ws.home.is_dir() and ws.work.is_dir() and not ws.started
    ws.mark_started()
    assert Workspace.for_session(tmp_path, SID).started


def test_agent_instructions_drop_the_front_matter():
    text = instructions(Path(__file__).resolve().parents[2] / "agents" / "breakglass.md")
    assert not text.startswith("---") and "Diagnose first" in text and "cycle" in text


def test_the_agent_reaches_the_vm_as_devvm_with_a_pinned_host_key(tmp_path):
    from agent_runner.devvm import DevvmTarget

    target = DevvmTarget(host="10.0.0.5", user="ops", key_file="/run/secrets/devvm_key", known_hosts="/run/secrets/devvm_known_hosts")
    ws = Workspace.for_session(tmp_path, SID).prepare(target.ssh_config())
    config = (ws.home / ".ssh" / "config").read_text()
    assert config.startswith("Host devvm\n") and "HostName 10.0.0.5" in config
    assert "StrictHostKeyChecking yes" in config and "IdentityFile /run/secrets/devvm_key" in config
    assert (ws.home / ".ssh" / "config").stat().st_mode & 0o777 == 0o600


def test_the_verb_tool_comes_from_a_strict_mcp_config_and_is_pre_approved(tmp_path):
    inv = Invocation(bin="claude", model="m", session_id=SID, resume=True, mcp_config="/ws/mcp-1.json",
                     extra_tools=("mcp__breakglass__pve",))
    args = argv(inv, "hi")
    assert "--mcp-config=/ws/mcp-1.json" in args and "--strict-mcp-config" in args
    assert "--allowedTools=Bash,Read,Grep,Glob,mcp__breakglass__pve" in args
    assert "--tools=Bash,Read,Grep,Glob" in args  # built-in tools stay limited; MCP tools are not built-ins
    assert args[-2:] == ["--", "hi"]


def test_the_cli_waits_for_the_verb_tool_as_long_as_the_runner_may(tmp_path):
    ws = Workspace.for_session(tmp_path, SID)
    assert "MCP_TOOL_TIMEOUT" not in environment({}, ws)
    assert environment({"MCP_TOOL_TIMEOUT": "1"}, ws, mcp_tool_timeout_seconds=510)["MCP_TOOL_TIMEOUT"] == "510000"
