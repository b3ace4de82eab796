"""A verb whose executor died (issue 17 item 3): ended `lost` within its
lease, the VM lock freed with it, the same idempotency key answered with
that outcome, and nothing run twice.

Real parts throughout: nats-server, the gateway app, pve-executor as a
process that is SIGKILLed mid-verb, a second pve-executor in-process that
notices, the real sshd running the shipped forced command over the fake
`qm`."""

from __future__ import annotations

import asyncio
import time
from msgspec.structs import replace

import httpx

from events.codec import decode, encode
from events.commands import VerbDone, VerbRecord, VerbRunning
from events.kinds import VerbPhase
from eventbus.topology import verb_key, vm_lock_key
from events.types import new_id
from events.verbs import Verb
from eventbus.log import EventLog
from pve_executor.records import IdempotencyRecords, VmLock, VmLocks
from pve_executor.verbs import VerbHandler
from tests.processes import Service, base_env
from tests.pve_executor.rig import audit_of, executor, request, session_of, settings_for, stored
from tests.pve_executor.test_through_gateway import HEADERS, gateway  # noqa: F401 - fixture

LEASE = 3.0


def _doomed_executor(nats_url, sshd_server, tmp_path) -> Service:  # type: ignore[no-untyped-def]
    env = base_env(
        nats_url, tmp_path / "doomed",
        BREAKGLASS_PVE_HOST=sshd_server.host, BREAKGLASS_PVE_PORT=str(sshd_server.port),
        BREAKGLASS_PVE_USER=sshd_server.user, BREAKGLASS_PVE_KEY_FILE=str(sshd_server.client_key),
        BREAKGLASS_PVE_KNOWN_HOSTS=str(sshd_server.known_hosts_file), BREAKGLASS_VERB_LEASE_SECONDS=str(LEASE),
    )
    return Service("pve_executor", env, tmp_path / "doomed.log").start()


async def _until(check, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, "hang guard"
        await asyncio.sleep(0.1)


async def test_an_executor_killed_mid_verb_has_its_verb_ended_lost_and_the_vm_freed(
        nats_url, nc, js, topology, sshd_server, pve, gateway, tmp_path):  # noqa: F811 - fixture
    pve.knob("delay_reset", 8)  # the reset is on the host when its executor dies
    running, first, again, after = await _press_while_the_executor_dies(
        nats_url, js, sshd_server, pve, gateway, tmp_path, "reset", "press-lost", "reset 102",
        # the VM is free for the next power verb
        then=lambda client: request(nc, js, Verb.STOP))
    assert first.status_code == 502 and again.status_code == 502
    lost = first.json()
    assert (lost["lost"], lost["rejected"], lost["exit_code"]) == (True, False, 1), lost
    assert "the host may have run it" in lost["stderr"]
    assert again.json() == lost
    assert (after.result.exit_code, after.result.rejected) == (0, False)
    audit = await audit_of(js, running.request_id)
    assert [(e.phase, e.lost) for e in audit] == [(VerbPhase.REQUESTED, False), (VerbPhase.RUNNING, False), (VerbPhase.DONE, True)], audit
    assert pve.calls().count("reset 102") == 1  # never run again
    kv = await js.key_value(topology.kv_bucket)
    record = decode((await kv.get(verb_key("press-lost"))).value, VerbRecord)
    assert isinstance(record, VerbDone) and record.result.lost


async def test_an_executor_killed_mid_forensics_has_it_ended_lost_and_the_press_answered(
        nats_url, nc, js, topology, sshd_server, pve, gateway, tmp_path):  # noqa: F811 - fixture
    """A read-only verb holds no VM lock, but the same lease (a read slot):
    the waiting press gets `lost` (not the gateway's time-out), and the
    next read runs."""
    pve.knob("delay_pending", 8)  # forensics is on the host when its executor dies
    running, first, again, status = await _press_while_the_executor_dies(
        nats_url, js, sshd_server, pve, gateway, tmp_path, "forensics", "press-lost-forensics", "pending 102",
        then=lambda client: client.post("/api/pve/status"))
    assert first.status_code == 502, first.text
    lost = first.json()
    assert (lost["verb"], lost["lost"], lost["rejected"], lost["exit_code"]) == ("forensics", True, False, 1), lost
    assert "read-only" in lost["stderr"] and "Press again" in lost["stderr"]
    assert again.json() == lost
    assert status.status_code == 200 and status.json()["stdout"].strip() == "status: running", status.text
    audit = await audit_of(js, running.request_id)
    assert [(e.phase, e.lost) for e in audit] == [
        (VerbPhase.REQUESTED, False), (VerbPhase.RUNNING, False), (VerbPhase.DONE, True)], audit
    assert pve.calls().count("pending 102") == 1  # never run again
    kv = await js.key_value(topology.kv_bucket)
    record = decode((await kv.get(verb_key("press-lost-forensics"))).value, VerbRecord)
    assert isinstance(record, VerbDone) and record.result.lost
    assert await VmLocks(kv, stale_after=60).abandoned_reads(alive=lambda lock: False) == []  # its slot is free


async def _press_while_the_executor_dies(  # type: ignore[no-untyped-def]
        nats_url, js, sshd_server, pve, gateway, tmp_path, verb: str, key: str, on_host: str, *, then):
    """Press `verb` with idempotency key `key`, SIGKILL its executor once
    the host runs it (`on_host` among the fake qm's calls), start a new
    executor, then: the waiting press's answer, the same key pressed again,
    and what `then(client)` gets with the new executor up."""
    doomed = _doomed_executor(nats_url, sshd_server, tmp_path)
    body = {"idempotency_key": key}
    async with httpx.AsyncClient(base_url=gateway, headers=HEADERS, timeout=60) as client:
        try:
            press = asyncio.create_task(client.post(f"/api/pve/{verb}", json=body))
            running = await _until(lambda: _running(js))
            await _until(lambda: asyncio.sleep(0, on_host in pve.calls()))
            doomed.kill()
        finally:
            doomed.kill()
        async with executor(settings_for(nats_url, sshd_server, verb_lease_seconds=LEASE)):
            first = await press  # the press that was waiting gets the outcome too
            again = await client.post(f"/api/pve/{verb}", json=body)  # the same key: the same answer
            after = await then(client)
    return running, first, again, after


async def _running(js):  # type: ignore[no-untyped-def]
    from events import subjects

    return next((e for e in await stored(js, subjects.audit_filters("verb")) if e.phase == VerbPhase.RUNNING), None)


async def test_a_verb_lost_before_it_was_sent_is_said_not_to_have_run(nats_url, nc, js, topology, sshd_server, pve):
    """The state an executor leaves when it dies between taking the VM and
    sending the command: its lapsed lock, the key's record still running."""
    kv = await js.key_value(topology.kv_bucket)
    sid, request_id = new_id(), new_id()
    await kv.create(verb_key("press-unsent"), encode(VerbRunning(request_id=request_id, verb=Verb.CYCLE)))
    await kv.create(vm_lock_key(102), encode(VmLock(
        request_id=request_id, verb="cycle", by="carol", taken_at=time.time() - 5, owner="dead-executor",
        lease_until=time.time() - 1, session_id=sid, idempotency_key="press-unsent")))
    async with executor(settings_for(nats_url, sshd_server)):
        await _until(lambda: audit_of(js, request_id))
        again = await request(nc, js, Verb.CYCLE, idempotency_key="press-unsent")
    done = (await audit_of(js, request_id))[-1]
    assert (done.phase, done.lost, done.rejected) == (VerbPhase.DONE, True, True)
    assert "nothing ran" in (done.stderr or "")
    assert [(e.phase, e.lost) for e in await session_of(js, sid)] == [(VerbPhase.DONE, True)]
    assert (again.result.lost, again.result.rejected) == (True, True)
    assert pve.calls() == []
    try:
        await kv.get(vm_lock_key(102))
        freed = False
    except Exception:
        freed = True
    assert freed


async def test_a_live_executors_own_lapsed_lock_is_never_taken_for_lost(js, topology):
    """A process's own verb still runs whatever its lease says (renewals
    late while NATS was away): only another process's lapsed lock is
    abandoned."""
    kv = await js.key_value(topology.kv_bucket)
    locks = VmLocks(kv, stale_after=60, lease=LEASE)
    lapsed = VmLock(request_id=new_id(), verb="reset", by="alice", taken_at=time.time() - 5, owner="me",
                    lease_until=time.time() - 1)
    await kv.create(vm_lock_key(102), encode(lapsed))
    assert await locks.abandoned(102, alive=lambda lock: lock.owner == "me") is None
    assert (await locks.abandoned(102, alive=lambda lock: False)).lock == lapsed
    busy = await locks.take(102, VmLock(request_id=new_id(), verb="stop", by="bob", taken_at=0, owner="me"))
    assert busy == lapsed  # a taker never takes over in passing: the sweep ends it first


async def test_a_lease_renewed_in_time_keeps_other_mutating_verbs_busy(nats_url, nc, js, topology, sshd_server, pve):
    pve.knob("delay_reset", 2)  # twice the lease: only renewals keep it
    settings = replace(settings_for(nats_url, sshd_server), verb_lease_seconds=1.0)
    async with executor(settings):
        reset = asyncio.create_task(request(nc, js, Verb.RESET))
        await asyncio.sleep(1.5)
        cycle = await request(nc, js, Verb.CYCLE)
        done = await reset
    assert (done.result.exit_code, done.result.lost) == (0, False)
    assert (cycle.result.rejected, cycle.result.lost) == (True, False) and cycle.result.stderr.startswith("busy")


async def test_its_own_lock_left_behind_is_freed_without_a_lost(nats_url, js, topology):
    """A verb of this executor ended, but freeing its lock failed (NATS was
    away): once lapsed, the sweep frees it and records nothing (that verb's
    own `done` is its answer)."""
    kv = await js.key_value(topology.kv_bucket)
    sent: list[str] = []

    async def publish(subject: str, data: bytes) -> None:
        sent.append(subject)

    handler = VerbHandler(settings=settings_for(nats_url), runner=None, events=EventLog(js, topology),
                          records=IdempotencyRecords(kv), locks=VmLocks(kv, stale_after=60, lease=LEASE),
                          publish=publish, owner="me")
    left = VmLock(request_id=new_id(), verb="reset", by="alice", taken_at=time.time() - 5, owner="me",
                  lease_until=time.time() - 1)
    await kv.create(vm_lock_key(102), encode(left))
    handler.holding.add(left.request_id)
    assert not await handler.sweep()  # still running here: never lost, whatever the lease says
    handler.holding.clear()
    assert not await handler.sweep()  # ended here: freed, nothing recorded
    assert await audit_of(js, left.request_id) == [] and sent == []
    try:
        await kv.get(vm_lock_key(102))
        freed = False
    except Exception:
        freed = True
    assert freed
