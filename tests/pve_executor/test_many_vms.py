"""Two VMs on one Proxmox node, end to end: pve-executor (real, in-process)
-> real sshd -> the shipped forced command with `VMIDS=102 103` -> the fake
`qm`, which knows both VMs. A verb reaches the VM it names and no other;
each VM has its own lock; a VMID outside the list is refused by each hop on
its own: the gateway's route, pve-executor (a command published straight to
its subject with the operator's NATS credential), the host script."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import nats
import pytest

from eventbus import access
from events import subjects
from events.codec import decode, encode
from events.commands import RunVerb, VerbResult
from events.kinds import VerbPhase
from eventbus.topology import ensure
from events.types import new_id
from events.verbs import Verb
from events.vms import Vm, VmList
from gateway.app import create_app
from gateway.settings import Settings as GatewaySettings
from tests.pve_executor.rig import audit_of, executor, request, settings_for
from tests.pve_host.host import EX_REFUSED, PveHost
from tests.security.nats_rig import Secured, secured  # noqa: F401 - fixture
from tests.servers import serve_app, wait_ready

WEB, DB = Vm(name="web", vmid=102, node="pve1"), Vm(name="db", vmid=103, node="pve1")
TWO = VmList((WEB, DB))
OUTSIDE = 104
TOKEN = "many-vms-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def two(pve: PveHost) -> PveHost:
    """The simulated node with two VMs, both listed in its script's config."""
    pve.knob("vmid", "102 103")
    pve.configure(VMIDS="102 103")
    return pve


def settings(nats_url: str, sshd_server):  # type: ignore[no-untyped-def]
    return settings_for(nats_url, sshd_server, vms=TWO)


async def test_a_verb_on_each_vm_reaches_that_vm_only(nats_url, nc, js, sshd_server, two: PveHost):
    await ensure(js)
    async with executor(settings(nats_url, sshd_server)):
        web = await request(nc, js, Verb.STATUS, vmid=102)
        db = await request(nc, js, Verb.STOP, vmid=103)
    assert (web.result.exit_code, web.result.rejected) == (0, False), web.result
    assert (db.result.exit_code, db.result.rejected) == (0, False), db.result
    assert two.calls()[0] == "status 102"
    assert two.calls()[-1] == "stop 103 --timeout 45" and all("102" not in c for c in two.calls()[1:])
    assert two.vm(103) == "stopped" and two.vm(102) == "running"
    done = [e for e in await audit_of(js, db.command.request_id) if e.phase is VerbPhase.DONE]
    assert [(e.vm, e.vmid) for e in done] == [("db", 103)]


async def test_no_vmid_is_the_default_vm(nats_url, nc, js, sshd_server, two: PveHost):
    """A command from before many VMs (no vmid) acts on the first VM."""
    await ensure(js)
    async with executor(settings(nats_url, sshd_server)):
        answer = await request(nc, js, Verb.STATUS)
    assert answer.result.exit_code == 0 and two.calls() == ["status 102"]


async def test_each_vm_has_its_own_lock(nats_url, nc, js, sshd_server, two: PveHost):
    """A cycle on one VM does not make the other busy; on the same VM it does."""
    two.knob("delay_stop", 2)
    await ensure(js)
    async with executor(settings(nats_url, sshd_server)):
        web, db = await asyncio.gather(request(nc, js, Verb.STOP, vmid=102), request(nc, js, Verb.STOP, vmid=103))
        two.knob("status", "running")
        first, second = await asyncio.gather(request(nc, js, Verb.STOP, vmid=102),
                                             request(nc, js, Verb.RESET, vmid=102))
    assert (web.result.exit_code, db.result.exit_code) == (0, 0), (web.result, db.result)
    busy = [a.result for a in (first, second) if a.result.rejected]
    assert len(busy) == 1 and busy[0].stderr.startswith("busy: another mutating verb is running on VM 102"), busy


async def test_the_executor_refuses_a_vmid_outside_its_list(secured: Secured, sshd_server, two: PveHost) -> None:  # noqa: F811
    """Published straight to the operator's verb subject with the gateway's
    own NATS credential (the operator's): refused, recorded, nothing sent."""
    async with executor(settings(secured.url(access.PVE_EXECUTOR), sshd_server)):
        nc = await nats.connect(secured.url(access.GATEWAY), inbox_prefix=access.inbox_prefix(access.GATEWAY),
                                allow_reconnect=False)
        try:
            command = RunVerb(by="mallory", request_id=new_id(), verb=Verb.CYCLE, vmid=OUTSIDE)
            reply = await nc.subscribe(subjects.verb_reply(command.request_id), max_msgs=1)
            await nc.jetstream().publish(subjects.VERB, encode(command), headers={"Nats-Msg-Id": new_id()})
            result = decode((await reply.next_msg(timeout=30)).data, VerbResult)
        finally:
            await nc.close()
        reader = await nats.connect(secured.url(access.READER), inbox_prefix=access.inbox_prefix(access.READER),
                                    allow_reconnect=False)
        try:
            done = [e for e in await audit_of(reader.jetstream(), command.request_id) if e.phase is VerbPhase.DONE]
        finally:
            await reader.close()
    assert (result.exit_code, result.rejected) == (EX_REFUSED, True), result
    assert f"VM {OUTSIDE} is not one this console may act on" in result.stderr
    assert len(done) == 1 and done[0].rejected and done[0].vmid == OUTSIDE
    assert two.calls() == [] and two.syslog() == []  # the host was never reached


@contextlib.asynccontextmanager
async def gateway(nats_url: str, js) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    await ensure(js)
    app = create_app(GatewaySettings(nats_url=nats_url, api_token=TOKEN, verb_wait_seconds=30, vms=TWO))
    with serve_app(app) as base:
        await asyncio.to_thread(wait_ready, base)
        yield base


async def test_the_gateway_routes_a_verb_to_each_vm_by_name_or_id(nats_url, js, sshd_server, two: PveHost):
    async with gateway(nats_url, js) as base, executor(settings(nats_url, sshd_server)), \
            httpx.AsyncClient(base_url=base, headers=HEADERS, timeout=40) as c:
        listed = (await c.get("/api/vms")).json()["vms"]
        web = await c.post("/api/vms/web/pve/status")
        db = await c.post("/api/vms/103/pve/status")
        legacy = await c.post("/api/pve/status")  # the single-VM route: the default VM
    assert [(v["name"], v["vmid"], v["node"], v["default"], v["busy"]) for v in listed] == [
        ("web", 102, "pve1", True, None), ("db", 103, "pve1", False, None)]
    assert [r.status_code for r in (web, db, legacy)] == [200, 200, 200], (web.text, db.text, legacy.text)
    assert two.calls() == ["status 102", "status 103", "status 102"]


async def test_the_gateway_refuses_a_vm_outside_its_list(nats_url, nc, js, sshd_server, two: PveHost):
    """404 before anything is published: no command, no audit event, no ssh."""
    async with gateway(nats_url, js) as base, executor(settings(nats_url, sshd_server)), \
            httpx.AsyncClient(base_url=base, headers=HEADERS, timeout=40) as c:
        audit = await nc.subscribe(subjects.AUDIT_ALL + ".>")
        commands = await nc.subscribe(subjects.VERB_ALL)
        answers = [await c.post(f"/api/vms/{vm}/pve/cycle") for vm in (str(OUTSIDE), "mail", "web%2F..", "102 ")]
        opened = await c.post("/api/session", json={"vm": str(OUTSIDE)})
        await asyncio.sleep(0.5)
        seen = audit.pending_msgs + commands.pending_msgs
    assert [a.status_code for a in answers[:2]] == [404, 404], [a.text for a in answers]
    assert all(a.status_code in (404, 422) for a in answers[2:]), [a.text for a in answers]  # malformed names
    assert "not in BREAKGLASS_VMS" in answers[0].json()["detail"]
    assert opened.status_code == 404
    assert seen == 0 and two.calls() == [] and two.syslog() == []


async def test_a_session_is_bound_to_its_vm(nats_url, js, sshd_server, two: PveHost):
    async with gateway(nats_url, js) as base, executor(settings(nats_url, sshd_server)), \
            httpx.AsyncClient(base_url=base, headers=HEADERS, timeout=40) as c:
        opened = (await c.post("/api/session", json={"vm": "db"})).json()
        elsewhere = await c.post("/api/vms/web/pve/status", json={"session_id": opened["session_id"]})
        here = await c.post("/api/vms/db/pve/status", json={"session_id": opened["session_id"]})
        default = (await c.post("/api/session")).json()
        listing = (await c.get("/api/sessions")).json()["sessions"]
    assert opened["vm"] == "db" and default["vm"] == "web"
    assert elsewhere.status_code == 409 and "about VM 'db'" in elsewhere.json()["detail"]
    assert here.status_code == 200 and two.calls() == ["status 103"]
    assert {s["session_id"]: s["vm"] for s in listing} == {opened["session_id"]: "db", default["session_id"]: "web"}


async def test_the_health_checks_name_each_vm_and_hold_no_secret(nats_url, js, sshd_server, two: PveHost):
    """`GET /api/health/checks`: the bus, then `status` on each VM by the
    operator who looked; a VM the node's script does not list fails with
    the fix. Authenticated like the rest of /api."""
    two.configure(VMIDS="102")
    async with gateway(nats_url, js) as base, executor(settings(nats_url, sshd_server)), \
            httpx.AsyncClient(base_url=base, headers=HEADERS, timeout=60) as c:
        anonymous = await c.get("/api/health/checks", headers={"Authorization": ""})
        report = (await c.get("/api/health/checks")).json()
    assert anonymous.status_code == 401
    checks = {v["check"]: v for v in report["checks"]}
    assert report["ok"] is False
    assert checks["nats"]["status"] == "ok"
    assert checks["vm:web"]["status"] == "ok" and "status: running" in checks["vm:web"]["summary"]
    db = checks["vm:db"]
    assert db["status"] == "fail" and "VM 103 is not one this key may act on" in db["summary"]
    assert "VMIDS" in db["fix"]
    assert TOKEN not in str(report) and str(sshd_server.client_key) not in str(report)
    assert sorted(two.calls()) == ["status 102"]


async def test_an_agent_verb_acts_on_its_sessions_vm_only(secured: Secured, sshd_server, two: PveHost) -> None:  # noqa: F811
    """With agent-runner's NATS credential (readable where the agent runs), a
    read-only verb on the other VM of the list is refused: the session is
    bound to `web`; the same verb on `web` runs."""
    from events.commands import SessionRecord
    from eventbus.topology import Topology, session_key
    from events.types import utcnow

    session_id = new_id()
    async with executor(settings(secured.url(access.PVE_EXECUTOR), sshd_server)):
        gw = await nats.connect(secured.url(access.GATEWAY), inbox_prefix=access.inbox_prefix(access.GATEWAY))
        try:
            kv = await gw.jetstream().key_value(Topology().kv_bucket)
            await kv.create(session_key(session_id), encode(SessionRecord(
                session_id=session_id, created_by="alice", created_at=utcnow(), vm="web")))
        finally:
            await gw.close()
        runner = await nats.connect(secured.url(access.AGENT_RUNNER), inbox_prefix=access.inbox_prefix(access.AGENT_RUNNER))
        try:
            answers = []
            for vmid in (103, 102):
                command = RunVerb(by="agent", origin="agent", request_id=new_id(), verb=Verb.STATUS,
                                  session_id=session_id, vmid=vmid)
                reply = await runner.subscribe(subjects.verb_reply(command.request_id), max_msgs=1)
                await runner.jetstream().publish(subjects.AGENT_VERB, encode(command), headers={"Nats-Msg-Id": new_id()})
                answers.append(decode((await reply.next_msg(timeout=30)).data, VerbResult))
        finally:
            await runner.close()
    other, own = answers
    assert (other.exit_code, other.rejected) == (EX_REFUSED, True), other
    assert "this session is about VM web, not db (103)" in other.stderr
    assert (own.exit_code, own.rejected) == (0, False), own
    assert two.calls() == ["status 102"]
