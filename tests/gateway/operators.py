"""Named operators at a gateway behind the edge proxy: how the step-up and
two-person tests (here and in tests/security) meet it. Each request names
its operator in the proxy's username header and carries the secret only
the proxy knows, so one test can be alice, bob and a forger in turn. The
gateway is the real app over real NATS, served on a loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from nats.js import JetStreamContext

from eventbus.topology import ensure
from gateway.app import create_app
from gateway.settings import Settings
from tests.passkey import SoftPasskey
from tests.servers import serve_app, wait_ready

SECRET = "edge-proxy-secret-for-step-up"


def as_user(user: str) -> dict[str, str]:
    return {"X-authentik-username": user, "X-Breakglass-Edge-Secret": SECRET}


def operator(base: str, user: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, headers=as_user(user), timeout=40)


@contextlib.asynccontextmanager
async def edge_gateway(nats_url: str, js: JetStreamContext, **settings: Any) -> AsyncIterator[str]:
    """A gateway that trusts the proxy's header, its base URL; `settings`
    turn on what is under test (step-up, the two-person rule, VMs). A verb
    waits 30 s for its answer unless they say otherwise."""
    await ensure(js)
    chosen = Settings(nats_url=nats_url, trust_edge_header=True, edge_secret=SECRET,
                      **{"verb_wait_seconds": 30, **settings})
    with serve_app(create_app(chosen)) as base:
        await asyncio.to_thread(wait_ready, base)
        yield base


async def enrol(client: httpx.AsyncClient) -> SoftPasskey:
    """A new soft passkey registered for the client's operator (user
    verification required, as the gateway asks)."""
    key = SoftPasskey()
    options = (await client.post("/api/passkeys/options")).json()
    assert options["authenticatorSelection"]["userVerification"] == "required"
    answer = await client.post("/api/passkeys", json={"credential": key.register(options)})
    assert answer.status_code == 200, answer.text
    return key


async def asked(client: httpx.AsyncClient, path: str, body: dict) -> dict:
    """The step-up challenge a mutating press is answered with (428)."""
    answer = await client.post(path, json=body)
    assert answer.status_code == 428, answer.text
    assert answer.json()["detail"].startswith("confirm ")
    return answer.json()["step_up"]
