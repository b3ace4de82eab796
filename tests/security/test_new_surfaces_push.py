"""Web Push, attacked from outside (issue: red team of the new surfaces).

The decision route takes a grant instead of a bearer; these tests try that
door as a phone that lost its grant, a thief with one grant, and an
operator with a login who points the gateway's POSTs at its own network:

- a well-formed grant header opens no route but the decision (every other
  route of the app, enumerated from the app, is 401 without a login);
- a grant minted for a two-person press never approves for its presser, and
  a grant whose approval was decided in the page is refused (409);
- a subscription endpoint on loopback, private, link-local or local-only
  names is refused (SSRF), and one already stored is dropped at send time,
  never POSTed to;
- huge or malformed subscription bodies are refused whole, with a reason.
Real gateway on a socket, real NATS, the fake push service of tests/push.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from msgspec.structs import replace

import httpx
import msgspec
import pytest

from eventbus.topology import Topology, ensure
from events.verbs import Verb
from gateway.app import create_app
from gateway.push.grants import DECISION_PATH, GRANT_HEADER
from gateway.push.store import Subscription, internal_host, key_of
from gateway.settings import Settings
from tests.gateway.test_observers import app_routes, concrete
from tests.push.conftest import ask_approval, hold_turn, push_settings, start_gateway, wait_push_ready
from tests.push.conftest import gateway_settings, nc  # noqa: F401 - fixtures
from tests.push.conftest import push, push_gateway  # noqa: F401 - fixtures
from tests.servers import wait_ready

EDGE = "edge-secret-for-the-push-red-team"


def edge(settings: Settings, user: str) -> dict[str, str]:
    return {settings.edge_secret_header: EDGE, settings.edge_user_header: user}


def a_grant() -> str:
    return secrets.token_urlsafe(32)  # the shape of a real one, issued by nobody


async def test_a_grant_header_opens_no_route_but_the_decision(push, nats_url, gateway_settings, tmp_path, nc):  # noqa: F811
    settings = push_settings(gateway_settings, tmp_path / "gw")
    await ensure(nc.jetstream())
    with start_gateway(settings) as base:
        await asyncio.to_thread(wait_ready, base)
        await asyncio.to_thread(wait_push_ready, base, {"Authorization": f"Bearer {settings.api_token}"})
        sid = httpx.post(f"{base}/api/session", headers={"Authorization": f"Bearer {settings.api_token}"}).json()[
            "session_id"]
        opened: list[str] = []
        async with httpx.AsyncClient(base_url=base, timeout=15) as thief:
            for method, template in app_routes(create_app(settings)):
                if not template.startswith("/api") or template == DECISION_PATH or method == "HEAD":
                    continue
                path = concrete(template, sid).replace("{vm}", "default").replace("{name}", "default")
                for grant in (a_grant(), a_grant()[:42], a_grant() + "A"):
                    answer = await thief.request(method, path, headers={GRANT_HEADER: grant}, json={"approve": True})
                    if answer.status_code not in (401, 403) and not template.startswith("/api/alerts"):
                        opened.append(f"{method} {path} -> {answer.status_code}")
            # the decision itself: an unknown grant is 403, a malformed one 401 (no identity, no grant)
            unknown = await thief.post(DECISION_PATH, headers={GRANT_HEADER: a_grant()}, json={"approve": True})
            malformed = await thief.post(DECISION_PATH, headers={GRANT_HEADER: "x" * 43 + "!"}, json={"approve": True})
            in_query = await thief.post(DECISION_PATH, params={"grant": a_grant()}, json={"approve": True})
    assert opened == []
    assert unknown.status_code == 403 and malformed.status_code == 401 and in_query.status_code == 401


async def test_a_press_grant_never_approves_for_its_presser_nor_after_the_page_decided(
        push, nats_url, gateway_settings, tmp_path, nc):  # noqa: F811
    """alice presses a two-person cycle; the push reaches her phone and
    bob's. Her grant (and her own name in another case) cannot approve it;
    bob approves in the page; his notification's grant then finds it
    decided; a grant never moves to a press in another session."""
    settings = push_settings(gateway_settings, tmp_path / "gw", trust_edge_header=True, edge_secret=EDGE,
                             two_person=frozenset({Verb.CYCLE}), two_person_wait_seconds=600.0)
    alice, bob = edge(settings, "alice"), edge(settings, "bob")
    await ensure(nc.jetstream())
    with start_gateway(settings) as base:
        await asyncio.to_thread(wait_ready, base)
        await asyncio.to_thread(wait_push_ready, base, alice)
        async with httpx.AsyncClient(base_url=base, headers=alice, timeout=15) as a, \
                httpx.AsyncClient(base_url=base, headers=bob, timeout=15) as b, \
                httpx.AsyncClient(base_url=base, timeout=15) as phone:
            alices_phone, bobs_phone = push.browser(), push.browser()
            assert (await a.post("/api/push/subscription", json=alices_phone.subscription())).status_code == 201
            assert (await b.post("/api/push/subscription", json=bobs_phone.subscription())).status_code == 201
            sid = (await a.post("/api/session")).json()["session_id"]
            pressed = await a.post("/api/pve/cycle", json={"session_id": sid})
            assert pressed.status_code == 202, pressed.text
            approval_id = pressed.json()["approval_id"]
            got = await asyncio.to_thread(push.wait, 2, kind="approval")
            grant_of = {r.endpoint: r.payload["grant"] for r in got if r.payload["id"] == approval_id}
            own = await phone.post(DECISION_PATH, headers={GRANT_HEADER: grant_of[alices_phone.endpoint]},
                                   json={"approve": True})
            in_page = await b.post(f"/api/session/{sid}/approval/{approval_id}", json={"approve": True})
            late = await phone.post(DECISION_PATH, headers={GRANT_HEADER: grant_of[bobs_phone.endpoint]},
                                    json={"approve": False})
    assert own.status_code == 403 and "you pressed `cycle` yourself" in own.json()["detail"], own.text
    assert in_page.status_code == 200 and in_page.json() == {"accepted": True}, in_page.text
    assert late.status_code == 409 and "already approved by bob" in late.json()["detail"], late.text


INTERNAL = [
    "https://127.0.0.1/push", "https://127.1.2.3:8443/x", "https://[::1]/push", "https://[::ffff:127.0.0.1]/p",
    "https://0.0.0.0/p", "https://10.0.0.5/p", "https://172.16.0.1/p", "https://192.168.1.1/p",
    "https://169.254.169.254/latest/meta-data/", "https://[fe80::1]/p", "https://[fd00::1]/p",
    "https://100.64.0.1/p", "https://localhost/p", "https://LOCALHOST./p", "https://nats.internal/p",
    "https://printer.local/p", "https://gateway/p", "https://a.localhost:4222/p", "https://224.0.0.1/p",
    "http://fcm.googleapis.com/fcm/send/x",
]
PUBLIC = ["https://fcm.googleapis.com/fcm/send/abc", "https://updates.push.services.mozilla.com/wpush/v2/x",
          "https://web.push.apple.com/QGx", "https://8.8.8.8/p"]


def test_the_endpoint_check_knows_internal_hosts():
    from urllib.parse import urlsplit

    assert [u for u in INTERNAL[:-1] if not internal_host(urlsplit(u).hostname or "")] == []
    assert [u for u in PUBLIC if internal_host(urlsplit(u).hostname or "")] == []


async def test_internal_endpoints_are_refused_and_a_stored_one_is_never_posted_to(
        push, nats_url, gateway_settings, tmp_path, nc):  # noqa: F811
    settings = replace(gateway_settings, data_dir=tmp_path / "gw", push_allow_http=False)
    headers = {"Authorization": f"Bearer {settings.api_token}"}
    await ensure(nc.jetstream())
    with start_gateway(settings) as base:
        await asyncio.to_thread(wait_ready, base)
        await asyncio.to_thread(wait_push_ready, base, headers)
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=15) as c:
            good = push.browser().subscription()
            refused = {u: await c.post("/api/push/subscription", json={**good, "endpoint": u}) for u in INTERNAL}
            accepted = [await c.post("/api/push/subscription", json={**good, "endpoint": u}) for u in PUBLIC]
            for u in PUBLIC:  # nothing is ever sent to the real services from a test
                await c.request("DELETE", "/api/push/subscription", json={"endpoint": u})
            # one stored before the check (or written around it): the push service's own loopback URL
            inside = push.browser()
            sub = inside.subscription()
            kv = await nc.jetstream().key_value(Topology().kv_bucket)
            await kv.put(key_of(inside.endpoint), msgspec.json.encode(Subscription(
                identity="operator", endpoint=inside.endpoint, p256dh=sub["keys"]["p256dh"], auth=sub["keys"]["auth"],
                created_at=time.time(), expires_at=time.time() + 3600)))
            sid = (await c.post("/api/session")).json()["session_id"]
            turn_id = await hold_turn(nc, sid)
            await ask_approval(nc, sid, turn_id=turn_id)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    await kv.get(key_of(inside.endpoint))
                except Exception:  # noqa: BLE001 - KeyNotFound: dropped
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the internal subscription was kept")
    bad = {u: r.status_code for u, r in refused.items() if r.status_code != 400}
    assert bad == {}
    assert all("detail" in r.json() for r in refused.values())
    assert "public push service" in refused["https://169.254.169.254/latest/meta-data/"].json()["detail"]
    assert [r.status_code for r in accepted] == [201] * len(PUBLIC), [r.text for r in accepted]
    assert push.received == [] and push.refused == []


@pytest.mark.parametrize("body, status", [
    (b"{" * 20000, 413),
    (b'{"endpoint": "' + b"a" * 17000 + b'"}', 413),
    (b"not json", 422),
    (b'{"endpoint": ["https://x"], "keys": {}}', 422),
    (b'{"endpoint": "https://fcm.googleapis.com/x", "keys": {"p256dh": 1, "auth": null}}', 422),
    (b'{"endpoint": "https://fcm.googleapis.com/' + b"a" * 3000 + b'", "keys": {"p256dh": "x", "auth": "y"}}', 422),
    (b'{"endpoint": "https://fcm.googleapis.com/x", "keys": {"p256dh": "!!", "auth": "y"}}', 400),
    (b'{"endpoint": "https://fcm.googleapis.com/x", "keys": {"p256dh": "AAAA", "auth": "AAAA"}, '
     b'"expirationTime": "soon"}', 422),
])
async def test_huge_or_malformed_subscriptions_are_refused_whole(push, push_gateway, body, status):  # noqa: F811
    async with httpx.AsyncClient(base_url=push_gateway.base, headers=push_gateway.headers, timeout=10) as c:
        answer = await c.post("/api/push/subscription", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == status, answer.text
    assert "detail" in answer.json() and "Traceback" not in answer.text


async def test_a_late_approve_leaves_no_grant_for_the_runner(push, push_gateway, nc):  # noqa: F811
    """The agent asks; a phone denies first; a second phone (or a stale
    page) approves after. The Approve is refused, and no executor grant is
    left in the bucket for agent-runner's credential to redeem."""
    from events import subjects
    from eventbus.topology import grant_key, kv_keys
    from tests.push.test_push import Runner

    async with httpx.AsyncClient(base_url=push_gateway.base, headers=push_gateway.headers, timeout=15) as c:
        sid = (await c.post("/api/session")).json()["session_id"]
        turn_id = await hold_turn(nc, sid)
        runner = Runner()
        await nc.subscribe(subjects.approval(sid), cb=runner.on)
        phone, laptop = push.browser(), push.browser()
        for browser in (phone, laptop):
            assert (await c.post("/api/push/subscription", json=browser.subscription())).status_code == 201
        approval_id, _ = await ask_approval(nc, sid, turn_id=turn_id)
        got = {r.endpoint: r.payload["grant"] for r in await asyncio.to_thread(push.wait, 2, kind="approval")
               if r.payload["id"] == approval_id}
        async with httpx.AsyncClient(base_url=push_gateway.base, timeout=15) as sw:
            denied = await sw.post(DECISION_PATH, headers={GRANT_HEADER: got[phone.endpoint]}, json={"approve": False})
            late = await sw.post(DECISION_PATH, headers={GRANT_HEADER: got[laptop.endpoint]}, json={"approve": True})
        in_page = await c.post(f"/api/session/{sid}/approval/{approval_id}", json={"approve": True})
        kv = await nc.jetstream().key_value(Topology().kv_bucket)
        left = [k for k in await kv_keys(kv, "grants.*") if k == grant_key(approval_id)]
    assert denied.status_code == 200 and late.status_code == 409, (denied.text, late.text)
    assert in_page.json() == {"accepted": False, "decided_by": "operator"}, in_page.text
    assert left == []
