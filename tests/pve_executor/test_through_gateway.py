"""Every verb end to end: HTTP -> gateway -> JetStream -> pve-executor ->
real sshd -> the shipped forced command -> (fake) qm, and back as 200/502."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import httpx
import pytest

from eventbus.topology import ensure
from events.verbs import Verb
from gateway.app import create_app
from gateway.settings import Settings as GatewaySettings
from tests.pve_executor.rig import executor, settings_for
from tests.pve_executor.test_verbs import EXPECTED_CALLS
from tests.pve_host.host import VMID
from tests.servers import serve_app, wait_ready

TOKEN = "verbs-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def gateway(nats_url, js):
    await ensure(js)
    with serve_app(create_app(GatewaySettings(nats_url=nats_url, api_token=TOKEN, verb_wait_seconds=30))) as base:
        await asyncio.to_thread(wait_ready, base)
        yield base


@pytest.mark.parametrize("verb", list(Verb))
async def test_every_verb_through_the_gateway(gateway, nats_url, sshd_server, pve, verb):
    if verb is Verb.START:
        pve.knob("status", "stopped")
    async with executor(settings_for(nats_url, sshd_server)), httpx.AsyncClient(base_url=gateway, headers=HEADERS, timeout=40) as c:
        answer = await c.post(f"/api/pve/{verb.value}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["verb"], body["exit_code"], body["rejected"]) == (verb.value, 0, False)
    assert pve.calls() == EXPECTED_CALLS[verb]


async def test_a_failing_verb_is_502_with_the_same_body(gateway, nats_url, sshd_server, pve):
    pve.knob("fail_start", 3)
    pve.knob("status", "stopped")
    async with executor(settings_for(nats_url, sshd_server)), httpx.AsyncClient(base_url=gateway, headers=HEADERS, timeout=40) as c:
        answer = await c.post("/api/pve/start")
    assert answer.status_code == 502
    body = answer.json()
    assert set(body) == {"verb", "exit_code", "stdout", "stderr", "rejected", "lost"} and body["exit_code"] == 3


async def test_a_retried_press_with_the_same_key_resets_once(gateway, nats_url, sshd_server, pve):
    async with executor(settings_for(nats_url, sshd_server)), httpx.AsyncClient(base_url=gateway, headers=HEADERS, timeout=40) as c:
        body = {"idempotency_key": "press-7f3a"}
        first, second = await asyncio.gather(c.post("/api/pve/reset", json=body), c.post("/api/pve/reset", json=body))
        third = await c.post("/api/pve/reset", json=body)
    assert [a.status_code for a in (first, second, third)] == [200, 200, 200]
    assert first.json() == second.json() == third.json()
    assert pve.calls().count(f"reset {VMID}") == 1


async def test_injections_never_reach_qm(gateway, nats_url, sshd_server, pve):
    async with executor(settings_for(nats_url, sshd_server)), httpx.AsyncClient(base_url=gateway, headers=HEADERS, timeout=40) as c:
        for verb in ("reset; rm -rf /", "status && reboot", "$(reboot)", "status extra", "..%2Fstatus", "\u0455tatus"):
            assert (await c.post(f"/api/pve/{quote(verb, safe='%')}")).status_code in (400, 404)
        assert (await c.post("/api/pve/status")).status_code == 200
    assert pve.calls() == [f"status {VMID}"]
