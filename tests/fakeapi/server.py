"""A fake Anthropic Messages API for running the REAL Claude Code CLI offline.

    from tests.fakeapi import FakeAnthropic, text, bash

    with FakeAnthropic() as api:              # listens on 127.0.0.1:<free port>
        api.script(bash("echo hi"), text("done"))
        run the CLI with ANTHROPIC_BASE_URL=api.url
        api.requests            every request, in arrival order (RecordedRequest)
        api.model_requests      the POST /v1/messages ones that consumed a reply

The server is plain asyncio (stdlib only) on its own event loop in a daemon
thread, so it works the same from sync tests and from pytest-asyncio tests.
HTTP/1.1 with keep-alive; streamed answers use chunked transfer encoding.

Routes:
  POST /v1/messages                 (any query, e.g. ?beta=true) scripted reply,
                                    SSE when the body says "stream": true, else JSON
  POST /v1/messages/count_tokens    {"input_tokens": <rough count>}
  HEAD /api/hello                   200 (the CLI's connectivity probe, sent only
                                    without CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC)
  HEAD / GET anything else          200 with {} (recorded in `api.unknown`)
  POST anything else                200 with {} (recorded in `api.unknown`)

Replies are consumed in order, one per /v1/messages request; when the script is
empty `api.default` answers (a callable taking the request, or a reply).
Run standalone for manual poking: `python -m tests.fakeapi.server --text "hi"`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .replies import (
    Hang,
    HttpError,
    Message,
    Reply,
    StreamError,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
    text,
)

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    529: "Overloaded",
}


# Routes the CLI calls besides /v1/messages that need nothing but a 200.
KNOWN_HARMLESS = {"/api/hello"}


@dataclass
class RecordedRequest:
    """One request as the fake API saw it."""

    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    at: float = field(default_factory=time.monotonic)
    reply: Any = None  # the reply object that answered it (for /v1/messages)
    status: int | None = None
    finished: bool = False  # the whole response was written
    disconnected: bool = False  # the client went away before the response ended

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    @property
    def is_messages(self) -> bool:
        return self.method == "POST" and self.path == "/v1/messages"

    @property
    def stream(self) -> bool:
        body = self.json
        return bool(isinstance(body, dict) and body.get("stream"))

    @property
    def model(self) -> str | None:
        body = self.json
        return body.get("model") if isinstance(body, dict) else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        body = self.json
        return list(body.get("messages") or []) if isinstance(body, dict) else []

    @property
    def tools(self) -> list[str]:
        body = self.json
        if not isinstance(body, dict):
            return []
        return [t.get("name", "") for t in body.get("tools") or []]

    def blocks(self, type_: str) -> list[dict[str, Any]]:
        """Every content block of `type_` in the sent messages (e.g. "tool_result")."""
        out = []
        for m in self.messages:
            content = m.get("content")
            if isinstance(content, list):
                out.extend(b for b in content if isinstance(b, dict) and b.get("type") == type_)
        return out

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        return self.blocks("tool_result")

    def text_of(self) -> str:
        """All the text the request carries (message texts and tool_result contents)."""
        parts: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, str):
                parts.append(node)
            elif isinstance(node, list):
                for x in node:
                    walk(x)
            elif isinstance(node, dict):
                if node.get("type") in ("text", None) and isinstance(node.get("text"), str):
                    parts.append(node["text"])
                walk(node.get("content"))

        for m in self.messages:
            walk(m.get("content"))
        return "\n".join(parts)


def _default_reply(req: RecordedRequest) -> Reply:
    return text("OK")


class FakeAnthropic:
    """The fake Messages API. Use as a context manager (or start()/stop())."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, default: Reply | None = None) -> None:
        self.host = host
        self.port = port
        self.default: Reply = default if default is not None else _default_reply
        self.requests: list[RecordedRequest] = []
        self.unknown: list[RecordedRequest] = []
        self.errors: list[str] = []  # scripting mistakes, answered as HTTP 500
        self._script: deque[Reply] = deque()
        self._lock = threading.RLock()  # re-entrant: wait_for predicates read api.* under it
        self._cond = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeAnthropic:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # pragma: no cover - bind failure
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-anthropic", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if not loop or not thread or loop.is_closed():
            return

        async def shutdown() -> None:
            if self._server:
                self._server.close()
            for task in list(self._conns):
                task.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
            if self._server:
                await self._server.wait_closed()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        except Exception:  # pragma: no cover
            pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeAnthropic:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ scripting

    def script(self, *replies: Reply) -> FakeAnthropic:
        """Append replies; each /v1/messages request consumes the next one."""
        with self._lock:
            self._script.extend(replies)
        return self

    def clear(self) -> None:
        """Forget the script and every recorded request."""
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.unknown.clear()
            self.errors.clear()

    @property
    def pending(self) -> int:
        """Replies scripted but not consumed yet."""
        with self._lock:
            return len(self._script)

    @property
    def model_requests(self) -> list[RecordedRequest]:
        """POST /v1/messages requests, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.is_messages]

    def wait_for(self, predicate: Callable[[FakeAnthropic], bool], timeout: float = 10.0) -> bool:
        """Block until predicate(api) is true (re-checked on every request event)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    async def until(self, predicate: Callable[[FakeAnthropic], bool], timeout: float = 10.0) -> bool:
        """`wait_for` for async tests: polls without blocking the caller's event loop."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def wait_requests(self, n: int, timeout: float = 10.0) -> bool:
        """Block until `n` /v1/messages requests have arrived."""
        return self.wait_for(lambda a: sum(r.is_messages for r in a.requests) >= n, timeout)

    def _next_reply(self, req: RecordedRequest) -> Reply:
        with self._lock:
            reply = self._script.popleft() if self._script else self.default
        # A callable reply computes the answer from the request (may return another callable).
        try:
            for _ in range(5):
                if isinstance(reply, (Message, HttpError, Hang, StreamError)):
                    return reply
                if not callable(reply):
                    break
                reply = reply(req)
            problem = f"not a reply: {reply!r}"
        except Exception as exc:  # a broken callable must not kill the connection silently
            problem = f"the scripted callable raised {exc!r}"
        with self._lock:
            self.errors.append(problem)
        return HttpError(500, f"fakeapi: {problem}")

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # ------------------------------------------------------------ HTTP

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            while True:
                req = await self._read_request(reader)
                if req is None:
                    break
                with self._lock:
                    self.requests.append(req)
                self._notify()
                keep = await self._dispatch(req, reader, writer)
                self._notify()
                if not keep or req.headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._conns.discard(task)
            try:
                writer.close()
            except Exception:  # pragma: no cover
                pass

    async def _read_request(self, reader: asyncio.StreamReader) -> RecordedRequest | None:
        line = await reader.readline()
        while line in (b"\r\n", b"\n"):
            line = await reader.readline()
        if not line:
            return None
        try:
            method, target, _version = line.decode("latin-1").strip().split(" ", 2)
        except ValueError:
            return None
        headers: dict[str, str] = {}
        while True:
            h = await reader.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size_line = await reader.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body = b"".join(parts)
        elif headers.get("content-length"):
            body = await reader.readexactly(int(headers["content-length"]))
        split = urlsplit(target)
        return RecordedRequest(
            method=method.upper(),
            target=target,
            path=split.path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers=headers,
            body=body,
        )

    @staticmethod
    def _head(status: int, headers: dict[str, str]) -> bytes:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _send_json(
        self,
        req: RecordedRequest,
        writer: asyncio.StreamWriter,
        status: int,
        payload: Any,
        extra: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "Content-Length": str(len(data)),
            "request-id": "req_" + uuid.uuid4().hex[:24],
            "Date": email.utils.formatdate(usegmt=True),  # what `breakglass doctor` measures clock skew by
            **(extra or {}),
        }
        req.status = status
        writer.write(self._head(status, headers) + (b"" if req.method == "HEAD" else data))
        await writer.drain()
        req.finished = True

    async def _dispatch(self, req: RecordedRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        if req.is_messages:
            reply = self._next_reply(req)
            req.reply = reply
            return await self._answer_messages(req, reply, reader, writer)
        if req.method == "POST" and req.path == "/v1/messages/count_tokens":
            body = req.json if isinstance(req.json, dict) else {}
            await self._send_json(req, writer, 200, {"input_tokens": max(1, len(json.dumps(body)) // 4)})
            return True
        if req.path not in KNOWN_HARMLESS:
            with self._lock:
                self.unknown.append(req)
        await self._send_json(req, writer, 200, {})
        return True

    # ------------------------------------------------------------ /v1/messages

    async def _answer_messages(
        self, req: RecordedRequest, reply: Reply, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        if isinstance(reply, HttpError):
            await self._send_json(req, writer, reply.status, reply.body(), reply.headers)
            return True
        model = req.model or "claude-sonnet-fake"
        if not req.stream:
            if isinstance(reply, Hang):
                await asyncio.sleep(reply.seconds)
                reply = text(reply.chunk * max(1, int(reply.seconds / max(reply.interval, 0.001))))
            if isinstance(reply, StreamError):
                reply = text(reply.before)
            assert isinstance(reply, Message)
            if reply.first_delay:
                await asyncio.sleep(reply.first_delay)
            await self._send_json(req, writer, 200, _whole_message(reply, model))
            return True
        return await self._stream(req, reply, model, reader, writer)

    async def _stream(
        self, req: RecordedRequest, reply: Reply, model: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        if isinstance(reply, Message) and reply.first_delay:
            await asyncio.sleep(reply.first_delay)
        req.status = 200
        writer.write(
            self._head(
                200,
                {
                    "Content-Type": "text/event-stream; charset=utf-8",
                    "Cache-Control": "no-cache",
                    "Transfer-Encoding": "chunked",
                    "request-id": "req_" + uuid.uuid4().hex[:24],
                },
            )
        )

        async def send(event: str, data: dict[str, Any], delay: float = 0.0) -> None:
            if delay:
                await asyncio.sleep(delay)
            if reader.at_eof() or writer.is_closing():
                raise ConnectionResetError("client went away")
            frame = f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
            writer.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            await writer.drain()

        try:
            if isinstance(reply, Message):
                for event, data, is_delta in _events(reply, model):
                    await send(event, data, reply.delay if is_delta else 0.0)
            elif isinstance(reply, Hang):
                msg = Message([TextBlock([reply.chunk])])
                await send("message_start", _message_start(msg, model))
                await send("content_block_start", _block_start(0, TextBlock([])))
                deadline = time.monotonic() + reply.seconds
                while time.monotonic() < deadline:
                    delta = {"type": "text_delta", "text": reply.chunk}
                    await send("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
                    await asyncio.sleep(reply.interval)
                await send("content_block_stop", {"type": "content_block_stop", "index": 0})
                await send("message_delta", _message_delta(msg))
                await send("message_stop", {"type": "message_stop"})
            elif isinstance(reply, StreamError):
                msg = Message([TextBlock([reply.before])])
                await send("message_start", _message_start(msg, model))
                await send("content_block_start", _block_start(0, TextBlock([])))
                await send(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": reply.before}},
                )
                await send("error", {"type": "error", "error": {"type": reply.error_type, "message": reply.message}})
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                req.finished = True
                return False  # close the connection: the stream broke
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            req.finished = True
            return True
        except (ConnectionError, RuntimeError):
            req.disconnected = True
            return False


# ---------------------------------------------------------------- SSE payloads


def _usage(reply: Message, output: int = 1) -> dict[str, int]:
    return {
        "input_tokens": reply.usage.get("input_tokens", 10),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output,
    }


def _message_start(reply: Message, model: str) -> dict[str, Any]:
    return {
        "type": "message_start",
        "message": {
            "id": reply.id,
            "type": "message",
            "role": "assistant",
            "model": reply.model or model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage(reply),
        },
    }


def _block_start(index: int, block: Any) -> dict[str, Any]:
    if isinstance(block, ToolUseBlock):
        cb: dict[str, Any] = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
    elif isinstance(block, ThinkingBlock):
        cb = {"type": "thinking", "thinking": "", "signature": ""}
    else:
        cb = {"type": "text", "text": ""}
    return {"type": "content_block_start", "index": index, "content_block": cb}


def _message_delta(reply: Message) -> dict[str, Any]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": reply.final_stop_reason(), "stop_sequence": None},
        "usage": {"output_tokens": reply.usage.get("output_tokens", 5)},
    }


def _json_pieces(obj: dict[str, Any], n: int) -> list[str]:
    s = json.dumps(obj)
    n = max(1, min(n, len(s)))
    step = -(-len(s) // n)
    return [s[i : i + step] for i in range(0, len(s), step)]


def _events(reply: Message, model: str) -> Iterable[tuple[str, dict[str, Any], bool]]:
    """(event name, data, is_delta) for one streamed message."""
    yield "message_start", _message_start(reply, model), False
    yield "ping", {"type": "ping"}, False
    for i, block in enumerate(reply.blocks):
        yield "content_block_start", _block_start(i, block), False
        if isinstance(block, TextBlock):
            deltas = [{"type": "text_delta", "text": c} for c in block.chunks]
        elif isinstance(block, ThinkingBlock):
            deltas = [{"type": "thinking_delta", "thinking": c} for c in block.chunks]
            deltas.append({"type": "signature_delta", "signature": block.signature})
        else:
            deltas = [{"type": "input_json_delta", "partial_json": ""}]
            deltas += [{"type": "input_json_delta", "partial_json": p} for p in _json_pieces(block.input, block.pieces)]
        for d in deltas:
            yield "content_block_delta", {"type": "content_block_delta", "index": i, "delta": d}, True
        yield "content_block_stop", {"type": "content_block_stop", "index": i}, False
    yield "message_delta", _message_delta(reply), False
    yield "message_stop", {"type": "message_stop"}, False


def _whole_message(reply: Message, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for block in reply.blocks:
        if isinstance(block, TextBlock):
            content.append({"type": "text", "text": block.text})
        elif isinstance(block, ThinkingBlock):
            content.append({"type": "thinking", "thinking": block.thinking, "signature": block.signature})
        else:
            content.append({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input})
    return {
        "id": reply.id,
        "type": "message",
        "role": "assistant",
        "model": reply.model or model,
        "content": content,
        "stop_reason": reply.final_stop_reason(),
        "stop_sequence": None,
        "usage": _usage(reply, reply.usage.get("output_tokens", 5)),
    }


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - manual use
    import argparse

    p = argparse.ArgumentParser(description="Run the fake Anthropic Messages API until Ctrl-C.")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--text", default="OK", help="the answer to every request")
    p.add_argument("--delay", type=float, default=0.0, help="seconds between text deltas")
    args = p.parse_args(argv)
    api = FakeAnthropic(port=args.port, default=lambda req: text(args.text, delay=args.delay))
    with api:
        print(f"ANTHROPIC_BASE_URL={api.url}", flush=True)
        try:
            while True:
                time.sleep(1)
                for r in api.unknown:
                    print("unknown route:", r.method, r.target, flush=True)
                api.unknown.clear()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":  # pragma: no cover
    main()
