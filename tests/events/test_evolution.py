"""Schema evolution: events recorded by earlier versions still decode and
render. The rule (events/kinds.py): within a schema version, changes are
additive only. tests/fixtures/events-v1.jsonl was written by version 1 and
is never regenerated: if this test fails, the change was not additive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from events import codec, transcript
from events.commands import VerbDone, VerbRecord, VerbRunning
from events.kinds import EPHEMERAL_KINDS, KINDS
from events.verbs import Verb

V1 = Path(__file__).resolve().parents[1] / "fixtures" / "events-v1.jsonl"
LINES = V1.read_bytes().splitlines()


@pytest.mark.parametrize("line", LINES, ids=[str(i) for i in range(len(LINES))])
def test_every_v1_event_still_decodes_and_renders(line):
    event = codec.decode_event(line)
    assert event.v == 1
    assert transcript.describe(event)


def test_the_v1_fixture_covers_every_stored_kind_of_v1():
    recorded = {codec.decode_event(line).__struct_config__.tag for line in LINES}
    v1_kinds = {"user", "session", "text", "tool", "tool_result", "approval", "verb", "result", "usage",
                "error", "cancelled", "interrupted", "turn_end", "alert", "diagnosis"}
    assert recorded == v1_kinds
    assert v1_kinds <= set(KINDS) - EPHEMERAL_KINDS


def test_an_event_with_a_field_from_a_newer_minor_version_still_decodes():
    newer = LINES[2].replace(b'"text":', b'"added_later":{"x":1},"text":', 1)
    assert codec.decode_event(newer).text == "Checking memory first."


def test_a_kind_from_a_newer_version_is_skipped_by_readers():
    assert codec.decode_event_lenient(b'{"kind":"heartbeat","v":1,"by":"x"}') is None
    rendered = transcript.markdown("s", [(1, LINES[0]), (2, b'{"kind":"heartbeat","v":1,"by":"x"}')])
    assert "the devvm is not answering" in rendered and "heartbeat" not in rendered


# --- stores: sessions written before per-writer subjects -----------------------------


async def test_a_session_from_before_per_writer_subjects_reads_and_continues_as_one_chain(js, topology):
    """An old store holds a session on `breakglass.events.session.<id>` (no
    writer). After the upgrade readers still find those events, the writers
    continue the same hash chain on their own subjects, and the export
    verifies: old lines without a writer, new ones held to their writers."""
    from eventbus import export
    from events import subjects
    from eventbus.log import EventLog
    from events.types import new_id

    sid = new_id()
    old = EventLog(js, topology)  # what earlier versions wrote: the single subject
    for line in LINES[:3]:
        event = codec.decode_event(line)
        event.session_id = sid
        await old.append(event)
    await EventLog(js, topology, writer="agent-runner").append(codec.decode_event(LINES[2]).__class__(
        session_id=sid, by="agent", text="and now on the writer's own subject"))
    await EventLog(js, topology, writer="gateway").append(codec.decode_event(LINES[0]).__class__(
        session_id=sid, by="alice", text="thanks"))

    records = await EventLog(js, topology).read(sid)
    assert [r.writer for r in records] == ["", "", "", "agent-runner", "gateway"]
    stored = (await js.stream_info(topology.events_stream, subjects_filter=subjects.SESSION_EVENTS_EVERY)).state.subjects
    assert set(stored) >= {subjects.session_events(sid), subjects.session_writer(sid, "agent-runner")}
    assert (await EventLog(js, topology).head(sid))[0] == records[-1].seq
    assert export.verify_jsonl(export.jsonl(sid, records)) is None


# KV records as the version before VerbRecord was a union wrote them (verbatim).
_RUNNING_BEFORE = (b'{"request_id":"6f1c1c9e-3c5b-4a53-9d55-6a2f7d1f4a10","verb":"reset",'
                   b'"state":"running","result":null}')
_DONE_BEFORE = (b'{"request_id":"6f1c1c9e-3c5b-4a53-9d55-6a2f7d1f4a10","verb":"reset","state":"done",'
                b'"result":{"verb":"reset","exit_code":0,"stdout":"ok\\n","stderr":"","rejected":false,"lost":false}}')


def test_verb_records_written_before_the_union_decode_to_their_member():
    running = codec.decode(_RUNNING_BEFORE, VerbRecord)
    done = codec.decode(_DONE_BEFORE, VerbRecord)
    assert isinstance(running, VerbRunning) and running.verb == Verb.RESET
    assert isinstance(done, VerbDone) and (done.result.exit_code, done.result.stdout) == (0, "ok\n")


def test_verb_records_are_written_as_before_so_older_readers_read_them():
    done = json.loads(codec.encode(codec.decode(_DONE_BEFORE, VerbRecord)))
    assert done == json.loads(_DONE_BEFORE)
    running = json.loads(codec.encode(codec.decode(_RUNNING_BEFORE, VerbRecord)))
    assert running == {k: v for k, v in json.loads(_RUNNING_BEFORE).items() if k != "result"}  # absent reads as null


def test_a_done_verb_record_without_its_result_is_refused():
    with pytest.raises(codec.ContractError):
        codec.decode(_DONE_BEFORE.split(b',"result"')[0] + b"}", VerbRecord)
