"""The gateway checks what it is sent before trusting any of it (issue 14,
part 5): Host allow-list, bodies capped and refused unread when the caller
is unknown, event ids bounded, the API's map off by default, the edge
header only with the proxy's secret."""

from __future__ import annotations

from msgspec.structs import replace

import httpx
import pytest

from events.config import ConfigError, Env
from gateway.app import create_app
from gateway.guard import BODY_BYTES, PROMPT_BODY_BYTES, Guard
from gateway.settings import Settings

URL = "nats://127.0.0.1:1"
HUGE = "1" * 5000


async def test_an_unknown_host_is_refused(gateway):
    async with httpx.AsyncClient(base_url=gateway.base) as client:
        rebound = await client.get("/api/sessions", headers={**gateway.headers, "Host": "attacker.example"})
        assert rebound.status_code == 400 and "BREAKGLASS_ALLOWED_HOSTS" in rebound.json()["detail"]
        assert (await client.get("/health", headers={"Host": "attacker.example:8080"})).status_code == 400
        for host in ("127.0.0.1:8080", "localhost", "[::1]:8080"):
            assert (await client.get("/health", headers={"Host": host})).status_code == 200, host


def test_the_host_list_comes_from_the_settings():
    settings = Settings.from_env(Env({"BREAKGLASS_NATS_URL": URL, "BREAKGLASS_ALLOWED_HOSTS": "bg.example.org"}))
    assert settings.hosts() == ["localhost", "127.0.0.1", "[::1]", "bg.example.org"]
    assert "10.0.0.5" in replace(settings, host="10.0.0.5").hosts()
    assert "0.0.0.0" not in replace(settings, host="0.0.0.0").hosts()


class Probe:
    """An ASGI receive that records whether the body was ever read."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.reads = 0

    async def __call__(self):  # type: ignore[no-untyped-def]
        self.reads += 1
        if self.chunks:
            chunk = self.chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}
        return {"type": "http.disconnect"}


async def _call(settings: Settings, path: str, headers: dict[str, str], probe: Probe) -> tuple[int, list[str]]:
    reached: list[str] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        reached.append(scope["path"])
        await receive()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict] = []

    async def send(message):  # type: ignore[no-untyped-def]
        sent.append(message)

    raw = [(k.lower().encode(), v.encode()) for k, v in {"host": "127.0.0.1", **headers}.items()]
    await Guard(app, settings)({"type": "http", "method": "POST", "path": path, "headers": raw}, probe, send)
    return sent[0]["status"], reached


PROMPT = "/api/session/6cfaa6bb-d10d-4842-8572-2d78d3eeee8c/prompt"
TOKEN_SETTINGS = Settings(nats_url=URL, api_token="right")
BEARER = {"authorization": "Bearer right"}


async def test_a_stranger_s_body_is_refused_before_a_byte_is_read():
    probe = Probe([b"x" * 1000] * 1000)
    status, reached = await _call(TOKEN_SETTINGS, PROMPT, {"content-length": str(10**6)}, probe)
    assert (status, reached, probe.reads) == (401, [], 0)


async def test_a_declared_length_over_the_cap_is_refused_unread():
    probe = Probe([b"{}"])
    status, reached = await _call(TOKEN_SETTINGS, PROMPT, {**BEARER, "content-length": str(PROMPT_BODY_BYTES + 1)},
                                  probe)
    assert (status, reached, probe.reads) == (413, [], 0)
    status, _ = await _call(TOKEN_SETTINGS, "/api/session", {**BEARER, "content-length": str(BODY_BYTES + 1)},
                            Probe([b"{}"]))
    assert status == 413


async def test_a_chunked_body_is_read_only_up_to_the_cap():
    probe = Probe([b"x" * 4096] * 100)
    status, reached = await _call(TOKEN_SETTINGS, PROMPT, BEARER, probe)
    assert status == 413 and reached == [] and probe.reads == PROMPT_BODY_BYTES // 4096 + 1


async def test_a_body_within_the_cap_reaches_the_route():
    probe = Probe([b"x" * 30_000, b"y" * 30_000])
    status, reached = await _call(TOKEN_SETTINGS, PROMPT, BEARER, probe)
    assert (status, reached) == (204, [PROMPT])


async def test_a_real_prompt_over_the_cap_is_413(gateway):
    async with httpx.AsyncClient(base_url=gateway.base, headers=gateway.headers) as client:
        sid = (await client.post("/api/session")).json()["session_id"]
        big = await client.post(f"/api/session/{sid}/prompt", json={"prompt": "x" * PROMPT_BODY_BYTES})
        assert big.status_code == 413 and "over" in big.json()["detail"]


@pytest.mark.parametrize("value", [HUGE, "18446744073709551616", "-1", "1e3", "²", " ", "0x10"])
async def test_event_ids_are_bounded(gateway, value):
    async with httpx.AsyncClient(base_url=gateway.base, headers=gateway.headers) as client:
        sid = (await client.post("/api/session")).json()["session_id"]
        answers = [await client.get(f"/api/session/{sid}/stream", params={"after": value}),
                   await client.get(f"/api/session/{sid}/events", params={"after": value})]
        if value.isascii() and value.strip():  # what an HTTP header can carry
            answers.append(await client.get(f"/api/session/{sid}/stream", headers={"Last-Event-ID": value}))
    for answer in answers:
        assert answer.status_code == 400, (value, answer.status_code, answer.text[:200])
        assert "event id" in answer.json()["detail"]


async def test_the_largest_event_id_is_fine(gateway):
    async with httpx.AsyncClient(base_url=gateway.base, headers=gateway.headers) as client:
        sid = (await client.post("/api/session")).json()["session_id"]
        page = await client.get(f"/api/session/{sid}/events", params={"after": str(2**64 - 1)})
    assert page.status_code == 200 and page.json()["events"] == []


@pytest.mark.parametrize("path,marker", [("/docs", "swagger"), ("/redoc", "redoc"), ("/openapi.json", '"openapi"')])
async def test_the_api_map_is_off_by_default(path, marker):
    for settings, served in ((TOKEN_SETTINGS, False), (replace(TOKEN_SETTINGS, api_docs=True), True)):
        app = create_app(settings)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as c:
            answer = await c.get(path)  # off: the PWA's own fallback, or 404, never the map
            assert (answer.status_code == 200 and marker in answer.text.lower()) is served, (path, settings.api_docs)


def test_trusting_the_edge_header_needs_the_proxy_s_secret(tmp_path):
    env = {"BREAKGLASS_NATS_URL": URL, "BREAKGLASS_TRUST_EDGE_HEADER": "1"}
    with pytest.raises(ConfigError, match="BREAKGLASS_EDGE_SECRET_FILE"):
        Settings.from_env(Env(env))
    secret = tmp_path / "edge-secret"
    secret.write_text("a-proxy-secret-of-some-length\n")
    settings = Settings.from_env(Env({**env, "BREAKGLASS_EDGE_SECRET_FILE": str(secret)}))
    assert settings.auth_configured and settings.edge_secret == "a-proxy-secret-of-some-length"
    assert not replace(settings, edge_secret=None).auth_configured
