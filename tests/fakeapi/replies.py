"""Scripted replies of the fake Anthropic Messages API.

A reply is what the fake model answers to ONE `POST /v1/messages` request.
Build them with the helpers below and hand them to `FakeAnthropic.script()`;
they are consumed in order, one per request.

    text("Hello")                       one text block, streamed in small deltas
    text("a", "b", delay=0.2)           two text deltas of one block, 0.2 s apart
    tool_use("Bash", {"command": "echo hi"})   stop_reason tool_use
    message(thinking_block("hmm"), text_block("x"), tool_use_block("Read", {...}))
    error(500) / error(401) / error(529, "Overloaded")   HTTP error, Anthropic error JSON
    hang(interval=0.2)                  a stream that keeps dribbling text (cancel tests)
    stream_error()                      an SSE `error` event mid-stream
    lambda req: text(...)               computed from the recorded request
    echo_tool_results()                 text quoting the tool_result(s) of the last user message

A reply that is a callable receives the `RecordedRequest` and returns a reply.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Union


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


# ---------------------------------------------------------------- content blocks


@dataclass
class TextBlock:
    chunks: list[str]

    @property
    def text(self) -> str:
        return "".join(self.chunks)


@dataclass
class ThinkingBlock:
    chunks: list[str]
    signature: str = "fake-signature"

    @property
    def thinking(self) -> str:
        return "".join(self.chunks)


@dataclass
class ToolUseBlock:
    name: str
    input: dict[str, Any]
    id: str = field(default_factory=lambda: _id("toolu"))
    # How many input_json_delta pieces the JSON is cut into when streamed.
    pieces: int = 3


Block = Union[TextBlock, ThinkingBlock, ToolUseBlock]


def _split(s: str, size: int = 8) -> list[str]:
    """Cut a text into word-ish deltas the way the real API streams tokens."""
    if not s:
        return [""]
    out: list[str] = []
    cur = ""
    for word in s.split(" "):
        piece = word if not cur and not out else " " + word
        if len(cur) + len(piece) > size and cur:
            out.append(cur)
            cur = piece
        else:
            cur += piece
    out.append(cur)
    return out


def text_block(*chunks: str) -> TextBlock:
    """A text block; one argument is cut into small deltas, several are the deltas."""
    return TextBlock(_split(chunks[0]) if len(chunks) == 1 else list(chunks))


def thinking_block(*chunks: str) -> ThinkingBlock:
    return ThinkingBlock(_split(chunks[0]) if len(chunks) == 1 else list(chunks))


def tool_use_block(name: str, input: dict[str, Any] | None = None, id: str | None = None) -> ToolUseBlock:
    block = ToolUseBlock(name, dict(input or {}))
    if id:
        block.id = id
    return block


# ---------------------------------------------------------------- replies


@dataclass
class Message:
    """A successful model message (streamed as SSE, or whole JSON when stream is false)."""

    blocks: list[Block]
    stop_reason: str | None = None  # derived: tool_use if any tool_use block, else end_turn
    delay: float = 0.0  # seconds between SSE events that carry deltas
    first_delay: float = 0.0  # seconds before the response headers are sent
    usage: dict[str, int] = field(default_factory=lambda: {"input_tokens": 10, "output_tokens": 5})
    id: str = field(default_factory=lambda: _id("msg"))
    model: str | None = None  # default: the request's model

    def final_stop_reason(self) -> str:
        if self.stop_reason:
            return self.stop_reason
        return "tool_use" if any(isinstance(b, ToolUseBlock) for b in self.blocks) else "end_turn"


@dataclass
class HttpError:
    """An HTTP error with the Anthropic error body `{"type":"error","error":{...}}`."""

    status: int
    message: str = ""
    error_type: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    _TYPES = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        500: "api_error",
        529: "overloaded_error",
    }

    def body(self) -> dict[str, Any]:
        etype = self.error_type or self._TYPES.get(self.status, "api_error")
        msg = self.message or {
            "authentication_error": "invalid x-api-key",
            "overloaded_error": "Overloaded",
            "rate_limit_error": "Rate limited",
        }.get(etype, "Internal server error")
        return {"type": "error", "error": {"type": etype, "message": msg}, "request_id": _id("req")}


@dataclass
class Hang:
    """A streamed text reply that keeps dribbling `chunk` every `interval` seconds.

    It ends normally (end_turn) after `seconds`; meant to be cancelled first.
    A non-streaming request gets the same slowness as a delayed whole answer.
    """

    interval: float = 0.2
    seconds: float = 60.0
    chunk: str = "tick "


@dataclass
class StreamError:
    """Starts a normal stream, sends `before` text, then an SSE `error` event and closes."""

    before: str = "partial "
    error_type: str = "overloaded_error"
    message: str = "Overloaded"


Reply = Union[Message, HttpError, Hang, StreamError, Callable[[Any], Any]]


def message(*blocks: Block, delay: float = 0.0, stop_reason: str | None = None, **kw: Any) -> Message:
    return Message(list(blocks), stop_reason=stop_reason, delay=delay, **kw)


def text(*chunks: str, delay: float = 0.0, **kw: Any) -> Message:
    """A text answer. `text("a b c")` is cut into deltas; `text("a", "b")` streams exactly those."""
    return Message([text_block(*chunks)], delay=delay, **kw)


def tool_use(
    name: str,
    input: dict[str, Any] | None = None,
    *,
    preamble: str | None = None,
    id: str | None = None,
    delay: float = 0.0,
    **kw: Any,
) -> Message:
    """Ask for one tool call (stop_reason tool_use), optionally after a text block."""
    blocks: list[Block] = [text_block(preamble)] if preamble else []
    blocks.append(tool_use_block(name, input, id))
    return Message(blocks, delay=delay, **kw)


def bash(command: str, **kw: Any) -> Message:
    return tool_use("Bash", {"command": command, "description": "Run a command"}, **kw)


def error(status: int, message: str = "", error_type: str = "", **headers: str) -> HttpError:
    return HttpError(status, message, error_type, dict(headers))


def hang(interval: float = 0.2, seconds: float = 60.0, chunk: str = "tick ") -> Hang:
    return Hang(interval, seconds, chunk)


def stream_error(
    before: str = "partial ", error_type: str = "overloaded_error", message: str = "Overloaded"
) -> StreamError:
    """Break the stream; the CLI then resends with stream:false, which consumes the NEXT scripted reply."""
    return StreamError(before, error_type, message)


def echo_tool_results(prefix: str = "Tool said: ") -> Callable[[Any], Message]:
    """A reply that quotes the tool results the CLI just sent back (the follow-up to a tool_use)."""

    def reply(req: Any) -> Message:
        last = req.messages[-1] if req.messages else {}
        content = last.get("content") if isinstance(last, dict) else None
        outs = []
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                c = block.get("content")
                if isinstance(c, list):
                    c = "".join(b.get("text", "") for b in c if isinstance(b, dict))
                outs.append(str(c))
        return text(prefix + " | ".join(outs) if outs else prefix + "(no tool result)")

    return reply
