"""Auth fails closed on every /api route (SPEC §6). Routes are enumerated
from the app itself, so a route added later is covered without editing this."""

from __future__ import annotations

import httpx
import pytest

from gateway.app import create_app
from gateway.auth import identify
from gateway.settings import Settings

SID = "6cfaa6bb-d10d-4842-8572-2d78d3eeee8c"
URL = "nats://127.0.0.1:1"  # never contacted: auth answers first


def api_routes(app) -> list[tuple[str, str]]:
    found = []
    for path, methods in app.openapi()["paths"].items():
        if path.startswith("/api"):
            concrete = path.replace("{session_id}", SID).replace("{verb}", "status").replace("{approval_id}", SID)
            found += [(method.upper(), concrete) for method in methods]
    assert found, "no /api routes found"
    return found


CASES = {
    "no credentials": (Settings(nats_url=URL, api_token="right"), {}),
    "wrong bearer": (Settings(nats_url=URL, api_token="right"), {"Authorization": "Bearer wrong"}),
    "bearer prefix of the token": (Settings(nats_url=URL, api_token="right"), {"Authorization": "Bearer righ"}),
    "token in another scheme": (Settings(nats_url=URL, api_token="right"), {"Authorization": "Basic right"}),
    "empty configured token": (Settings(nats_url=URL, api_token=""), {"Authorization": "Bearer "}),
    "no configured token": (Settings(nats_url=URL, api_token=None), {"Authorization": "Bearer None"}),
    "edge header while untrusted": (Settings(nats_url=URL, api_token="right"), {"X-authentik-username": "mallory"}),
    "trusted edge header, empty": (Settings(nats_url=URL, trust_edge_header=True), {"X-authentik-username": ""}),
    "trusted edge header, junk": (Settings(nats_url=URL, trust_edge_header=True), {"X-authentik-username": "a b\tc"}),
    "other header while trusted": (Settings(nats_url=URL, trust_edge_header=True), {"X-Remote-User": "mallory"}),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
async def test_every_api_route_refuses(case):
    settings, headers = CASES[case]
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for method, path in api_routes(app):
            answer = await client.request(method, path, headers=headers, json={})
            assert answer.status_code == 401, (case, method, path, answer.status_code)
            assert answer.json() == {"detail": "authentication required"}


def test_identify_accepts_only_the_configured_sources():
    token = Settings(nats_url=URL, api_token="right")
    assert identify(token, {"authorization": "Bearer right"}) == "operator"
    assert identify(token, {"authorization": "bearer right"}) == "operator"
    edge = Settings(nats_url=URL, trust_edge_header=True, edge_user_header="X-User")
    assert identify(edge, httpx.Headers({"x-user": "alice"})) == "alice"
    assert identify(edge, httpx.Headers({"X-authentik-username": "alice"})) is None


async def test_a_real_gateway_accepts_the_token_and_the_trusted_header(gateway):
    async with httpx.AsyncClient(base_url=gateway.base) as client:
        assert (await client.post("/api/session", headers=gateway.headers)).status_code == 200
        assert (await client.post("/api/session")).status_code == 401
        assert (await client.get("/health")).status_code == 200


async def test_login_sets_a_stream_cookie_that_only_opens_safe_methods(gateway):
    async with httpx.AsyncClient(base_url=gateway.base) as browser:
        assert (await browser.post("/api/login")).status_code == 401
        answer = await browser.post("/api/login", headers=gateway.headers)
        assert answer.status_code == 200 and answer.json() == {"user": "operator"}
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/api" in cookie
        assert (await browser.get("/api/sessions")).status_code == 200  # GET with the cookie alone
        assert (await browser.post("/api/session")).status_code == 401  # a POST needs the header
        await browser.post("/api/logout", headers=gateway.headers)
        assert (await browser.get("/api/sessions")).status_code == 401


async def test_a_wrong_cookie_is_refused(gateway):
    async with httpx.AsyncClient(base_url=gateway.base, cookies={"breakglass_token": "guess"}) as browser:
        assert (await browser.get("/api/sessions")).status_code == 401
