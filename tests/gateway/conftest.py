from __future__ import annotations

import asyncio
from dataclasses import dataclass

import nats
import pytest

from eventbus.topology import ensure
from gateway.app import create_app
from gateway.settings import Settings
from tests.servers import serve_app

TOKEN = "s3cret-token"


@dataclass
class Gateway:
    base: str
    nats_url: str
    headers: dict[str, str]
    settings: Settings


def _ensure(url: str) -> None:
    async def run() -> None:
        nc = await nats.connect(url)
        await ensure(nc.jetstream())
        await nc.close()

    asyncio.run(run())


@pytest.fixture
def gateway_settings(nats_url):
    return Settings(nats_url=nats_url, api_token=TOKEN, keepalive_seconds=15.0, models=("sonnet", "opus"), model="sonnet")


@pytest.fixture
def gateway(nats_url, gateway_settings):
    _ensure(nats_url)
    with serve_app(create_app(gateway_settings)) as base:
        from tests.servers import wait_ready

        wait_ready(base)
        yield Gateway(base, nats_url, {"Authorization": f"Bearer {TOKEN}"}, gateway_settings)
