"""eventbus.verb_records: the one reader of a press's idempotency record,
against a real KV bucket (both the gateway and pve-executor wait with it)."""

from __future__ import annotations

import asyncio

from eventbus import verb_records
from events.codec import encode
from events.commands import VerbDone, VerbRunning, VerbResult
from eventbus.topology import verb_key
from events.types import new_id
from events.verbs import Verb

RESULT = VerbResult(verb=Verb.RESET, exit_code=0, stdout="reset")


def running(request_id: str) -> VerbRunning:
    return VerbRunning(request_id=request_id, verb=Verb.RESET)


def done(request_id: str) -> VerbDone:
    return VerbDone(request_id=request_id, verb=Verb.RESET, result=RESULT)


async def test_a_missing_or_unreadable_record_reads_as_none(js, topology):
    kv = await js.key_value(topology.kv_bucket)
    assert await verb_records.read(kv, "never-used") is None
    await kv.put(verb_key("garbled"), b'{"request_id": 1}')
    assert await verb_records.read(kv, "garbled") is None


async def test_only_a_done_record_has_a_result():
    rid = new_id()
    assert verb_records.result_of(None) is None
    assert verb_records.result_of(running(rid)) is None
    assert verb_records.result_of(done(rid)) == RESULT


async def test_a_done_record_answers_at_once(js, topology):
    kv = await js.key_value(topology.kv_bucket)
    await kv.put(verb_key("press"), encode(done(new_id())))
    assert await verb_records.wait_done(kv, "press", 0) == RESULT


async def test_a_running_record_is_no_answer_once_the_time_is_up(js, topology):
    kv = await js.key_value(topology.kv_bucket)
    await kv.put(verb_key("press"), encode(running(new_id())))
    assert await verb_records.wait_done(kv, "press", 0) is None


async def test_the_wait_ends_with_the_result_when_the_first_press_finishes(js, topology):
    kv = await js.key_value(topology.kv_bucket)
    rid = new_id()
    await kv.put(verb_key("press"), encode(running(rid)))
    waiting = asyncio.create_task(verb_records.wait_done(kv, "press", 60))
    await asyncio.sleep(0)  # it reads `running` first
    await kv.put(verb_key("press"), encode(done(rid)))
    assert await waiting == RESULT
