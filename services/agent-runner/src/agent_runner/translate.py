"""Claude Code CLI stream-json lines → breakglass events. Pure: no I/O.

One `Translator` per turn. The process manager hands it each stdout line and
records whatever events come back; everything about processes, signals and
exit codes stays there. Keeping this pure lets table-driven tests pin it
against lines captured from the real CLI (tests/agent_runner/fixtures).

Why it looks the way it does (the "facts" of the fixtures' README):

- A line is decoded at this boundary into a few small typed Structs; fields
  we do not read are ignored, so a CLI upgrade that adds fields changes
  nothing. A line of an unknown `type` is noise (debug log, no events). A
  line that is not JSON, or a known type in the wrong shape, is logged and
  skipped: a stray line must never take down a turn (SPEC §5).
- Fact 1: an API failure is a `result` with `subtype: "success"` and
  `is_error: true`, after a synthetic `assistant` line holding the same text.
  We read `is_error`, never `subtype`, and emit nothing for the synthetic
  line: its text is not the model speaking, and the `result` reports it.
  Its text is kept in `last_error` in case no `result` follows.
- Fact 2: a process may print several `result` lines (a sub-agent). Each one
  is reported; the turn ends when the process exits, which is not ours to
  see. `saw_result` and `last_error` let the process manager decide, at
  exit, whether an `error` event is owed (fact 7: rc ≠ 0 and no result).
- Fact 3: one `assistant` line per content block, so each text block is one
  `text` event and each tool_use one `tool` event; thinking is not shown.
- Fact 4: tool results arrive one `user` line each, in completion order,
  matched by `tool_use_id`; `is_error` may be absent; `content` is a string
  (Bash, Read) or a list of blocks (MCP, Agent). Output is capped in UTF-8
  bytes, never splitting a character, and marked when cut: the log keeps
  what the agent saw without one `cat` of a big file flooding it.
- Fact 5: with partial messages, text arrives as `text_delta` stream events
  (ephemeral `delta` events keyed by `<message id>:<block index>`) and then
  whole in the `assistant` line (the stored `text` event).
- Fact 6: `system/init` is not always first and may repeat: a `session`
  event is emitted once per distinct CLI session id.
- A SIGINT cancellation ends with `result/error_during_execution`: reported
  as an erroring result; saying `cancelled` is the process manager's job.
- `system/permission_denied` emits nothing: the denied call's `tool_result`
  (is_error, same message) follows and tells the operator. `system/api_retry`
  is logged only; the final outcome arrives as a `result`.

`usage.cost_usd` is the CLI's `total_cost_usd`: cumulative for the CLI
session (fact 8) and for the process, not a per-result delta; the token
counts are the result's own.
"""

from __future__ import annotations

import logging
from typing import Any, Union

import msgspec

from events.kinds import (
    CliSessionBound,
    Event,
    ResultReported,
    TextDelta,
    TextSaid,
    Tokens,
    ToolCalled,
    ToolReturned,
    UsageReported,
)

logger = logging.getLogger("agent_runner.translate")

DEFAULT_OUTPUT_CAP = 16 * 1024
AGENT = "agent"


# --- The CLI's lines, as far as we read them. Every field has a default so a
# --- line missing something we do not need still decodes.


class Block(msgspec.Struct):
    """A content block of any type; the fields used depend on `type`."""

    type: str = ""
    text: str | None = None  # text
    id: str = ""  # tool_use
    name: str = ""  # tool_use
    input: dict[str, Any] = {}  # tool_use
    tool_use_id: str = ""  # tool_result
    content: str | list[Block] | None = None  # tool_result
    is_error: bool | None = None  # tool_result


class Message(msgspec.Struct):
    id: str = ""
    content: str | list[Block] = []

    def blocks(self) -> list[Block]:
        if isinstance(self.content, str):
            return [Block(type="text", text=self.content)]
        return self.content


class System(msgspec.Struct, tag_field="type", tag="system"):
    subtype: str = ""
    session_id: str | None = None
    model: str | None = None


class Assistant(msgspec.Struct, tag_field="type", tag="assistant"):
    message: Message
    is_api_error_message: bool = False
    error: str | None = None


class User(msgspec.Struct, tag_field="type", tag="user"):
    message: Message


class Delta(msgspec.Struct):
    type: str = ""
    text: str = ""


class StreamBody(msgspec.Struct):
    """One Messages API SSE event, as the CLI relays it."""

    type: str = ""
    index: int = 0
    delta: Delta | None = None
    message: Message | None = None


class StreamEvent(msgspec.Struct, tag_field="type", tag="stream_event"):
    event: StreamBody
    api_message_id: str | None = None


class Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None


class Result(msgspec.Struct, tag_field="type", tag="result"):
    subtype: str = ""
    is_error: bool | None = None
    result: str | None = None
    duration_ms: float | None = None
    total_cost_usd: float | None = None
    usage: Usage | None = None
    errors: list[Any] = []
    terminal_reason: str | None = None


Line = Union[System, Assistant, User, StreamEvent, Result]
LINE_TYPES = frozenset(t.__struct_config__.tag for t in Line.__args__)  # type: ignore[attr-defined]


class _Head(msgspec.Struct):
    type: str


_line_decoder = msgspec.json.Decoder(Line)
_head_decoder = msgspec.json.Decoder(_Head)


def parse_line(line: bytes | str) -> Line | None:
    """The typed line, or None for noise and for a malformed (logged) line."""
    if not line.strip():
        return None
    try:
        return _line_decoder.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeError) as exc:
        problem = exc
    try:
        line_type = _head_decoder.decode(line).type
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeError):
        line_type = None
    if line_type is not None and line_type not in LINE_TYPES:
        logger.debug("ignoring CLI line of unknown type %r", line_type)
    else:
        # The line may hold prompt or tool text: its content is for debug only.
        logger.warning("skipping a malformed CLI line of %d bytes (%s)", len(line), problem)
        logger.debug("the malformed CLI line: %.200r", line)
    return None


def cap_output(text: str, cap: int) -> tuple[str, bool]:
    """`text` cut to its last `cap` UTF-8 bytes on a character boundary,
    after a marker saying how much went before; and whether it was cut.
    The tail is kept: tool output is mostly logs and command output, read
    from the end (the error is the last line, not the first)."""
    data = text.encode()
    if len(data) <= cap:
        return text, False
    # The input is valid UTF-8, so "ignore" drops only a character cut in two.
    kept = data[len(data) - cap:].decode(errors="ignore") if cap else ""
    omitted = len(data) - len(kept.encode())
    return f"… [truncated: {omitted} bytes omitted]\n{kept}", True


def tool_output(content: str | list[Block] | None) -> str:
    """A tool_result's content as text: a string as is, a list of blocks
    joined, with non-text blocks named (`[image]`)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join((b.text or "") if b.type == "text" else f"[{b.type or 'block'}]" for b in content)


def _result_text(r: Result, is_error: bool) -> str:
    """The result's own text; for an error without one, the best reason the
    line gives (an interrupted turn's `errors` are diagnostics, not reasons)."""
    if r.result or not is_error:
        return r.result or ""
    if r.terminal_reason and r.terminal_reason.startswith("aborted"):
        return r.terminal_reason.replace("_", " ")
    reasons = "; ".join(str(e) for e in r.errors)
    return reasons or r.subtype or "error"


class Translator:
    """Turns one turn's CLI stdout, line by line, into events."""

    def __init__(self, session_id: str, turn_id: str, *, output_cap: int = DEFAULT_OUTPUT_CAP) -> None:
        if output_cap < 0:
            raise ValueError("output_cap must be >= 0")
        self.session_id = session_id
        self.turn_id = turn_id
        self.output_cap = output_cap
        #: A `result` line came (the process manager owes no `error` for a
        #: non-zero exit then: the result already told the operator).
        self.saw_result = False
        #: The latest failure the CLI printed (API error text, erroring result).
        self.last_error: str | None = None
        self._cli_sessions: set[str] = set()
        self._block_counts: dict[str, int] = {}
        self._streaming_message = ""

    def feed(self, line: bytes | str) -> list[Event]:
        """The events for one stdout line (often none). Never raises on input."""
        match parse_line(line):
            case System(subtype="init") as s:
                return self._init(s)
            case System(subtype=subtype):
                level = logging.INFO if subtype in ("api_retry", "permission_denied") else logging.DEBUG
                logger.log(level, "CLI system/%s", subtype)
                return []
            case Assistant() as a:
                return self._assistant(a)
            case User(message=message):
                return [self._tool_returned(b) for b in message.blocks() if b.type == "tool_result"]
            case StreamEvent(event=event, api_message_id=message_id):
                return self._stream(event, message_id)
            case Result() as r:
                return self._result(r)
            case _:
                return []

    def _envelope(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "turn_id": self.turn_id, "by": AGENT}

    def _init(self, s: System) -> list[Event]:
        if not s.session_id:
            logger.warning("CLI system/init line without a session id")
            return []
        if s.session_id in self._cli_sessions:
            return []
        self._cli_sessions.add(s.session_id)
        return [CliSessionBound(cli_session_id=s.session_id, model=s.model or "", **self._envelope())]

    def _assistant(self, a: Assistant) -> list[Event]:
        blocks = a.message.blocks()
        if a.is_api_error_message:
            text = "\n".join(b.text for b in blocks if b.type == "text" and b.text)
            self.last_error = text or a.error or "API error"
            return []
        events: list[Event] = []
        for b in blocks:
            # One `assistant` line per content block, in order (fact 3): the
            # count so far is the block's index, as in the stream's deltas.
            index = self._block_counts.get(a.message.id, 0)
            self._block_counts[a.message.id] = index + 1
            if b.type == "text" and b.text:
                events.append(TextSaid(text=b.text, block=f"{a.message.id}:{index}", **self._envelope()))
            elif b.type == "tool_use":
                events.append(ToolCalled(name=b.name, input=b.input, tool_use_id=b.id, **self._envelope()))
        return events

    def _tool_returned(self, b: Block) -> ToolReturned:
        output, truncated = cap_output(tool_output(b.content), self.output_cap)
        return ToolReturned(
            tool_use_id=b.tool_use_id, output=output, is_error=bool(b.is_error), truncated=truncated,
            **self._envelope(),
        )

    def _stream(self, event: StreamBody, message_id: str | None) -> list[Event]:
        if event.type == "message_start" and event.message is not None:
            self._streaming_message = event.message.id
        if event.type != "content_block_delta" or event.delta is None or event.delta.type != "text_delta":
            return []
        if not event.delta.text:
            return []
        block = f"{message_id or self._streaming_message}:{event.index}"
        return [TextDelta(text=event.delta.text, block=block, **self._envelope())]

    def _result(self, r: Result) -> list[Event]:
        # Fact 1: `subtype` says "success" for API failures; `is_error` tells.
        is_error = r.is_error if r.is_error is not None else r.subtype != "success"
        text = _result_text(r, is_error)
        self.saw_result = True
        if is_error:
            self.last_error = text
        u = r.usage or Usage()
        tokens = Tokens(
            input=u.input_tokens or 0,
            output=u.output_tokens or 0,
            cache_read=u.cache_read_input_tokens or 0,
            cache_creation=u.cache_creation_input_tokens or 0,
        )
        return [
            ResultReported(
                is_error=is_error, result=text, duration_ms=int(r.duration_ms or 0),
                subtype=r.subtype, terminal_reason=r.terminal_reason, **self._envelope(),
            ),
            UsageReported(cost_usd=r.total_cost_usd or 0.0, tokens=tokens, **self._envelope()),
        ]
