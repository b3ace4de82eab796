"""History: the sessions index, paging, and exports that verify offline."""

from __future__ import annotations

import httpx
import pytest

from eventbus import export


@pytest.fixture
async def client(gateway):
    async with httpx.AsyncClient(base_url=gateway.base, headers=gateway.headers, timeout=10) as c:
        yield c


async def session_with_turns(client, prompts) -> str:
    sid = (await client.post("/api/session")).json()["session_id"]
    for p in prompts:
        assert (await client.post(f"/api/session/{sid}/prompt", json={"prompt": p})).status_code == 202
        assert (await client.post(f"/api/session/{sid}/cancel")).json() == {"cancelled": True}
    return sid


async def test_sessions_are_listed_newest_first_with_title_state_and_counts(client):
    older = await session_with_turns(client, ["disk is full\nmore detail", "second"])
    newer = await session_with_turns(client, [])
    await client.post(f"/api/session/{newer}/prompt", json={"prompt": "oom again"})
    listed = (await client.get("/api/sessions")).json()["sessions"]
    assert [s["session_id"] for s in listed] == [newer, older]
    new, old = listed
    assert (new["title"], new["state"], new["event_count"], new["created_by"]) == ("oom again", "running", 1, "operator")
    assert (old["title"], old["state"], old["event_count"], old["outcome"]) == ("disk is full", "idle", 6, "cancelled")
    assert old["last_event_at"] >= old["created_at"]
    assert [s["session_id"] for s in (await client.get("/api/sessions?q=DISK")).json()["sessions"]] == [older]
    assert (new["verbs_run"], old["verbs_run"]) == (0, 0)


async def test_the_index_counts_the_verbs_that_ran_in_each_session(client, gateway):
    import nats

    from events.kinds import VerbPhase, VerbProgressed
    from eventbus.log import EventLog

    sid = await session_with_turns(client, ["reboot it"])
    nc = await nats.connect(gateway.nats_url)
    try:
        log = EventLog(nc.jetstream())
        for verb, rejected in (("status", False), ("cycle", False), ("reset", True)):
            done = VerbProgressed(session_id=sid, by="alice", verb=verb, phase=VerbPhase.DONE, exit_code=0, rejected=rejected)
            await log.append(done)
            await log.append_audit("verb", done)
        await log.append_audit("verb", VerbProgressed(by="bob", verb="status", phase=VerbPhase.DONE, exit_code=0))
    finally:
        await nc.close()
    listed = (await client.get("/api/sessions")).json()["sessions"]
    assert next(s for s in listed if s["session_id"] == sid)["verbs_run"] == 2


async def test_events_page_with_ids_and_a_cursor(client):
    sid = await session_with_turns(client, ["a", "b"])
    first = (await client.get(f"/api/session/{sid}/events?limit=4")).json()
    assert [e["kind"] for e in first["events"]] == ["user", "cancelled", "turn_end", "user"]
    rest = (await client.get(f"/api/session/{sid}/events?after={first['next_after']}")).json()
    assert [e["kind"] for e in rest["events"]] == ["cancelled", "turn_end"]
    assert first["events"][-1]["id"] < rest["events"][0]["id"] == rest["events"][0]["id"]
    assert (await client.get(f"/api/session/{sid}/events?after={rest['next_after']}")).json()["events"] == []


async def test_a_jsonl_export_verifies_and_catches_a_flipped_byte_and_a_deleted_event(client):
    sid = await session_with_turns(client, ["restart nginx", "and php-fpm"])
    answer = await client.get(f"/api/session/{sid}/export?format=jsonl")
    assert answer.status_code == 200 and "attachment" in answer.headers["content-disposition"]
    lines = answer.content.splitlines(keepends=True)
    assert len(lines) == 7 and export.verify_jsonl(lines) is None

    flipped = list(lines)
    assert flipped[3].count(b'"v":1') == 1
    flipped[3] = flipped[3].replace(b'"v":1', b'"v":2')  # one byte
    assert "event 3" in export.verify_jsonl(flipped)

    deleted = lines[:2] + lines[3:]
    assert export.verify_jsonl(deleted) is not None
    cut_tail = lines[:-1]
    assert "header says 6" in export.verify_jsonl(cut_tail)


async def test_a_markdown_export_reads_like_a_transcript(client):
    sid = await session_with_turns(client, ["why is / full?"])
    text = (await client.get(f"/api/session/{sid}/export?format=md")).text
    assert f"# breakglass session {sid}" in text
    assert "> why is / full?" in text and "**stopped** by operator" in text and "turn ended (cancelled)" in text


async def test_history_routes_404_for_unknown_sessions(client):
    unknown = "00000000-0000-4000-8000-000000000000"
    for path in (f"/api/session/{unknown}/events", f"/api/session/{unknown}/export"):
        assert (await client.get(path)).status_code == 404
    assert (await client.get(f"/api/session/{unknown}/export?format=pdf")).status_code == 422
