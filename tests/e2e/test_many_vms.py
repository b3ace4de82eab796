"""The agent is told which VM it is repairing, and its verbs act on that VM
only: a session opened for `db` (the second of two VMs), the REAL Claude
CLI on the fake Messages API calling the verb tool, the command caught on
pve-executor's real queue (tests/fake_executor.py)."""

from __future__ import annotations

import json

import httpx

from breakglass.natsd import free_port
from tests.e2e.conftest import TOKEN
from tests.fake_executor import fake_executor
from tests.fakeapi import FakeAnthropic, text, tool_use
from tests.processes import Service, base_env, runner_env
from tests.servers import wait_ready
from tests.sse import collect

VMS = json.dumps([
    {"name": "web", "vmid": 102, "node": "pve1", "devvm": "ops@10.0.0.5"},
    {"name": "db", "vmid": 103, "node": "pve2", "devvm": "root@10.0.0.6:2222"},
])


def _system_text(request) -> str:  # type: ignore[no-untyped-def]
    system = request.json.get("system") or ""
    return system if isinstance(system, str) else "\n".join(b.get("text", "") for b in system)


async def test_a_session_for_one_vm_tells_the_agent_and_its_verbs_act_there(nats_url, tmp_path, claude_bin):
    port = free_port()
    with FakeAnthropic() as api:
        env = {"BREAKGLASS_VMS": VMS}
        gateway = Service("gateway", base_env(nats_url, tmp_path / "gw", BREAKGLASS_PORT=str(port),
                                              BREAKGLASS_API_TOKEN=TOKEN, **env), tmp_path / "gateway.log").start()
        runner = Service("agent_runner", {**runner_env(nats_url, tmp_path / "runner", claude_bin, api.url), **env,
                                          "BREAKGLASS_VERB_POLICY": "autonomous"}, tmp_path / "runner.log").start()
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(base, timeout=20)
            api.script(tool_use("mcp__breakglass__pve", {"verb": "cycle"}), text("Cycled db."))
            async with fake_executor(nats_url) as executor, httpx.AsyncClient(
                    base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
                opened = (await client.post("/api/session", json={"vm": "db"})).json()
                sid = opened["session_id"]
                assert (await client.post(f"/api/session/{sid}/prompt", json={"prompt": "db hangs"})).status_code == 202
                frames = await collect(client, f"/api/session/{sid}/stream",
                                       until=lambda fs: any(f.kind == "turn_end" for f in fs), timeout=60)
        finally:
            runner.stop()
            gateway.stop()
            print("---- runner log ----\n" + runner.log()[-4000:])
    assert opened["vm"] == "db"
    [run] = executor.commands
    assert (run.verb.value, run.vmid, run.origin, run.session_id) == ("cycle", 103, "agent", sid)
    requested = [f.json for f in frames if f.kind == "verb"]
    assert [(e["vm"], e["vmid"]) for e in requested] == [("db", 103)]
    system = _system_text(api.model_requests[0])
    assert "VM 'db' (Proxmox VMID 103 on node pve2)" in system, system[-600:]
    assert "`ssh devvm` logs in to it as root@10.0.0.6:2222" in system
    assert "web" not in system.split("This session is about", 1)[1]
