"""The agent's verb socket: one JSON line asked, one JSON line answered.

Shared by its two ends, the runner's per-turn socket server (`verb_tool`)
and the MCP server the CLI spawns (`mcp_server`). Stdlib and msgspec only:
the MCP server imports this and nothing that could reach NATS.

A request is `{"verb": "<one of the six>"}` and nothing else: no session id
(the socket belongs to one turn of one session), no free text. Unknown
fields are refused, so a request cannot smuggle anything past the decoder.
"""

from __future__ import annotations

import msgspec

from events.verbs import ALL, Verb

#: Longest line either end reads. An answer carries a verb's capped stdout
#: and stderr (64 KiB each by default), escaped as JSON.
MAX_LINE = 1024 * 1024
SOCKET_MODE = 0o600


class VerbAsked(msgspec.Struct, forbid_unknown_fields=True):
    verb: Verb


class VerbAnswered(msgspec.Struct, kw_only=True):
    """The executor's `VerbResult` shape, plus what the agent is told."""

    verb: Verb
    exit_code: int
    stdout: str = ""
    stderr: str = ""
    rejected: bool = False
    #: The verb never ran: the operator denied it, or nobody answered in time.
    denied: bool = False
    #: One human line for the model, e.g. "verb status: exit 0".
    summary: str = ""

    @property
    def is_error(self) -> bool:
        return self.denied or self.rejected or self.exit_code != 0

    def as_text(self) -> str:
        """What the model reads as the tool's result."""
        parts = [self.summary or f"verb {self.verb.value}: exit {self.exit_code}"]
        if self.stdout:
            parts.append(f"--- stdout ---\n{self.stdout.rstrip()}")
        if self.stderr:
            parts.append(f"--- stderr ---\n{self.stderr.rstrip()}")
        return "\n".join(parts)


_asked = msgspec.json.Decoder(VerbAsked)
_answered = msgspec.json.Decoder(VerbAnswered)
_encoder = msgspec.json.Encoder()

VERB_NAMES: tuple[str, ...] = tuple(v.value for v in ALL)


def encode_line(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message) + b"\n"


def decode_asked(line: bytes) -> VerbAsked:
    """Raises `msgspec.ValidationError` / `msgspec.DecodeError` on anything else."""
    return _asked.decode(line)


def decode_answered(line: bytes) -> VerbAnswered:
    return _answered.decode(line)
