"""Mutating verbs run one at a time per VM, across replicas (SPEC §2): a
second press while one runs is refused at once with `busy`, never queued
behind it; read-only verbs are never held up; an abandoned lock lapses."""

from __future__ import annotations

import asyncio
import time

import pytest

from events.codec import encode
from events.kinds import VerbPhase
from eventbus.topology import vm_lock_key
from events.verbs import Verb
from pve_executor.records import VmLock
from tests.pve_host.host import PveHost
from tests.pve_executor.rig import audit_of, executor, request, settings_for


@pytest.mark.parametrize("replicas", [1, 2])
async def test_two_concurrent_mutating_verbs_one_runs_one_is_busy(nats_url, nc, js, topology, sshd_server,
                                                                  pve: PveHost, replicas):
    pve.knob("delay_reset", 1.5)
    async with executor(settings_for(nats_url, sshd_server), replicas=replicas):
        answers = await asyncio.gather(request(nc, js, Verb.RESET, by="alice"), request(nc, js, Verb.CYCLE, by="bob"))
    ran = [a for a in answers if not a.result.rejected]
    busy = [a for a in answers if a.result.rejected]
    assert len(ran) == 1 and len(busy) == 1, [a.result for a in answers]
    assert ran[0].result.exit_code == 0
    b = busy[0].result
    assert b.exit_code == 75
    assert b.stderr.startswith("busy: another mutating verb is running on VM 102")
    assert f"request {ran[0].command.request_id}" in b.stderr
    assert busy[0].seconds < 1.0  # refused at once, not queued behind the running verb
    assert [e.phase for e in await audit_of(js, busy[0].command.request_id)] == [VerbPhase.DONE]
    mutations = [c for c in pve.calls() if c.split()[0] in {"reset", "stop", "start"}]
    assert len(mutations) == 1


async def test_the_lock_is_released_after_the_verb(nats_url, nc, js, topology, sshd_server, pve):
    async with executor(settings_for(nats_url, sshd_server)):
        first = await request(nc, js, Verb.STOP)
        second = await request(nc, js, Verb.START)
    assert (first.result.exit_code, second.result.exit_code) == (0, 0)
    kv = await js.key_value(topology.kv_bucket)
    with pytest.raises(Exception):
        await kv.get(vm_lock_key(102))


async def test_read_only_verbs_are_not_held_up_by_a_mutation(nats_url, nc, js, topology, sshd_server, pve):
    pve.knob("delay_reset", 1.5)
    async with executor(settings_for(nats_url, sshd_server)):
        reset = asyncio.create_task(request(nc, js, Verb.RESET))
        await asyncio.sleep(0.4)
        status = await request(nc, js, Verb.STATUS)
        assert not reset.done()
        await reset
    assert (status.result.exit_code, status.result.rejected) == (0, False)


async def test_a_fresh_lock_held_elsewhere_means_busy(nats_url, nc, js, topology, sshd_server, pve):
    kv = await js.key_value(topology.kv_bucket)
    await kv.create(vm_lock_key(102), encode(VmLock(request_id="r-elsewhere", verb="cycle", by="carol",
                                                    taken_at=time.time())))
    async with executor(settings_for(nats_url, sshd_server)):
        answer = await request(nc, js, Verb.RESET)
        status = await request(nc, js, Verb.STATUS)
    assert (answer.result.exit_code, answer.result.rejected) == (75, True)
    assert "(cycle, requested by carol, request r-elsewhere)" in answer.result.stderr
    assert status.result.exit_code == 0
    assert pve.calls() == ["status 102"]


@pytest.mark.parametrize("stale", [
    encode(VmLock(request_id="r-dead", verb="cycle", by="carol", taken_at=time.time() - 3600)),
    b"not a lock",
])
async def test_an_abandoned_lock_is_taken_over(nats_url, nc, js, topology, sshd_server, pve, stale):
    kv = await js.key_value(topology.kv_bucket)
    await kv.create(vm_lock_key(102), stale)
    async with executor(settings_for(nats_url, sshd_server)):
        answer = await request(nc, js, Verb.RESET)
    assert (answer.result.exit_code, answer.result.rejected) == (0, False)
    assert pve.calls()[-1] == "reset 102"
    with pytest.raises(Exception):
        await kv.get(vm_lock_key(102))
