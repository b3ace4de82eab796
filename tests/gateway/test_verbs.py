"""Verb routes at the gateway: the allow-list holds before anything reaches
the bus. (End to end through pve-executor and sshd: tests/e2e.)"""

from __future__ import annotations

from urllib.parse import quote

import httpx
import msgspec
import nats
import pytest

from eventbus.topology import Topology
from events.verbs import Verb
from events.vms import Vm, VmList
from gateway.app import create_app
from gateway.bus import Bus
from gateway.verbs import request_verb
from tests.servers import serve_app, wait_ready

INJECTIONS = [
    "status;reboot", "status&&reboot", "$(reboot)", "`reboot`", "status\nreboot", "status extra", "STATUS",
    "ｓtatus", "stаtus", "..%2F..%2Fbin%2Fsh", "x" * 10_000, "%00status", "status%0A", " status", "reset%3Brm",
]


@pytest.fixture
async def client(gateway):
    async with httpx.AsyncClient(base_url=gateway.base, headers=gateway.headers, timeout=10) as c:
        yield c


async def commands_queued(nats_url: str) -> int:
    nc = await nats.connect(nats_url)
    try:
        return (await nc.jetstream().stream_info(Topology().commands_stream)).state.messages
    finally:
        await nc.close()


async def test_the_verb_list(client):
    answer = (await client.get("/api/pve/verbs")).json()
    assert answer == {"verbs": ["status", "forensics", "reset", "stop", "start", "cycle"],
                      "mutating": ["reset", "stop", "start", "cycle"]}


@pytest.mark.parametrize("verb", INJECTIONS)
async def test_anything_but_a_bare_verb_is_refused_and_nothing_is_published(client, gateway, verb):
    answer = await client.post(f"/api/pve/{quote(verb, safe='%')}")
    assert answer.status_code in (400, 404, 405), answer.status_code
    if answer.status_code == 400:
        assert "unknown verb" in answer.json()["detail"]
    assert await commands_queued(gateway.nats_url) == 0


@pytest.mark.parametrize("body", [{"session_id": "nope"}, {"idempotency_key": "a;b"}, {"idempotency_key": ""},
                                  {"idempotency_key": "k" * 129}, {"session_id": 5}])
async def test_a_malformed_verb_body_is_422_and_nothing_is_published(client, gateway, body):
    assert (await client.post("/api/pve/status", json=body)).status_code == 422
    assert await commands_queued(gateway.nats_url) == 0


async def test_an_unknown_session_is_404(client, gateway):
    answer = await client.post("/api/pve/status", json={"session_id": "00000000-0000-4000-8000-000000000000"})
    assert answer.status_code == 404
    assert await commands_queued(gateway.nats_url) == 0


async def test_no_executor_answering_is_a_502_with_a_clear_stderr(gateway, gateway_settings):
    quick = msgspec.structs.replace(gateway_settings, verb_wait_seconds=1.0)
    with serve_app(create_app(quick)) as base:
        wait_ready(base)
        async with httpx.AsyncClient(base_url=base, headers=gateway.headers, timeout=10) as client:
            answer = await client.post("/api/pve/status")
    assert answer.status_code == 502
    body = answer.json()
    assert body["verb"] == "status" and body["exit_code"] != 0 and "no answer from pve-executor" in body["stderr"]
    assert set(body) == {"verb", "exit_code", "stdout", "stderr", "rejected", "lost"}


async def test_a_vm_outside_the_list_is_refused_before_anything_reaches_the_bus():
    # Unreachable through the routes (they resolve the VM from the list);
    # the check behind them answers with a refusal, not an exception.
    listed, other = Vm(name="web", vmid=101), Vm(name="db", vmid=102)
    result = await request_verb(Bus("nats://127.0.0.1:1"), Verb.RESET, by="ops", wait_seconds=1, vm=other,
                                vms=VmList(vms=(listed,)))
    assert (result.exit_code, result.rejected) == (64, True)
    assert result.stderr.startswith("refused: VM 102 is not in BREAKGLASS_VMS")
