"""/health is liveness only; /ready tells whether NATS and the topology are there."""

from __future__ import annotations

import asyncio

import httpx
import nats

from breakglass.natsd import free_port
from eventbus.topology import ensure
from gateway.app import create_app
from gateway.settings import Settings
from tests.servers import serve_app, wait_ready


def test_health_needs_nothing_and_ready_says_why_not(nats_url):
    with serve_app(create_app(Settings(nats_url=nats_url))) as base:
        assert httpx.get(f"{base}/health").json() == {"status": "ok"}
        not_ready = httpx.get(f"{base}/ready")
        assert not_ready.status_code == 503
        assert "missing" in not_ready.json()["reason"] or "not connected" in not_ready.json()["reason"]

        async def topology() -> None:
            nc = await nats.connect(nats_url)
            await ensure(nc.jetstream())
            await nc.close()

        asyncio.run(topology())
        wait_ready(base)
        assert httpx.get(f"{base}/ready").json() == {"status": "ready"}


def test_ready_is_503_while_nats_is_unreachable():
    dead = f"nats://127.0.0.1:{free_port()}"
    with serve_app(create_app(Settings(nats_url=dead))) as base:
        assert httpx.get(f"{base}/health").status_code == 200
        answer = httpx.get(f"{base}/ready")
        assert answer.status_code == 503
        assert answer.json()["reason"] == "NATS is not connected"


def test_ready_says_when_the_agent_may_run_unsandboxed():
    dead = f"nats://127.0.0.1:{free_port()}"
    with serve_app(create_app(Settings(nats_url=dead, agent_unsandboxed=True))) as base:
        answer = httpx.get(f"{base}/ready").json()
        assert answer["agent_sandbox"] == "OFF: BREAKGLASS_ALLOW_UNSANDBOXED_AGENT=1"
    with serve_app(create_app(Settings(nats_url=dead))) as base:
        assert "agent_sandbox" not in httpx.get(f"{base}/ready").json()
