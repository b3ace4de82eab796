"""Test doubles around the REAL Claude Code CLI: a fake Anthropic Messages API.

    from tests.fakeapi import FakeAnthropic, text, bash, error, hang
    from tests.fakeapi.cli import claude_path, claude_env, run_claude

See server.py (the API), replies.py (what the fake model can answer) and
cli.py (finding and running the CLI installed by scripts/test-deps.sh).
"""

from .replies import (
    Hang,
    HttpError,
    Message,
    StreamError,
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
from .server import FakeAnthropic, RecordedRequest

__all__ = [
    "FakeAnthropic",
    "RecordedRequest",
    "Hang",
    "HttpError",
    "Message",
    "StreamError",
    "bash",
    "echo_tool_results",
    "error",
    "hang",
    "message",
    "stream_error",
    "text",
    "text_block",
    "thinking_block",
    "tool_use",
    "tool_use_block",
]
