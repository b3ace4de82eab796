"""Run services in-process for tests, on real sockets.

The gateway runs under a real uvicorn server in a background thread (its own
event loop), so tests talk to it over HTTP exactly as a browser would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from breakglass.natsd import free_port


@contextmanager
def serve_app(app, *, host: str = "127.0.0.1") -> Iterator[str]:
    port = free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://{host}:{port}"
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the app did not start")
        time.sleep(0.01)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(10)


def wait_ready(base: str, timeout: float = 10.0) -> float:
    """Seconds until GET /ready answered 200."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"{base}/ready did not answer 200 within {timeout} s")
