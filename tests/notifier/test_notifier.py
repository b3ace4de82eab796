"""The notifier against real parts: a real nats-server, events appended with
the real EventLog, a real HTTP receiver on loopback, the notifier's own
follow loop (in-process, and once as the documented process), connected as
the read-only user where it matters (it may create no consumer)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from breakglass.natsd import free_port
from events import subjects
from events.kinds import (
    ApprovalRequested,
    CliSessionBound,
    Outcome,
    TextSaid,
    ToolCalled,
    TurnEnded,
    TurnFailed,
    UsageReported,
    UserPrompted,
    VerbPhase,
    VerbProgressed,
)
from eventbus.log import EventLog
from events.types import new_id
from events.verbs import Verb
from examples.notifier.main import serve
from tests.notifier.rig import REPO, Receiver, running, settings_for, settled, state_of

BASE = "https://breakglass.example/"


def bodies(receiver: Receiver) -> dict[int, dict]:
    """JSON notifications received, by the stream sequence of their event."""
    out = {}
    for r in receiver.snapshot():
        body = json.loads(r.body)
        out[body["event"]["id"]] = body
    return out


async def stored(js, topology, seq: int) -> dict:  # type: ignore[no-untyped-def]
    msg = await js.get_msg(topology.events_stream, seq)
    return json.loads(msg.data)


async def test_each_trigger_posts_one_json_notification_and_nothing_else_posts(js, topology, nats_url, receiver):
    settings = settings_for(nats_url, receiver.url, link_base=BASE)
    log = EventLog(js, topology)
    sid, turn = new_id(), new_id()
    env = {"session_id": sid, "turn_id": turn}
    async with running(settings):
        first = await log.append(UserPrompted(**env, by="alice", text="disk is full"))
        await log.append(CliSessionBound(**env, by="agent", cli_session_id="cli-1"))
        await log.append(TextSaid(**env, by="agent", text="Looking."))
        await log.append(ToolCalled(**env, by="agent", name="Bash", input={"command": "df -h"}))
        await log.append(VerbProgressed(**env, by="agent", verb=Verb.STATUS, phase=VerbPhase.DONE, exit_code=0))
        approval = await log.append(
            ApprovalRequested(**env, by="agent", approval_id="ap-1", verb=Verb.RESET, reason="the agent asks to reset")
        )
        await log.append(VerbProgressed(**env, by="alice", verb=Verb.RESET, phase=VerbPhase.RUNNING))
        done = VerbProgressed(**env, by="alice", verb=Verb.RESET, phase=VerbPhase.DONE, exit_code=0)
        verb = await log.append(done)
        await log.append_audit("verb", done)  # the audit copy: not a second notification
        error = await log.append(TurnFailed(**env, by="agent-runner", error="claude exited with status 1"))
        failed = await log.append(TurnEnded(**env, by="agent-runner", outcome=Outcome.ERROR))
        await log.append(UsageReported(**env, by="agent"))
        await log.append(UserPrompted(session_id=sid, turn_id=new_id(), by="alice", text="try again"))  # not a start
        ok = await log.append(TurnEnded(session_id=sid, by="agent-runner", outcome=Outcome.OK))
        await receiver.wait_for(6)
        await settled(js, settings, ok)

    got = bodies(receiver)
    assert sorted(got) == sorted([first, approval, verb, error, failed, ok]), "exactly the triggers, once each"
    assert len(receiver.snapshot()) == 6
    for r in receiver.snapshot():
        assert r.path == "/notify/topic" and r.headers["content-type"] == "application/json"
    expected = {
        first: ("user", "breakglass: session started", 3),
        approval: ("approval", "breakglass: approve reset?", 5),
        verb: ("verb", "breakglass: VM reset done", 3),
        error: ("error", "breakglass: error", 4),
        failed: ("turn_end", "breakglass: turn failed (error)", 4),
        ok: ("turn_end", "breakglass: turn finished", 2),
    }
    for seq, (kind, title, priority) in expected.items():
        body = got[seq]
        assert (body["kind"], body["title"], body["priority"]) == (kind, title, priority), body
        assert body["session_id"] == sid
        assert body["link"] == f"{BASE}#/session/{sid}"
        assert body["event"] == {**(await stored(js, topology, seq)), "id": seq}
        # the session's chain head at that event: what `breakglass verify --anchor` takes
        link = (await js.get_msg(topology.events_stream, seq)).headers["Breakglass-Chain"]
        assert body["anchor"] == f"{seq}:{link}"
    assert "disk is full" in got[first]["message"] and "alice" in got[first]["message"]
    assert "exit 0" in got[verb]["message"]


async def test_ntfy_format_posts_plain_text_with_ntfy_headers(js, topology, nats_url, receiver):
    settings = settings_for(nats_url, receiver.url, format="ntfy", link_base=BASE, token="tk_test")
    log = EventLog(js, topology)
    sid = new_id()
    async with running(settings):
        await log.append(UserPrompted(session_id=sid, by="Jürgen", text="VM hangs"))
        await log.append(ApprovalRequested(session_id=sid, by="agent", approval_id="a", verb=Verb.CYCLE))
        last = await log.append(TurnEnded(session_id=sid, by="agent-runner", outcome=Outcome.TIMEOUT))
        await receiver.wait_for(3)
        await settled(js, settings, last)

    got = {r.headers["title"]: r for r in receiver.snapshot()}
    assert set(got) == {"breakglass: session started", "breakglass: approve cycle?", "breakglass: turn failed (timeout)"}
    for r in got.values():
        assert r.path == "/notify/topic"
        assert r.headers["content-type"].startswith("text/plain")
        assert r.headers["click"] == f"{BASE}#/session/{sid}"
        assert r.headers["authorization"] == "Bearer tk_test"
    start, approval, timeout = (
        got["breakglass: session started"], got["breakglass: approve cycle?"], got["breakglass: turn failed (timeout)"]
    )
    assert (start.headers["priority"], start.headers["tags"]) == ("3", "sos")
    assert start.body.decode("utf-8") == "Jürgen started a recovery session: VM hangs"
    assert (approval.headers["priority"], approval.headers["tags"]) == ("5", "question")
    assert "the agent asks to cycle the VM" in approval.body.decode()
    assert (timeout.headers["priority"], timeout.headers["tags"]) == ("4", "rotating_light")


async def test_a_receiver_that_is_down_gets_the_notification_once_it_is_back(js, topology, nats_url):
    receiver = Receiver(free_port())  # nothing listens on its port yet: connection refused
    settings = settings_for(nats_url, receiver.url)
    log = EventLog(js, topology)
    async with running(settings):
        seq = await log.append(VerbProgressed(session_id=new_id(), by="alice", verb=Verb.CYCLE,
                                              phase=VerbPhase.DONE, exit_code=0))
        await redelivered(js, settings, at_least=2)
        receiver.start()
        try:
            await receiver.wait_for(1)
            await settled(js, settings, seq)
            await asyncio.sleep(1.0)  # longer than the largest backoff: a duplicate would show now
            [request] = receiver.snapshot()
        finally:
            receiver.stop()
    assert json.loads(request.body)["event"]["id"] == seq


async def test_a_pending_notification_survives_a_notifier_restart(js, topology, nats_url):
    receiver = Receiver(free_port())
    settings = settings_for(nats_url, receiver.url)
    log = EventLog(js, topology)
    async with running(settings):
        seq = await log.append(TurnFailed(session_id=new_id(), by="agent-runner", error="boom"))
        await redelivered(js, settings, at_least=1)
    receiver.start()  # back up while no notifier runs
    try:
        async with running(settings):
            await receiver.wait_for(1)
            await settled(js, settings, seq)
            await asyncio.sleep(1.0)
        [request] = receiver.snapshot()
    finally:
        receiver.stop()
    assert json.loads(request.body)["event"]["id"] == seq


async def test_a_4xx_is_not_retried_and_a_5xx_is(js, topology, nats_url, receiver):
    settings = settings_for(nats_url, receiver.url)
    log = EventLog(js, topology)
    sid = new_id()
    async with running(settings):
        receiver.status = 400
        bad = await log.append(TurnFailed(session_id=sid, by="agent-runner", error="refused by the receiver"))
        await settled(js, settings, bad)
        await asyncio.sleep(0.6)  # longer than the largest backoff: a retry would show now
        assert len(receiver.snapshot()) == 1

        receiver.respond = lambda n: 503 if n <= 3 else 200  # requests 2 and 3 fail, 4 succeeds
        flaky = await log.append(TurnFailed(session_id=sid, by="agent-runner", error="a flaky receiver"))
        await receiver.wait_for(4)
        await settled(js, settings, flaky)
        await asyncio.sleep(0.6)
    ids = [json.loads(r.body)["event"]["id"] for r in receiver.snapshot()]
    assert ids == [bad, flaky, flaky, flaky]


async def test_malformed_and_unknown_payloads_are_skipped_and_the_notifier_keeps_working(
    js, topology, nats_url, receiver
):
    settings = settings_for(nats_url, receiver.url)
    log = EventLog(js, topology)
    sid = new_id()
    subject = subjects.session_events(sid)
    async with running(settings):
        for raw in (
            b"not json at all",
            b"\xff\xfe binary",
            b'["a", "list"]',
            b'{"kind": "error", "error": 42, "by": "x"}',  # a known kind that does not validate
            b'{"kind": "turn_end", "by": "x", "session_id": "not-a-uuid"}',
        ):
            await js.publish(subject, raw, stream=topology.events_stream)
        await js.publish(subject, b'{"kind": "from_the_future", "v": 1, "by": "x"}', stream=topology.events_stream)
        good = await log.append(TurnFailed(session_id=sid, by="agent-runner", error="after the poison"))
        await receiver.wait_for(1)
        await settled(js, settings, good)
        await asyncio.sleep(0.3)
    [request] = receiver.snapshot()
    assert json.loads(request.body)["event"]["id"] == good
    assert state_of(settings).pending == {}, "poison is skipped at once, not retried"


async def test_history_is_not_notified_on_first_start_unless_asked(js, topology, nats_url, receiver):
    log = EventLog(js, topology)
    sid = new_id()
    old = await log.append(UserPrompted(session_id=sid, by="alice", text="before the notifier existed"))

    settings = settings_for(nats_url, receiver.url)  # deliver=new
    async with running(settings):
        new = await log.append(TurnEnded(session_id=sid, by="agent-runner", outcome=Outcome.OK))
        await settled(js, settings, new)
    assert sorted(bodies(receiver)) == [new]

    # Restarted asking for history: the existing state keeps its position (no replay, no error).
    async with running(settings_for(nats_url, receiver.url, deliver="all")):
        later = await log.append(TurnFailed(session_id=sid, by="agent-runner", error="later"))
        await settled(js, settings, later)
    assert sorted(bodies(receiver)) == [new, later]

    # A new notifier (its own state) that asks for all of it gets the history once.
    history = Receiver().start()
    try:
        everything = settings_for(nats_url, history.url, deliver="all", state_file="history.json")
        async with running(everything):
            await settled(js, everything, later)
        assert sorted(bodies(history)) == [old, new, later]
    finally:
        history.stop()


async def test_min_priority_drops_quiet_notifications(js, topology, nats_url, receiver):
    settings = settings_for(nats_url, receiver.url, min_priority=3)
    log = EventLog(js, topology)
    sid = new_id()
    async with running(settings):
        await log.append(TurnEnded(session_id=sid, by="agent-runner", outcome=Outcome.OK))
        loud = await log.append(TurnEnded(session_id=sid, by="agent-runner", outcome=Outcome.INTERRUPTED))
        await settled(js, settings, loud)
    assert sorted(bodies(receiver)) == [loud]


async def test_a_session_that_opens_with_a_verb_still_reports_its_first_prompt(js, topology, nats_url, receiver):
    settings = settings_for(nats_url, receiver.url)
    log = EventLog(js, topology)
    sid, other = new_id(), new_id()
    async with running(settings):
        await log.append(VerbProgressed(session_id=sid, by="alice", verb=Verb.STATUS, phase=VerbPhase.DONE, exit_code=0))
        elsewhere = await log.append(UserPrompted(session_id=other, by="bob", text="another session's prompt"))
        first = await log.append(UserPrompted(session_id=sid, by="alice", text="now the agent"))
        last = await log.append(UserPrompted(session_id=sid, by="alice", text="and again"))
        await settled(js, settings, last)
    got = bodies(receiver)
    assert sorted(got) == sorted([first, elsewhere])  # this session's first prompt, and the other session's
    assert got[first]["title"] == "breakglass: session started" and "now the agent" in got[first]["message"]


async def test_a_notifier_started_before_the_stream_exists_waits_for_it(js, nats_url, receiver):
    from eventbus.topology import Topology, ensure

    settings = settings_for(nats_url, receiver.url)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(settings, stop, ready=ready, poll_seconds=0.2))
    try:
        await asyncio.sleep(0.3)
        assert not ready.is_set() and not task.done()
        t = Topology()
        await ensure(js, t)
        await asyncio.wait_for(ready.wait(), 10)
        seq = await EventLog(js, t).append(TurnFailed(session_id=new_id(), by="agent-runner", error="late"))
        [request] = await receiver.wait_for(1)
        assert json.loads(request.body)["event"]["id"] == seq
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def redelivered(js, settings, *, at_least: int, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Wait until a notification has failed more than `at_least` times."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = state_of(settings)
        if state is not None and max(state.pending.values(), default=0) > at_least:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the notification was not retried")


# --- the process -------------------------------------------------------------------------


def clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BREAKGLASS_")}
    env.update(overrides)
    return env


def test_a_bad_setting_is_one_line_and_exit_2():
    for env, named in (
        ({}, "BREAKGLASS_NOTIFY_URL"),
        ({"BREAKGLASS_NOTIFY_URL": "http://127.0.0.1:9/", "BREAKGLASS_NOTIFY_FORMAT": "xml"}, "BREAKGLASS_NOTIFY_FORMAT"),
        ({"BREAKGLASS_NOTIFY_URL": "http://127.0.0.1:9/"}, "BREAKGLASS_NATS_URL"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "examples.notifier"], cwd=REPO, env=clean_env(**env),
            capture_output=True, text=True, timeout=30,
        )
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("notifier: ") and named in lines[0], result.stderr


async def test_the_documented_command_notifies_and_stops_on_sigterm(js, topology, nats_url, receiver, tmp_path):
    state = tmp_path / "state.json"
    env = clean_env(BREAKGLASS_NATS_URL=nats_url, BREAKGLASS_NOTIFY_URL=receiver.url,
                    BREAKGLASS_NOTIFY_FORMAT="ntfy", BREAKGLASS_NOTIFY_LINK_BASE=BASE,
                    BREAKGLASS_NOTIFY_STATE_FILE=str(state))
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.notifier"], cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not state.exists():  # its state is written once it knows where to start
            assert proc.poll() is None and time.monotonic() < deadline, "the notifier did not start"
            await asyncio.sleep(0.1)
        sid = new_id()
        await EventLog(js, topology).append(TurnFailed(session_id=sid, by="agent-runner", error="crash"))
        [request] = await receiver.wait_for(1, timeout=20)
        assert request.headers["title"] == "breakglass: error"
        assert request.headers["click"] == f"{BASE}#/session/{sid}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch):  # type: ignore[no-untyped-def]
    """The in-process notifier takes explicit settings; nothing here reads the
    developer's own BREAKGLASS_* variables."""
    for name in [n for n in os.environ if n.startswith("BREAKGLASS_")]:
        monkeypatch.delenv(name)


async def test_a_state_file_that_is_not_one_is_refused_in_one_line(js, topology, nats_url, receiver, tmp_path):
    """Never guessed at: a notifier that cannot read its place would notify
    the whole history again, or skip what it missed."""
    from examples.notifier.position import PositionError

    for text in ("not json", '{"stream": "OTHER", "position": 1, "pending": {}}', '{"position": "x"}'):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(PositionError, match="bad.json"):
            await serve(settings_for(nats_url, receiver.url, state_file=str(bad)), asyncio.Event())
    assert receiver.snapshot() == []
