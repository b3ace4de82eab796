"""Observer links, attacked by the colleague who holds one (red team).

tests/gateway/test_observers.py already walks every route of the app with
the link (header, query, beside a token): new routes (/api/vms, /api/push,
/api/passkeys, /api/health) are in that walk because it enumerates the app.
Here, what it does not try:

- a stream attached before the revocation (or the expiry) keeps no access:
  it ends within RECHECK_SECONDS and nothing written after reaches it;
- a link cannot grow its session's log without bound: its audited uses are
  rate-limited (429 past USES_PER_MINUTE), and a refused use is not logged;
- a second secret in the query does not widen the one in the header, and a
  link for one session reads no other, however the secret is sent.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from gateway.observers import RECHECK_SECONDS, USES_PER_MINUTE
from tests.gateway.conftest import gateway, gateway_settings  # noqa: F401 - fixtures
from tests.gateway.test_observers import OBSERVER, link, observer_events
from tests.sse import frames


async def attached_until_cut(stranger: httpx.AsyncClient, url: str, cut, limit: float):  # type: ignore[no-untyped-def]
    """Attach, call `cut()` once caught up; (kinds seen after the cut, seconds the stream lived on)."""
    after: list[str] = []
    cut_at = 0.0
    async with stranger.stream("GET", url, timeout=httpx.Timeout(limit, read=limit)) as response:
        assert response.status_code == 200
        async for frame in frames(response):
            if frame.event == "caught-up" and not cut_at:
                await cut()
                cut_at = time.monotonic()
            elif cut_at and frame.event == "message":
                after.append(frame.json["kind"])
    return after, time.monotonic() - cut_at


async def test_an_attached_stream_ends_soon_after_revocation(gateway):  # noqa: F811
    async with httpx.AsyncClient(base_url=gateway.base, headers=gateway.headers, timeout=15) as client, \
            httpx.AsyncClient(base_url=gateway.base, timeout=15) as stranger:
        sid = (await client.post("/api/session")).json()["session_id"]
        made = await link(client, sid)

        async def revoke() -> None:
            answer = await client.delete(f"/api/session/{sid}/observers/{made['observer_id']}")
            assert answer.json() == {"revoked": True}

        async def write_later() -> None:  # an operator keeps working after the revocation
            for _ in range(int(RECHECK_SECONDS * 4)):
                await client.post(f"/api/session/{sid}/observers", json={"seconds": 60})
                await asyncio.sleep(0.5)

        writer = asyncio.ensure_future(asyncio.sleep(0))

        async def cut() -> None:
            nonlocal writer
            await revoke()
            writer = asyncio.ensure_future(write_later())

        after, lived = await asyncio.wait_for(
            attached_until_cut(stranger, f"/api/session/{sid}/stream?observer={made['secret']}", cut, 30), 30)
        writer.cancel()
        again = await stranger.get(f"/api/session/{sid}/stream", headers={OBSERVER: made["secret"]})
    assert lived <= RECHECK_SECONDS + 2, lived
    assert len(after) <= RECHECK_SECONDS * 2 + 2, after  # only what was written before the cut took hold
    assert again.status_code == 401


async def test_an_attached_stream_ends_when_its_link_expires(gateway):  # noqa: F811
    async with httpx.AsyncClient(base_url=gateway.base, headers=gateway.headers, timeout=15) as client, \
            httpx.AsyncClient(base_url=gateway.base, timeout=15) as stranger:
        sid = (await client.post("/api/session")).json()["session_id"]
        made = await link(client, sid, seconds=1.5)
        started = time.monotonic()
        await asyncio.wait_for(_attach_header(stranger, sid, made["secret"]), 20)
    assert time.monotonic() - started <= 1.5 + RECHECK_SECONDS + 2


async def _attach_header(stranger: httpx.AsyncClient, sid: str, secret: str) -> None:
    async with stranger.stream("GET", f"/api/session/{sid}/stream", headers={OBSERVER: secret},
                               timeout=httpx.Timeout(20, read=20)) as response:
        assert response.status_code == 200
        async for _ in frames(response):
            pass


async def test_uses_of_a_link_are_rate_limited_so_the_audit_stays_bounded(gateway):  # noqa: F811
    async with httpx.AsyncClient(base_url=gateway.base, headers=gateway.headers, timeout=15) as client, \
            httpx.AsyncClient(base_url=gateway.base, timeout=15) as stranger:
        sid = (await client.post("/api/session")).json()["session_id"]
        made = await link(client, sid)
        codes = [(await stranger.get(f"/api/session/{sid}/events", headers={OBSERVER: made["secret"]})).status_code
                 for _ in range(USES_PER_MINUTE + 15)]
        refused = await stranger.get(f"/api/session/{sid}/export", params={"observer": made["secret"]})
        own = await client.get(f"/api/session/{sid}/events")  # the operator is not limited by the link's flood
        audited = [e for e in await observer_events(client, sid) if e[0] == "used"]
    assert codes == [200] * USES_PER_MINUTE + [429] * 15, codes
    assert refused.status_code == 429 and refused.headers["retry-after"] == "60"
    assert "at most" in refused.json()["detail"]
    assert own.status_code == 200
    assert len(audited) == USES_PER_MINUTE


async def test_a_link_reads_its_session_only_however_the_secret_is_sent(gateway):  # noqa: F811
    async with httpx.AsyncClient(base_url=gateway.base, headers=gateway.headers, timeout=15) as client, \
            httpx.AsyncClient(base_url=gateway.base, timeout=15) as stranger:
        mine, other = [(await client.post("/api/session")).json()["session_id"] for _ in range(2)]
        mine_secret, other_secret = (await link(client, mine))["secret"], (await link(client, other))["secret"]
        tries = {
            "query for another session": await stranger.get(f"/api/session/{other}/events",
                                                            params={"observer": mine_secret}),
            "header wins over a query naming the target": await stranger.get(
                f"/api/session/{other}/export", headers={OBSERVER: mine_secret}, params={"observer": other_secret}),
            "empty header beside a good query": await stranger.get(
                f"/api/session/{other}/events", headers={OBSERVER: ""}, params={"observer": other_secret}),
            "listing": await stranger.get("/api/sessions", params={"observer": other_secret}),
            "vms": await stranger.get("/api/vms", headers={OBSERVER: mine_secret}),
            "health": await stranger.get("/api/health/checks", headers={OBSERVER: mine_secret}),
            "passkeys": await stranger.get("/api/passkeys", headers={OBSERVER: mine_secret}),
            "push key": await stranger.get("/api/push/key", headers={OBSERVER: mine_secret}),
            "decision": await stranger.post("/api/push/decision", headers={OBSERVER: mine_secret},
                                            json={"approve": True}),
        }
        still = await stranger.get(f"/api/session/{mine}/events", params={"observer": mine_secret})
    assert {what: r.status_code for what, r in tries.items() if r.status_code not in (401, 403)} == {}
    assert still.status_code == 200
