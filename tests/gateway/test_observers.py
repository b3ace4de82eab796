"""Observer links (issue 19): a read-only, expiring link to ONE session.

With it one can attach, replay and export that session and nothing else:
every other route of the app, enumerated from the app itself (so a route
added later is covered without touching this test), answers 403, whether
the link comes in the header or the query, alone or beside the operator's
own token. Creation, every use and revocation are events in the session;
an expired or revoked link is 401."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from gateway.app import create_app
from gateway.observers import OBSERVABLE_ROUTES
from tests.sse import collect

OBSERVER = "X-Breakglass-Observer"
SAFE = frozenset({"GET", "HEAD"})


def app_routes(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(method, path template) of every route the app serves, from the app's
    own router (schema-hidden routes included)."""
    found: list[tuple[str, str]] = []
    for route in app.routes:
        contexts = route.effective_route_contexts() if hasattr(route, "effective_route_contexts") else [route]
        for r in contexts:
            found += [(method, r.path) for method in sorted(getattr(r, "methods", None) or ())]
    assert len(found) > 20, found
    return found


def concrete(path: str, session_id: str) -> str:
    return (path.replace("{session_id}", session_id).replace("{verb}", "cycle")
            .replace("{approval_id}", str(uuid.uuid4())).replace("{observer_id}", "ab" * 32))


@pytest.fixture
async def client(gateway):  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=gateway.base, headers=gateway.headers, timeout=15) as c:
        yield c


@pytest.fixture
async def stranger(gateway):  # type: ignore[no-untyped-def]
    """A colleague with the link and nothing else."""
    async with httpx.AsyncClient(base_url=gateway.base, timeout=15) as c:
        yield c


async def link(client: httpx.AsyncClient, sid: str, seconds: float = 600) -> dict:
    answer = await client.post(f"/api/session/{sid}/observers", json={"seconds": seconds})
    assert answer.status_code == 200, answer.text
    return answer.json()


async def observer_events(client: httpx.AsyncClient, sid: str) -> list[tuple[str, str, str]]:
    events = (await client.get(f"/api/session/{sid}/events")).json()["events"]
    return [(e["action"], e["by"], e["route"]) for e in events if e["kind"] == "observer"]


async def test_every_other_route_is_403_with_an_observer_link(gateway, client, stranger):
    mine, other = (await client.post("/api/session")).json()["session_id"], (await client.post("/api/session")).json()["session_id"]
    secret = (await link(client, mine))["secret"]
    routes = app_routes(create_app(gateway.settings))
    allowed = {(m, p) for m, p in routes if m in SAFE and p in OBSERVABLE_ROUTES}
    assert {p for _, p in allowed} == set(OBSERVABLE_ROUTES)
    checked = 0
    for method, template in routes:
        if not template.startswith("/api"):
            continue
        for sid in (mine, other):
            path = concrete(template, sid)
            for how in ({"headers": {OBSERVER: secret}}, {"params": {"observer": secret}},
                        {"headers": {OBSERVER: secret, **gateway.headers}}):
                if (method, template) in allowed and sid == mine:
                    continue
                answer = await stranger.request(method, path, json={"approve": True, "prompt": "x"}, **how)
                assert answer.status_code == 403, (method, path, how, answer.status_code, answer.text)
                checked += 1
    assert checked > 60
    # none of those reached a session: only the creation is on the record
    assert await observer_events(client, mine) == [("created", "operator", "")]
    assert await observer_events(client, other) == []


async def test_attach_replay_and_export_work_and_every_use_is_audited(gateway, client, stranger):
    sid = (await client.post("/api/session")).json()["session_id"]
    made = await link(client, sid)
    secret, observer_id = made["secret"], made["observer_id"]
    assert made["url"] == f"/#observe/{sid}/{secret}" and secret not in str(await observer_events(client, sid))
    frames = await collect(stranger, f"/api/session/{sid}/stream?observer={secret}",
                           until=lambda got: any(f.event == "caught-up" for f in got))
    assert [f.json["kind"] for f in frames if f.event == "message"][:1] == ["observer"]
    page = await stranger.get(f"/api/session/{sid}/events", headers={OBSERVER: secret})
    assert page.status_code == 200 and page.json()["events"]
    md = await stranger.get(f"/api/session/{sid}/export", params={"format": "md", "observer": secret})
    jsonl = await stranger.get(f"/api/session/{sid}/export", headers={OBSERVER: secret})
    assert md.status_code == 200 and sid in md.text
    assert jsonl.status_code == 200 and jsonl.headers["content-type"] == "application/x-ndjson"
    name = f"observer-{observer_id[:12]}"
    assert await observer_events(client, sid) == [
        ("created", "operator", ""), ("used", name, "stream"), ("used", name, "events"), ("used", name, "export"),
        ("used", name, "export")]
    # revoked: 401 from then on, and on the record
    revoked = await client.delete(f"/api/session/{sid}/observers/{observer_id}")
    assert revoked.json() == {"revoked": True}
    gone = await stranger.get(f"/api/session/{sid}/events", headers={OBSERVER: secret})
    assert gone.status_code == 401 and "expired or revoked" in gone.json()["detail"]
    assert (await observer_events(client, sid))[-1] == ("revoked", "operator", "")


async def test_a_link_expires_and_cannot_outlive_the_maximum(gateway, client, stranger):
    sid = (await client.post("/api/session")).json()["session_id"]
    secret = (await link(client, sid, seconds=1))["secret"]
    assert (await stranger.get(f"/api/session/{sid}/events", headers={OBSERVER: secret})).status_code == 200
    await asyncio.sleep(1.2)
    late = await stranger.get(f"/api/session/{sid}/events", headers={OBSERVER: secret})
    assert late.status_code == 401
    too_long = await client.post(f"/api/session/{sid}/observers", json={"seconds": 8 * 24 * 3600})
    assert too_long.status_code == 422 and "at most" in too_long.json()["detail"]
    made_up = await stranger.get(f"/api/session/{sid}/events", headers={OBSERVER: "x" * 43})
    assert made_up.status_code == 401
    other = (await client.post("/api/session")).json()["session_id"]
    foreign = await client.delete(f"/api/session/{other}/observers/{'ab' * 32}")
    assert foreign.json() == {"revoked": False}


async def test_an_observer_attach_warms_no_cli_and_an_operator_attach_does(gateway, client, stranger, nc):
    """A warm CLI costs the runner memory and is capped; an observer can never
    prompt, so its attach must not spend one (nor evict an operator's)."""
    from events import subjects

    sid = (await client.post("/api/session")).json()["session_id"]
    secret = (await link(client, sid))["secret"]
    hints: list[str] = []

    async def heard(msg) -> None:  # type: ignore[no-untyped-def]
        hints.append(msg.subject)

    sub = await nc.subscribe(subjects.warm(sid), cb=heard)
    try:
        await nc.flush()
        await collect(stranger, f"/api/session/{sid}/stream?observer={secret}",
                      until=lambda got: any(f.event == "caught-up" for f in got))
        await collect(client, f"/api/session/{sid}/stream", until=lambda got: any(f.event == "caught-up" for f in got))
        await nc.flush()
        await asyncio.sleep(0.2)
    finally:
        await sub.unsubscribe()
    assert hints == [subjects.warm(sid)]  # the operator's attach only
