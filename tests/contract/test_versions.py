"""The supported versions (README) are enforced where they matter, in one line.

A real nats-server from the locked wheel passes the check; an older server
cannot be run here, so a socket that speaks the first lines of the NATS
protocol plays one (the only way to reach that refusal).
"""

from __future__ import annotations

import asyncio
import json
import stat
import sys
from pathlib import Path

import pytest

from agent_runner import cli
from agent_runner.bootstrap import check_cli
from agent_runner.settings import Settings
from eventbus import bus
from events.config import ConfigError
from tests.fakeapi.cli import find_claude

REPO = Path(__file__).resolve().parents[2]


async def test_the_locked_nats_server_is_supported(nats_url: str) -> None:
    nc = await bus.connect(nats_url, "version-check")
    try:
        version = nc.connected_server_version
        assert (version.major, version.minor) >= bus.MIN_SERVER_VERSION
    finally:
        await nc.close()


async def _old_server(version: str) -> tuple[asyncio.Server, int]:
    async def speak(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        info = {"server_id": "old", "version": version, "proto": 1, "max_payload": 1048576, "headers": True}
        writer.write(b"INFO " + json.dumps(info).encode() + b"\r\n")
        await writer.drain()
        while line := await reader.readline():
            if line.startswith(b"PING"):
                writer.write(b"PONG\r\n")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(speak, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_an_older_nats_server_is_refused_in_one_line() -> None:
    server, port = await _old_server("2.10.22")
    async with server:
        with pytest.raises(bus.UnsupportedServer) as refused:
            await bus.connect(f"nats://127.0.0.1:{port}", "version-check")
    message = str(refused.value)
    assert "\n" not in message and "2.10.22" in message and "2.12" in message
    assert isinstance(refused.value, ConfigError)  # services exit 2 with that line


def _fake_cli(tmp_path: Path, prints: str) -> str:
    script = tmp_path / "claude"
    script.write_text(f"#!{sys.executable}\nprint({prints!r})\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def _settings(tmp_path: Path, claude_bin: str) -> Settings:
    return Settings(nats_url="nats://127.0.0.1:1", data_dir=tmp_path, claude_bin=claude_bin)


async def test_an_older_cli_stops_the_runner_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        await check_cli(_settings(tmp_path, _fake_cli(tmp_path, "2.0.77 (Claude Code)")))
    assert "\n" not in str(refused.value) and "2.0.77" in str(refused.value) and "2.1.0" in str(refused.value)


async def test_a_cli_that_cannot_say_its_version_is_only_warned_about(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    await check_cli(_settings(tmp_path, str(tmp_path / "missing-claude")))
    await check_cli(_settings(tmp_path, _fake_cli(tmp_path, "not a version")))
    assert sum("--version" in r.getMessage() for r in caplog.records) == 2


async def test_the_pinned_cli_is_supported_and_matches_the_lock() -> None:
    claude = find_claude()
    if claude is None:
        pytest.skip("the Claude Code CLI is not installed (scripts/test-deps.sh)")
    version = await cli.installed_version(str(claude))
    assert version is not None and version >= cli.MIN_CLI_VERSION
    lock = json.loads((REPO / "tools/claude-cli/package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/@anthropic-ai/claude-code"]["version"]
    assert ".".join(map(str, version)) == pinned


def test_make_refuses_an_old_python_in_one_line(tmp_path: Path) -> None:
    import subprocess

    checker = (REPO / "scripts/check_python.py").read_text().replace("MINIMUM = (3, 11)", "MINIMUM = (99, 0)")
    (tmp_path / "check.py").write_text(checker)
    done = subprocess.run([sys.executable, str(tmp_path / "check.py")], capture_output=True, text=True)
    assert done.returncode != 0 and done.stderr.count("\n") == 1 and "Python 99.0" in done.stderr
    ok = subprocess.run([sys.executable, str(REPO / "scripts/check_python.py")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
