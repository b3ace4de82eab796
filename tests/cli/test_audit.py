"""`breakglass sessions | replay | tail | verify` against a real JetStream,
run as the real command (a subprocess), the way an auditor runs them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from events.codec import encode
from events.commands import SessionRecord
from events.kinds import Outcome, TextSaid, TurnEnded, UserPrompted, VerbPhase, VerbProgressed
from eventbus.log import EventLog
from eventbus.topology import session_key
from events.types import new_id, utcnow

BREAKGLASS = [sys.executable, "-m", "breakglass"]


def run(nats_url: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "BREAKGLASS_NATS_URL": nats_url, "NO_COLOR": "1"}
    return subprocess.run([*BREAKGLASS, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
async def recorded(js, topology) -> str:
    sid, turn = new_id(), new_id()
    kv = await js.key_value(topology.kv_bucket)
    await kv.create(session_key(sid), encode(SessionRecord(session_id=sid, created_by="alice", created_at=utcnow())))
    log = EventLog(js, topology)
    for event in (
        UserPrompted(session_id=sid, turn_id=turn, by="alice", text="why is the disk full?"),
        TextSaid(session_id=sid, turn_id=turn, by="agent", text="/var/log is 38 GB."),
        VerbProgressed(session_id=sid, by="alice", verb="status", phase=VerbPhase.DONE, exit_code=0, stdout="running"),
        TurnEnded(session_id=sid, turn_id=turn, by="agent-runner", outcome=Outcome.OK),
    ):
        await log.append(event)
    return sid


async def test_sessions_lists_creator_title_and_outcome(nats_url, recorded):
    out = await asyncio.to_thread(run, nats_url, "sessions")
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if recorded in line)
    assert "alice" in line and "why is the disk full?" in line and "4 events" in line and "ok" in line


async def test_replay_renders_who_and_when(nats_url, recorded):
    out = await asyncio.to_thread(run, nats_url, "replay", recorded)
    assert out.returncode == 0, out.stderr
    assert "alice" in out.stdout and "why is the disk full?" in out.stdout and "/var/log is 38 GB." in out.stdout
    assert "power verb `status` done exit 0" in out.stdout and "turn ended (ok)" in out.stdout
    assert "\x1b[" not in out.stdout  # NO_COLOR and not a terminal


async def test_an_export_verifies_and_tampering_is_named(nats_url, recorded, tmp_path: Path):
    out = await asyncio.to_thread(run, nats_url, "replay", recorded, "--format", "jsonl")
    export = tmp_path / "s.jsonl"
    export.write_text(out.stdout)
    ok = await asyncio.to_thread(run, nats_url, "verify", str(export))
    assert ok.returncode == 0 and ok.stdout.startswith("OK")

    lines = out.stdout.splitlines(keepends=True)
    flipped = tmp_path / "flipped.jsonl"
    flipped.write_text("".join(lines[:2] + [lines[2].replace("38 GB", "39 GB")] + lines[3:]))
    bad = await asyncio.to_thread(run, nats_url, "verify", str(flipped))
    assert bad.returncode == 1 and "TAMPERED" in bad.stdout and "event 2" in bad.stdout

    removed = tmp_path / "removed.jsonl"
    removed.write_text("".join(lines[:2] + lines[3:]))
    bad = await asyncio.to_thread(run, nats_url, "verify", str(removed))
    assert bad.returncode == 1 and "event 2" in bad.stdout


async def test_verify_refuses_what_is_not_an_export(nats_url, tmp_path: Path):
    junk = tmp_path / "junk.jsonl"
    junk.write_bytes(b"\xff\x00 not json\n")
    out = await asyncio.to_thread(run, nats_url, "verify", str(junk))
    assert out.returncode == 2 and "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    missing = await asyncio.to_thread(run, nats_url, "verify", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


async def test_replay_follow_shows_new_events_live(nats_url, recorded, js, topology):
    env = {"PATH": os.environ["PATH"], "BREAKGLASS_NATS_URL": nats_url, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*BREAKGLASS, "replay", recorded, "--follow"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        lines: list[str] = []
        while not any("caught up" in line for line in lines):
            lines.append(await asyncio.to_thread(proc.stdout.readline))
        await EventLog(js, topology).append(TextSaid(session_id=recorded, by="agent", text="live line"))
        deadline = time.monotonic() + 10
        while not any("live line" in line for line in lines) and time.monotonic() < deadline:
            lines.append(await asyncio.to_thread(proc.stdout.readline))
        assert any("live line" in line for line in lines)
    finally:
        proc.terminate()
        proc.wait(5)


async def test_the_tools_say_so_in_one_line_when_nats_is_down():
    out = await asyncio.to_thread(run, "nats://127.0.0.1:1", "sessions")
    assert out.returncode != 0 and "cannot reach NATS" in out.stderr and "Traceback" not in out.stderr
    bad = await asyncio.to_thread(run, "nats://127.0.0.1:1", "replay", "not-a-session")
    assert bad.returncode != 0 and "not a session id" in bad.stderr


async def test_tail_shows_each_new_event_once_with_its_sequence(nats_url, recorded, js, topology):
    """From now on only: what was stored before is not shown, each new event
    once, numbered by its stream sequence (eventbus.follow, no consumer)."""
    env = {"PATH": os.environ["PATH"], "BREAKGLASS_NATS_URL": nats_url, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*BREAKGLASS, "tail", "--session", recorded], env=env, stdout=subprocess.PIPE, text=True)
    try:
        lines: list[str] = []
        while not any("following what is stored after" in line for line in lines):
            lines.append(await asyncio.to_thread(proc.stdout.readline))
        log = EventLog(js, topology)
        seqs = [await log.append(TextSaid(session_id=recorded, by="agent", text=f"tailed {i}")) for i in range(3)]
        deadline = time.monotonic() + 10
        while not any("tailed 2" in line for line in lines) and time.monotonic() < deadline:
            lines.append(await asyncio.to_thread(proc.stdout.readline))
        shown = "".join(lines)
        assert "38 GB" not in shown  # stored before: not tailed
        for i, seq in enumerate(seqs):
            assert shown.count(f"tailed {i}") == 1 and f"#{seq} " in shown, shown
        assert (await js.stream_info(topology.events_stream)).state.consumer_count == 0
    finally:
        proc.terminate()
        proc.wait(5)
