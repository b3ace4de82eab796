"""The agent's MCP server over real pipes, against a real Unix socket.

`python -m agent_runner.mcp_server SOCK` runs as a subprocess with an
environment holding nothing but PATH (no NATS, no credential); the test
plays the runner's side of the socket and records what reached it.
"""

from __future__ import annotations

import json
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_runner.mcp_server import TOOL_NAME

VERBS = ["status", "forensics", "reset", "stop", "start", "cycle"]


class FakeRunner:
    """The runner's end of the socket: answers each line with `answer(line)`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.received: list[bytes] = []
        self.answer = lambda asked: {"verb": asked["verb"], "exit_code": 0, "stdout": "status: running",
                                     "summary": f"verb {asked['verb']}: exit 0"}
        self.release = threading.Event()
        self.release.set()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            line = lines.readline()
            self.received.append(line)
            self.release.wait(30)
            answer = self.answer(json.loads(line))
            if answer is not None:
                conn.sendall(answer if isinstance(answer, bytes) else json.dumps(answer).encode() + b"\n")

    def close(self) -> None:
        self._sock.close()


class McpClient:
    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent_runner.mcp_server", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin"},
        )
        self._lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._next_id = 0

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)

    def send(self, message: dict[str, Any] | bytes) -> None:
        assert self.process.stdin is not None
        data = message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n"
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        line = self._lines.get(timeout=timeout)
        assert line.endswith(b"\n") and line.count(b"\n") == 1, line
        return json.loads(line)

    def nothing_more(self, wait: float = 0.3) -> bool:
        try:
            self._lines.get(timeout=wait)
        except queue.Empty:
            return True
        return False

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        answer = self.recv()
        assert answer["id"] == self._next_id and answer["jsonrpc"] == "2.0"
        return answer

    def call(self, arguments: Any, name: str = TOOL_NAME) -> dict[str, Any]:
        return self.request("tools/call", {"name": name, "arguments": arguments})

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # Unix socket names are limited to ~108 bytes; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="bg-mcp-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def runner(short_dir) -> Iterator[FakeRunner]:
    fake = FakeRunner(short_dir / "pve.sock")
    try:
        yield fake
    finally:
        fake.release.set()
        fake.close()


@pytest.fixture
def client(runner) -> Iterator[McpClient]:
    c = McpClient(str(runner.path))
    try:
        yield c
    finally:
        c.close()


def text_of(result: dict[str, Any]) -> str:
    content = result["content"]
    assert isinstance(content, list) and all(block["type"] == "text" for block in content)
    return "\n".join(block["text"] for block in content)


def test_the_handshake_and_the_one_tool(client):
    init = client.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                         "clientInfo": {"name": "claude-code", "version": "2"}})["result"]
    assert init["protocolVersion"] == "2025-06-18"
    assert "tools" in init["capabilities"] and init["serverInfo"]["name"] == "breakglass"
    client.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert client.nothing_more()
    tools = client.request("tools/list")["result"]["tools"]
    assert [t["name"] for t in tools] == ["pve"]
    schema = tools[0]["inputSchema"]
    assert schema["properties"]["verb"]["enum"] == VERBS
    assert schema["required"] == ["verb"] and schema["additionalProperties"] is False
    assert client.request("ping")["result"] == {}


def test_an_unknown_protocol_version_gets_one_the_server_speaks(client):
    assert client.request("initialize", {"protocolVersion": "1999-01-01"})["result"]["protocolVersion"] == "2025-11-25"


def test_a_call_sends_exactly_the_verb_and_relays_the_answer(client, runner):
    result = client.call({"verb": "status"})["result"]
    assert runner.received == [b'{"verb":"status"}\n']
    assert result["isError"] is False
    assert text_of(result) == "verb status: exit 0\n--- stdout ---\nstatus: running"


@pytest.mark.parametrize("answer", [
    {"verb": "reset", "exit_code": 0, "denied": True, "summary": "verb reset: denied by alice; it did not run"},
    {"verb": "reset", "exit_code": 1, "stderr": "qm: failed", "summary": "verb reset: exit 1"},
    {"verb": "reset", "exit_code": 0, "rejected": True},
], ids=["denied", "non-zero exit", "rejected"])
def test_a_denied_failed_or_rejected_verb_is_a_tool_error(client, runner, answer):
    runner.answer = lambda asked: answer
    result = client.call({"verb": "reset"})["result"]
    assert result["isError"] is True
    if answer.get("summary"):
        assert answer["summary"] in text_of(result)


@pytest.mark.parametrize("arguments", [
    {"verb": "status;reboot"}, {"verb": "STATUS"}, {"verb": "reboot"}, {"verb": ""}, {"verb": 1}, {},
    {"verb": "status", "session_id": "6cfaa6bb-d10d-4842-8572-2d78d3eeee8c"}, {"verb": "status", "vmid": 100},
    {"command": "qm stop 102"}, "status", None, ["status"],
])
def test_anything_but_one_bare_verb_is_refused_before_the_socket(client, runner, arguments):
    result = client.call(arguments)["result"]
    assert result["isError"] is True and "refused" in text_of(result)
    assert runner.received == []


def test_an_unknown_tool_is_a_json_rpc_error(client, runner):
    answer = client.call({"verb": "status"}, name="bash")
    assert answer["error"]["code"] == -32602 and "result" not in answer
    assert runner.received == []


@pytest.mark.parametrize("method", ["resources/list", "prompts/list", "tools/run", "shell/exec", "initialize/x"])
def test_an_unknown_method_is_method_not_found(client, method):
    assert client.request(method, {})["error"]["code"] == -32601


@pytest.mark.parametrize("line,code", [
    (b"{not json\n", -32700),
    (b'{"id": 1, "method": "ping"}\n', -32600),  # no jsonrpc member
    (b'{"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"}\n', -32600),
    (b'{"jsonrpc": "2.0", "id": 3, "method": 7}\n', -32600),
    (b'[{"jsonrpc": "2.0", "id": 4, "method": "ping"}]\n', -32600),
    (b'{"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": "status"}\n', -32600),
])
def test_a_malformed_message_is_an_error_and_the_server_goes_on(client, line, code):
    client.send(line)
    assert client.recv()["error"]["code"] == code
    assert client.request("ping")["result"] == {}


def test_unknown_notifications_are_ignored(client):
    client.send({"jsonrpc": "2.0", "method": "notifications/whatever", "params": {}})
    client.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}})
    assert client.nothing_more()
    assert client.request("ping")["result"] == {}


def test_a_slow_verb_does_not_block_other_requests(client, runner):
    runner.release.clear()  # the runner holds its answer, like an approval waiting for the operator
    client.send({"jsonrpc": "2.0", "id": "slow", "method": "tools/call",
                 "params": {"name": TOOL_NAME, "arguments": {"verb": "reset"}}})
    assert client.request("ping")["result"] == {}
    assert client.request("tools/list")["result"]["tools"][0]["name"] == "pve"
    runner.release.set()
    answer = client.recv()
    assert answer["id"] == "slow" and answer["result"]["isError"] is False


def test_no_runner_listening_is_a_clear_tool_error(short_dir):
    client = McpClient(str(short_dir / "nobody.sock"))
    try:
        result = client.call({"verb": "status"})["result"]
    finally:
        client.close()
    assert result["isError"] is True and "could not be reached" in text_of(result) and "did not run" in text_of(result)


@pytest.mark.parametrize("reply", [b"", b"not json\n", b'{"verb": "reboot", "exit_code": 0}\n', b'{"verb": "status"'],
                         ids=["closed", "junk", "bad verb", "cut"])
def test_a_broken_answer_from_the_socket_is_a_tool_error(client, runner, reply):
    runner.answer = lambda asked: reply
    result = client.call({"verb": "status"})["result"]
    assert result["isError"] is True and "whether it ran is unknown" in text_of(result)


def test_it_needs_exactly_one_argument():
    for args in ([], ["a", "b"]):
        process = subprocess.run([sys.executable, "-m", "agent_runner.mcp_server", *args],
                                 capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert process.returncode == 2 and "usage" in process.stderr


def test_it_exits_when_the_cli_closes_stdin(client):
    client.process.stdin.close()
    assert client.process.wait(5) == 0
