"""One idempotency key, one run, one answer (SPEC §3): a retried press never
runs a mutating verb twice, even after the bus's de-duplication window
(these commands are published without `Nats-Msg-Id`, as if it had passed)."""

from __future__ import annotations

import asyncio
from msgspec.structs import replace

from events.codec import decode
from events.commands import VerbDone, VerbRecord
from events.kinds import VerbPhase
from eventbus.topology import verb_key
from events.verbs import Verb
from tests.pve_host.host import PveHost
from tests.pve_executor.rig import audit_of, executor, request, settings_for


async def test_the_same_key_twice_runs_once_and_answers_the_same(nats_url, nc, js, topology, sshd_server,
                                                                 pve: PveHost):
    async with executor(settings_for(nats_url, sshd_server)):
        first = await request(nc, js, Verb.RESET, idempotency_key="press-1")
        again = await request(nc, js, Verb.RESET, idempotency_key="press-1")
    assert first.result.exit_code == 0
    assert again.result == first.result
    assert pve.calls().count("reset 102") == 1

    kv = await js.key_value(topology.kv_bucket)
    record = decode((await kv.get(verb_key("press-1"))).value, VerbRecord)
    assert record == VerbDone(request_id=first.command.request_id, verb=first.result.verb, result=first.result)
    # The repeat is answered and recorded (its own `done`), but never `running`.
    assert [e.phase for e in await audit_of(js, first.command.request_id)] == [VerbPhase.RUNNING, VerbPhase.DONE]
    repeat = await audit_of(js, again.command.request_id)
    assert [(e.phase, e.exit_code) for e in repeat] == [(VerbPhase.DONE, 0)]


async def test_the_same_key_pressed_concurrently_runs_once_and_both_get_its_result(nats_url, nc, js, topology,
                                                                                   sshd_server, pve: PveHost):
    pve.knob("delay_stop", 1)  # the cycle is still running when the repeat arrives
    async with executor(settings_for(nats_url, sshd_server)):
        first, again = await asyncio.gather(
            request(nc, js, Verb.CYCLE, idempotency_key="press-2"),
            request(nc, js, Verb.CYCLE, idempotency_key="press-2"),
        )
    assert first.result.exit_code == 0 and first.result.rejected is False
    assert again.result == first.result
    assert pve.calls().count("start 102") == 1 and pve.calls().count("stop 102 --timeout 45") == 1


async def test_different_keys_run_separately(nats_url, nc, js, topology, sshd_server, pve: PveHost):
    async with executor(settings_for(nats_url, sshd_server)):
        a = await request(nc, js, Verb.STATUS, idempotency_key="a")
        b = await request(nc, js, Verb.STATUS, idempotency_key="b")
    assert a.result.exit_code == b.result.exit_code == 0
    assert pve.calls() == ["status 102", "status 102"]


async def test_a_key_reused_for_another_verb_is_refused(nats_url, nc, js, topology, sshd_server, pve: PveHost):
    async with executor(settings_for(nats_url, sshd_server)):
        first = await request(nc, js, Verb.STATUS, idempotency_key="press-3")
        other = await request(nc, js, Verb.CYCLE, idempotency_key="press-3")
    assert first.result.exit_code == 0
    assert (other.result.exit_code, other.result.rejected) == (64, True)
    assert "first used for `status`" in other.result.stderr
    assert pve.calls() == ["status 102"]


async def test_a_repeat_that_outwaits_its_bound_is_told_the_first_is_still_running(nats_url, nc, js, topology,
                                                                                   sshd_server, pve: PveHost):
    pve.knob("delay_reset", 2)
    settings = replace(settings_for(nats_url, sshd_server), duplicate_wait_seconds=0.3)
    async with executor(settings):
        first_task = asyncio.create_task(request(nc, js, Verb.RESET, idempotency_key="press-4"))
        await asyncio.sleep(0.5)
        again = await request(nc, js, Verb.RESET, idempotency_key="press-4")
        first = await first_task
    assert (again.result.exit_code, again.result.rejected) == (75, True)
    assert again.result.stderr.startswith(f"already running: request {first.command.request_id}")
    assert first.result.exit_code == 0
    assert pve.calls().count("reset 102") == 1
