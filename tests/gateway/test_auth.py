"""Auth fails closed on every /api route (SPEC §6). Routes are enumerated
from the app itself, so a route added later is covered without editing this."""

from __future__ import annotations

import httpx
import pytest

from msgspec.structs import replace

from gateway.app import create_app
from gateway.auth import COOKIE, identify
from gateway.settings import Settings
from tests.gateway.conftest import TOKEN
from tests.servers import serve_app, wait_ready

SID = "6cfaa6bb-d10d-4842-8572-2d78d3eeee8c"
URL = "nats://127.0.0.1:1"  # never contacted: auth answers first
EDGE = Settings(nats_url=URL, trust_edge_header=True, edge_secret="proxy-secret")
PROXY = {"X-Breakglass-Edge-Secret": "proxy-secret"}


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
    "trusted edge header, empty": (EDGE, {"X-authentik-username": "", **PROXY}),
    "trusted edge header, junk": (EDGE, {"X-authentik-username": "a b\tc", **PROXY}),
    "other header while trusted": (EDGE, {"X-Remote-User": "mallory", **PROXY}),
    "trusted edge header without the proxy's secret": (EDGE, {"X-authentik-username": "mallory"}),
    "trusted edge header, wrong secret": (EDGE, {"X-authentik-username": "mallory",
                                                 "X-Breakglass-Edge-Secret": "guess"}),
    "trusted edge header, no secret configured": (Settings(nats_url=URL, trust_edge_header=True),
                                                  {"X-authentik-username": "mallory", **PROXY}),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
async def test_every_api_route_refuses(case):
    settings, headers = CASES[case]
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        for method, path in api_routes(app):
            answer = await client.request(method, path, headers=headers, json={})
            assert answer.status_code == 401, (case, method, path, answer.status_code)
            assert answer.json() == {"detail": "authentication required"}


def test_identify_accepts_only_the_configured_sources():
    token = Settings(nats_url=URL, api_token="right")
    assert identify(token, {"authorization": "Bearer right"}) == "operator"
    assert identify(token, {"authorization": "bearer right"}) == "operator"
    edge = Settings(nats_url=URL, trust_edge_header=True, edge_user_header="X-User", edge_secret="proxy-secret")
    assert identify(edge, httpx.Headers({"x-user": "alice", **PROXY})) == "alice"
    assert identify(edge, httpx.Headers({"x-user": "alice"})) is None  # not through the proxy
    assert identify(edge, httpx.Headers({"X-authentik-username": "alice", **PROXY})) is None


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


async def test_the_cookie_is_a_server_side_login_that_logout_revokes(gateway):
    async with httpx.AsyncClient(base_url=gateway.base) as browser:
        await browser.post("/api/login", headers=gateway.headers)
        login_id = browser.cookies[COOKIE]
    assert TOKEN not in login_id and len(login_id) >= 40  # never the token itself
    stolen = {COOKIE: login_id}
    async with httpx.AsyncClient(base_url=gateway.base, cookies=stolen) as thief:
        assert (await thief.get("/api/sessions")).status_code == 200
        async with httpx.AsyncClient(base_url=gateway.base, cookies=stolen) as owner:
            assert (await owner.post("/api/logout", headers=gateway.headers)).status_code == 200
        assert (await thief.get("/api/sessions")).status_code == 401  # revoked on the server, not just forgotten


async def test_a_login_ends_when_the_token_changes(nats_url, gateway):
    async with httpx.AsyncClient(base_url=gateway.base) as browser:
        await browser.post("/api/login", headers=gateway.headers)
        login_id = browser.cookies[COOKIE]
    rotated = create_app(replace(gateway.settings, api_token="a-new-token"))
    with serve_app(rotated) as base:
        wait_ready(base)
        async with httpx.AsyncClient(base_url=base, cookies={COOKIE: login_id}) as browser:
            assert (await browser.get("/api/sessions")).status_code == 401


@pytest.mark.parametrize("cookie", ["guess", "x" * 43, TOKEN])
async def test_a_wrong_cookie_is_refused(gateway, cookie):
    async with httpx.AsyncClient(base_url=gateway.base, cookies={COOKIE: cookie}) as browser:
        assert (await browser.get("/api/sessions")).status_code == 401
