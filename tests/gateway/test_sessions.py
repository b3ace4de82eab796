"""Session routes against a real gateway and a real JetStream (no runner):
what the gateway itself guarantees."""

from __future__ import annotations

import httpx
import nats
import pytest

from events import subjects
from events.codec import decode_command
from events.commands import StartTurn
from eventbus.topology import RUNNER_CONSUMER, Topology
from tests.sse import collect


@pytest.fixture
async def client(gateway):
    async with httpx.AsyncClient(base_url=gateway.base, headers=gateway.headers, timeout=10) as c:
        yield c


async def open_session(client) -> str:
    answer = await client.post("/api/session")
    assert answer.status_code == 200
    return answer.json()["session_id"]


def has(kind):
    return lambda frames: any(f.kind == kind for f in frames)


def caught_up(frames):
    return any(f.event == "caught-up" for f in frames)


async def test_a_new_session_streams_caught_up_first(client):
    sid = await open_session(client)
    frames = await collect(client, f"/api/session/{sid}/stream", until=lambda f: len(f) >= 1)
    assert frames[0].event == "caught-up" and frames[0].data == "{}"


async def test_prompt_records_user_and_queues_one_command(client, gateway):
    sid = await open_session(client)
    answer = await client.post(f"/api/session/{sid}/prompt", json={"prompt": "why is it slow?"})
    assert answer.status_code == 202
    body = answer.json()
    assert body["status"] == "started"
    frames = await collect(client, f"/api/session/{sid}/stream", until=caught_up)
    user = frames[0]
    assert user.kind == "user" and user.json["text"] == "why is it slow?" and user.json["by"] == "operator"
    assert user.id == str(user.json["id"]) and user.json["turn_id"] == body["turn_id"]
    assert frames[1].event == "caught-up"

    nc = await nats.connect(gateway.nats_url)
    try:
        sub = await nc.jetstream().pull_subscribe_bind(RUNNER_CONSUMER, stream=Topology().commands_stream)
        (msg,) = await sub.fetch(1, timeout=2)
        command = decode_command(msg.data)
        assert isinstance(command, StartTurn)
        assert (command.session_id, command.turn_id, command.model, command.by) == (sid, body["turn_id"], "sonnet", "operator")
    finally:
        await nc.close()


async def test_a_second_prompt_while_a_turn_runs_is_409(client):
    sid = await open_session(client)
    assert (await client.post(f"/api/session/{sid}/prompt", json={"prompt": "one"})).status_code == 202
    busy = await client.post(f"/api/session/{sid}/prompt", json={"prompt": "two"})
    assert busy.status_code == 409 and "already running" in busy.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [{"prompt": ""}, {"prompt": "   \n"}, {"prompt": "x" * (32 * 1024 + 1)}, {"prompt": "é" * 20000},
     {"prompt": "hi", "model": "gpt-9"}, {}, {"prompt": 5}],
)
async def test_bad_prompts_are_422_and_take_no_lock(client, body):
    sid = await open_session(client)
    assert (await client.post(f"/api/session/{sid}/prompt", json=body)).status_code == 422
    assert (await client.post(f"/api/session/{sid}/prompt", json={"prompt": "ok"})).status_code == 202


async def test_unknown_and_malformed_session_ids(client):
    unknown = "00000000-0000-4000-8000-000000000000"
    assert (await client.post(f"/api/session/{unknown}/prompt", json={"prompt": "hi"})).status_code == 404
    assert (await client.post(f"/api/session/{unknown}/cancel")).status_code == 404
    assert (await client.get(f"/api/session/{unknown}/stream")).status_code == 404
    for bad in ("not-a-uuid", "..%2F..%2Fetc", "6CFAA6BB-D10D-4842-8572-2D78D3EEEE8C"):
        assert (await client.post(f"/api/session/{bad}/prompt", json={"prompt": "hi"})).status_code in (404, 422)


async def test_cancel_before_any_runner_picked_the_turn_up_ends_it(client):
    sid = await open_session(client)
    assert (await client.post(f"/api/session/{sid}/cancel")).json() == {"cancelled": False}
    await client.post(f"/api/session/{sid}/prompt", json={"prompt": "one"})
    assert (await client.post(f"/api/session/{sid}/cancel")).json() == {"cancelled": True}
    frames = await collect(client, f"/api/session/{sid}/stream", until=has("turn_end"))
    assert [f.kind for f in frames if f.kind] == ["user", "cancelled", "turn_end"]
    assert frames[-1].json["outcome"] == "cancelled"
    assert (await client.post(f"/api/session/{sid}/prompt", json={"prompt": "two"})).status_code == 202


async def test_resume_by_last_event_id_or_after_has_no_gap_and_no_duplicate(client):
    sid = await open_session(client)
    for n in range(3):
        await client.post(f"/api/session/{sid}/prompt", json={"prompt": f"p{n}"})
        await client.post(f"/api/session/{sid}/cancel")
    everything = await collect(client, f"/api/session/{sid}/stream", until=caught_up)
    ids = [int(f.id) for f in everything if f.id]
    assert len(ids) == 9 and ids == sorted(ids)
    cut = ids[3]
    by_header = await collect(client, f"/api/session/{sid}/stream", headers={"Last-Event-ID": str(cut)},
                              until=caught_up)
    by_query = await collect(client, f"/api/session/{sid}/stream?after={cut}",
                             until=caught_up)
    for resumed in (by_header, by_query):
        assert [int(f.id) for f in resumed if f.id] == ids[4:]
    assert (await client.get(f"/api/session/{sid}/stream", headers={"Last-Event-ID": "abc"})).status_code == 400


async def test_live_frames_are_sent_without_id_once_caught_up(client, gateway):
    import asyncio

    from events.codec import encode
    from events.kinds import TextDelta

    sid = await open_session(client)
    nc = await nats.connect(gateway.nats_url)

    async def publish_soon() -> None:
        for _ in range(50):
            await nc.publish(subjects.live(sid), encode(TextDelta(session_id=sid, by="agent", text="tok")))
            await asyncio.sleep(0.05)

    task = asyncio.create_task(publish_soon())
    try:
        frames = await collect(client, f"/api/session/{sid}/stream", until=has("delta"))
    finally:
        task.cancel()
        await nc.close()
    assert frames[0].event == "caught-up"
    delta = frames[-1]
    assert delta.id is None and delta.json["text"] == "tok"


async def test_only_live_kinds_of_this_session_reach_browsers_on_the_live_subject(client, gateway):
    import asyncio

    from events.codec import encode
    from events.kinds import TextDelta, TextSaid

    sid, other = await open_session(client), await open_session(client)
    nc = await nats.connect(gateway.nats_url)

    async def publish_soon() -> None:
        for _ in range(50):
            await nc.publish(subjects.live(sid), b"not json")
            await nc.publish(subjects.live(sid), encode(TextSaid(session_id=sid, by="agent", text="stored kind")))
            await nc.publish(subjects.live(sid), encode(TextDelta(session_id=other, by="agent", text="elsewhere")))
            await nc.publish(subjects.live(sid), encode(TextDelta(session_id=sid, by="agent", text="tok")))
            await asyncio.sleep(0.05)

    task = asyncio.create_task(publish_soon())
    try:
        frames = await collect(client, f"/api/session/{sid}/stream", until=lambda f: sum(x.kind == "delta" for x in f) >= 3)
    finally:
        task.cancel()
        await nc.close()
    live = [f for f in frames if f.event == "message"]
    assert {f.json["text"] for f in live} == {"tok"}


async def test_a_prompt_that_outlasts_its_pending_lease_is_ended_once_and_answered_503(client, gateway, monkeypatch):
    """A gateway stalled between the lock and the published command (a
    reaper freed the lock meanwhile) learns it when it marks the lock
    queued: it ends the turn (one `interrupted`, one `turn_end`, after the
    `user`) and says so, instead of a 202 for a turn no runner will run.
    The stall cannot be produced on cue with real parts: the lock is born
    lapsed, and a reaper runs right after `user` is stored."""
    from eventbus import locks
    from events.kinds import UserPrompted
    from eventbus.log import EventLog

    monkeypatch.setattr(locks, "PENDING_LEASE_SECONDS", -1.0)
    append = EventLog.append

    async def append_then_reap(self, event, *, msg_id=None):  # type: ignore[no-untyped-def]
        seq = await append(self, event, msg_id=msg_id)
        if isinstance(event, UserPrompted):
            kv = await self._js.key_value(Topology().kv_bucket)
            assert await locks.TurnLocks(kv, self).reap_lapsed() == [event.session_id]
        return seq

    monkeypatch.setattr(EventLog, "append", append_then_reap)
    sid = await open_session(client)
    answer = await client.post(f"/api/session/{sid}/prompt", json={"prompt": "stalled"})
    assert answer.status_code == 503, answer.text
    assert "interrupted before it could start" in answer.json()["detail"]
    monkeypatch.undo()
    frames = await collect(client, f"/api/session/{sid}/stream", until=caught_up)
    assert [f.kind for f in frames if f.kind] == ["user", "interrupted", "turn_end"]
    assert (await client.post(f"/api/session/{sid}/prompt", json={"prompt": "again"})).status_code == 202
