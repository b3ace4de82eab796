"""The SSE keepalive is an event a browser's EventSource can see (a comment
never reaches the page): the PWA needs it to prove a quiet stream live, and
its data names the interval, so the page knows how long silence may last."""

from __future__ import annotations

import httpx
import pytest

from gateway.settings import Settings
from tests.gateway.conftest import TOKEN
from tests.sse import collect


@pytest.fixture
def gateway_settings(nats_url):
    return Settings(nats_url=nats_url, api_token=TOKEN, keepalive_seconds=0.5, models=("sonnet", "opus"), model="sonnet")


async def test_the_keepalive_is_a_named_event_carrying_its_interval(gateway):
    async with httpx.AsyncClient(base_url=gateway.base, headers=gateway.headers, timeout=10) as client:
        sid = (await client.post("/api/session")).json()["session_id"]
        frames = await collect(client, f"/api/session/{sid}/stream", until=lambda f: any(x.event == "keepalive" for x in f))
    keepalive = next(f for f in frames if f.event == "keepalive")
    assert keepalive.data == "0.5" and keepalive.id is None
    assert frames[0].event == "caught-up"  # the protocol before it is unchanged
