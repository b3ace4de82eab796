"""The primer: a loopback stand-in for the Messages API that answers a
warm CLI's throwaway first prompt, so that prompt never leaves the machine.

Why a throwaway prompt at all: the CLI runs its prompt path cold on the
first prompt it gets (JavaScript compiled and run the first time, its
session directories, the shell lookup), 100-400 ms more than on the
next one, and no control request runs that path (BENCHMARKS.md, "the
first prompt"). So a warm CLI starts with ANTHROPIC_BASE_URL pointing
here, is given one prompt whose model request this answers with a
canned text, then is rewound to before that prompt and switched to the
real API (`warm.WarmCli.prime`).

Each CLI gets its own random path prefix (`arm`), answered only while
armed: after the switch, a request that still came here (a CLI that did
not take the switch) gets an API error, never a made-up answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets

log = logging.getLogger("agent-runner.primer")

#: What the fake model answers; the CLI's own transcript of it is rewound.
REPLY = "."
#: Bounds on what a request may be (the priming prompt's request is tens of kB).
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
READ_SECONDS = 30.0


class Primer:
    def __init__(self) -> None:
        self._server: asyncio.base_events.Server | None = None
        self._armed: set[str] = set()
        self._lock = asyncio.Lock()
        self.port = 0

    async def start(self) -> None:
        async with self._lock:
            if self._server is None:
                self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
                self.port = self._server.sockets[0].getsockname()[1]
                log.info("primer listening on 127.0.0.1:%d", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    def arm(self) -> str:
        """A new prefix, answered until `disarm`; the base URL for a CLI."""
        token = secrets.token_urlsafe(18)
        self._armed.add(token)
        return token

    def disarm(self, token: str) -> None:
        self._armed.discard(token)

    def url(self, token: str) -> str:
        return f"http://127.0.0.1:{self.port}/{token}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_SECONDS):
                head = await reader.readuntil(b"\r\n\r\n")
                if len(head) > MAX_HEADER_BYTES:
                    raise ValueError("headers too large")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
                length = int(headers.get("content-length", "0"))
                if not 0 <= length <= MAX_BODY_BYTES:
                    raise ValueError("bad content-length")
                body = await reader.readexactly(length)
            token, _, path = target.lstrip("/").partition("/")
            path = "/" + path.partition("?")[0]
            if method != "POST" or path != "/v1/messages":
                await _error(writer, 404, "not_found_error", "the primer answers only POST /v1/messages")
            elif token not in self._armed:
                log.warning("a model request reached the primer outside priming; refused")
                await _error(writer, 403, "permission_error", "breakglass primer: not priming this CLI")
            else:
                await _reply(writer, _model(body))
        except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _model(body: bytes) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        model = json.loads(body).get("model")
        if isinstance(model, str):
            return model
    return "primer"


async def _error(writer: asyncio.StreamWriter, status: int, kind: str, message: str) -> None:
    payload = json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
    writer.write(f"HTTP/1.1 {status} Error\r\ncontent-type: application/json\r\ncontent-length: {len(payload)}\r\n"
                 "connection: close\r\n\r\n".encode() + payload)
    await writer.drain()


async def _reply(writer: asyncio.StreamWriter, model: str) -> None:
    """One text block as a Messages API event stream; zero usage, so the
    CLI's cost counter stays where it was."""
    usage = {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    events = [
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_primer", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": usage}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": REPLY}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": 0}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    body = b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events)
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                 + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
    await writer.drain()
