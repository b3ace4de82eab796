"""`python -m gateway` stops on SIGTERM with attach streams open: the streams
end (the browsers resume by Last-Event-ID), then the process exits cleanly.
uvicorn alone would wait for every open response, and an attach stream
never ends by itself."""

from __future__ import annotations

import asyncio
import signal

import httpx

from breakglass.natsd import free_port
from tests.processes import Service, base_env
from tests.servers import wait_ready

TOKEN = "stop-test-token"


async def test_sigterm_ends_open_streams_and_the_process(nats_url, topology, tmp_path):
    port = free_port()
    gateway = Service("gateway", base_env(nats_url, tmp_path / "gw", BREAKGLASS_PORT=str(port),
                                          BREAKGLASS_API_TOKEN=TOKEN), tmp_path / "gateway.log").start()
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        wait_ready(base, timeout=30)
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=20) as c:
            sid = (await c.post("/api/session")).json()["session_id"]
            async with c.stream("GET", f"/api/session/{sid}/stream") as stream:
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
                assert stream.headers["cache-control"] == "no-store"
                assert stream.headers["x-accel-buffering"] == "no"
                seen = b""
                chunks = stream.aiter_bytes()
                async for chunk in chunks:
                    seen += chunk
                    if b"event: caught-up" in seen:
                        break
                gateway.signal(signal.SIGTERM)

                async def rest() -> None:
                    async for _ in chunks:  # ends when the gateway ends the stream
                        pass

                await asyncio.wait_for(rest(), 10)  # else it would wait for ever (keepalives)
        code = gateway.process.wait(15)  # type: ignore[union-attr]
    finally:
        gateway.stop()
    # uvicorn re-raises the signal it caught once it has shut down cleanly.
    assert code in (0, -signal.SIGTERM), gateway.log()
    assert "Application shutdown complete." in gateway.log() and "Traceback" not in gateway.log()
