"""GET /metrics: who may scrape it, and labels that stay bounded whatever
path or method a client sends."""

from __future__ import annotations

import re

import httpx
import pytest

from events.types import new_id
from gateway.settings import Settings

from .conftest import TOKEN

METRICS_TOKEN = "scrape-only-4f1c9e"
ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture
def gateway_settings(nats_url):
    return Settings(nats_url=nats_url, api_token=TOKEN, metrics_token=METRICS_TOKEN)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_metrics_take_the_scrape_token_or_the_apis_auth_and_nothing_else(gateway):
    async with httpx.AsyncClient(base_url=gateway.base, timeout=10) as c:
        assert (await c.get("/metrics")).status_code == 401
        assert (await c.get("/metrics", headers=bearer("wrong"))).status_code == 401
        scraped = await c.get("/metrics", headers=bearer(METRICS_TOKEN))
        assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
        assert (await c.get("/metrics", headers=bearer(TOKEN))).status_code == 200
        # The scrape token reads counts; it is not an operator.
        assert (await c.get("/api/sessions", headers=bearer(METRICS_TOKEN))).status_code == 401
        assert (await c.post("/api/pve/status", headers=bearer(METRICS_TOKEN))).status_code == 401
    assert METRICS_TOKEN not in scraped.text and TOKEN not in scraped.text


async def test_labels_are_route_templates_and_known_methods_never_raw_paths(gateway):
    unknown = new_id()
    async with httpx.AsyncClient(base_url=gateway.base, headers=gateway.headers, timeout=10) as c:
        assert (await c.get(f"/api/session/{unknown}/events")).status_code == 404
        await c.get(f"/some/client/route/{unknown}")  # the PWA's (one route for all its paths)
        # A method HTTP knows but the metrics do not label. (httptools, the
        # gateway's parser, refuses a made-up one such as BREW with a 400
        # before the app sees it: never a label either.)
        await c.request("PROPFIND", f"/api/session/{unknown}/events")
        assert (await c.request("BREW", f"/api/session/{unknown}/events")).status_code in (400, 404, 405)
        text = (await c.get("/metrics")).text
    assert unknown not in text and not ID.search(text)
    assert 'route="/api/session/{session_id}/events",status="404"' in text
    assert 'method="GET",route="other",status="200"' in text
    assert re.search(r'method="other",route="[^"]+",status="40\d"', text)  # 404 or 405 by FastAPI's version
    assert "PROPFIND" not in text and "BREW" not in text
