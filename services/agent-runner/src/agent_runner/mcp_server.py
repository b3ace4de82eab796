"""The agent's only way to a power verb: a stdio MCP server with one tool.

    python -m agent_runner.mcp_server SOCKET

The Claude CLI spawns this (see the turn's mcp config) and offers the model
one tool, `pve` (`mcp__breakglass__pve`), whose single argument is an enum
of the six verbs. Threat model: the model, and anything it runs with Bash,
is untrusted. So this process holds nothing worth stealing: no NATS URL, no
credential, no Proxmox key. All it can do is write `{"verb": "<enum>"}` to
the per-turn Unix socket named on its command line and relay the one-line
answer. The runner behind that socket owns the rest: it knows which session
the socket belongs to, checks the verb again, applies the approval policy,
and publishes the command. A Bash command that finds the socket gains
nothing either: it can ask for the same six verbs under the same policy.

The protocol is MCP over stdio: JSON-RPC 2.0, one message per line. It
answers `initialize`, `ping`, `tools/list` and `tools/call`, ignores
notifications, and refuses any other method with "method not found". A
tool call runs on its own thread (a mutating verb may wait minutes for the
operator), so pings and further calls are answered meanwhile.
"""

from __future__ import annotations

import socket
import sys
import threading
from typing import Any, BinaryIO

import msgspec

from events.verbs import Verb

from .verb_wire import MAX_LINE, VERB_NAMES, VerbAsked, VerbAnswered, decode_answered, encode_line

TOOL_NAME = "pve"
SERVER_NAME = "breakglass"
#: Protocol revisions this server can speak; an unknown request gets the newest.
PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602

TOOL = {
    "name": TOOL_NAME,
    "title": "Proxmox power verb",
    "description": (
        "Run one power verb on the developer VM's hypervisor (Proxmox), outside the VM. "
        "`status` and `forensics` only read. `reset` (hard reset, same QEMU process), `stop`, `start` "
        "and `cycle` (stop then start: a fresh QEMU process, the cure for a QEMU I/O stall) change the "
        "VM and may wait for the operator's approval; a denied verb did not run."
    ),
    "inputSchema": {
        "type": "object",
        "properties": {"verb": {"type": "string", "enum": list(VERB_NAMES), "description": "the verb to run"}},
        "required": ["verb"],
        "additionalProperties": False,
    },
}

_decode_any = msgspec.json.Decoder(Any)
_encoder = msgspec.json.Encoder()


def _text_result(text: str, is_error: bool) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": is_error}


class NotDelivered(Exception):
    """The runner's socket did not take the request: nothing ran."""


class NoAnswer(Exception):
    """The request was delivered but no usable answer came back."""


def ask(socket_path: str, verb: Verb) -> VerbAnswered:
    """One request over the runner's socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        try:
            conn.connect(socket_path)
            conn.sendall(encode_line(VerbAsked(verb=verb)))
        except OSError as exc:
            raise NotDelivered(exc.strerror or str(exc)) from None
        try:
            with conn.makefile("rb") as answers:
                line = answers.readline(MAX_LINE + 1)
        except OSError as exc:
            raise NoAnswer(exc.strerror or str(exc)) from None
    if not line.endswith(b"\n"):
        raise NoAnswer("the connection closed without a complete answer")
    try:
        return decode_answered(line)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise NoAnswer(f"malformed answer: {exc}") from None


def call_tool(socket_path: str, params: dict[str, Any]) -> dict[str, Any]:
    """The result of a `tools/call` for our tool (never raises)."""
    arguments = params.get("arguments")
    verb = arguments.get("verb") if isinstance(arguments, dict) else None
    if not isinstance(arguments, dict) or set(arguments) != {"verb"} or verb not in VERB_NAMES:
        return _text_result(f"refused: `verb` must be exactly one of {', '.join(VERB_NAMES)}; nothing ran", True)
    try:
        answer = ask(socket_path, Verb(verb))
    except NotDelivered as exc:
        return _text_result(f"verb {verb}: the agent runner could not be reached ({exc}); it did not run", True)
    except NoAnswer as exc:
        return _text_result(
            f"verb {verb}: no answer from the agent runner ({exc}); whether it ran is unknown, check with `status`",
            True,
        )
    return _text_result(answer.as_text(), answer.is_error)


class Server:
    def __init__(self, socket_path: str, out: BinaryIO) -> None:
        self._socket_path = socket_path
        self._out = out
        self._write_lock = threading.Lock()

    def serve(self, lines: BinaryIO) -> None:
        """Until stdin closes (the CLI went away); in-flight calls die with us."""
        while True:
            line = lines.readline(MAX_LINE + 1)
            if not line:
                return
            if not line.endswith(b"\n") and len(line) > MAX_LINE:
                while (rest := lines.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                    pass
                self._error(None, INVALID_REQUEST, "message too long")
                continue
            if line.strip():
                self.handle(line)

    def handle(self, line: bytes) -> None:
        try:
            message = _decode_any.decode(line)
        except msgspec.DecodeError:
            self._error(None, PARSE_ERROR, "parse error")
            return
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            self._error(None, INVALID_REQUEST, "not a JSON-RPC 2.0 message")
            return
        method = message.get("method")
        if "id" not in message:
            return  # a notification (initialized, cancelled, ...): nothing to answer
        request_id = message["id"]
        if isinstance(request_id, bool) or not isinstance(request_id, (str, int)):
            self._error(None, INVALID_REQUEST, "invalid id")
            return
        if method is None and ("result" in message or "error" in message):
            return  # a response to a request we never make
        params = message.get("params")
        if params is None:
            params = {}
        if not isinstance(method, str) or not isinstance(params, dict):
            self._error(request_id, INVALID_REQUEST, "invalid request")
            return
        match method:
            case "initialize":
                self._result(request_id, self._initialize(params))
            case "ping":
                self._result(request_id, {})
            case "tools/list":
                self._result(request_id, {"tools": [TOOL]})
            case "tools/call":
                if params.get("name") != TOOL_NAME:
                    self._error(request_id, INVALID_PARAMS, f"unknown tool {params.get('name')!r}")
                    return
                threading.Thread(target=self._call, args=(request_id, params), daemon=True).start()
            case _:
                self._error(request_id, METHOD_NOT_FOUND, f"method not found: {method}")

    @staticmethod
    def _initialize(params: dict[str, Any]) -> dict[str, Any]:
        asked = params.get("protocolVersion")
        return {
            "protocolVersion": asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[0],
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": SERVER_NAME, "version": "1"},
            "instructions": "One tool, `pve`: the hypervisor's power verbs for the developer VM.",
        }

    def _call(self, request_id: str | int, params: dict[str, Any]) -> None:
        self._result(request_id, call_tool(self._socket_path, params))

    def _result(self, request_id: str | int, result: dict[str, Any]) -> None:
        self._send({"jsonrpc": "2.0", "id": request_id, "result": result})

    def _error(self, request_id: str | int | None, code: int, message: str) -> None:
        self._send({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}})

    def _send(self, message: dict[str, Any]) -> None:
        data = _encoder.encode(message) + b"\n"
        with self._write_lock:
            self._out.write(data)
            self._out.flush()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0]:
        print("usage: python -m agent_runner.mcp_server SOCKET", file=sys.stderr)
        return 2
    try:
        Server(args[0], sys.stdout.buffer).serve(sys.stdin.buffer)
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
