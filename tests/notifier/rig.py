"""The notifier's test rig: a real HTTP receiver on loopback and the
notifier's own loop run in-process (the real nats-server comes from the
root conftest).

`examples/` is not an installed package: the repository root goes on
sys.path so `examples.notifier` imports the way `python -m examples.notifier`
runs it.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from examples.notifier.main import serve  # noqa: E402
from examples.notifier.position import Position  # noqa: E402
from examples.notifier.settings import Settings  # noqa: E402


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class Receiver:
    """A loopback HTTP server that records every request it gets and answers
    with `status` (or with what `respond(n)` returns for the n-th request)."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[Received] = []
        self.status = 200
        self.respond: Callable[[int], int] | None = None
        self._lock = threading.Lock()
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/notify/topic"

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.requests.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    n = len(receiver.requests)
                status = receiver.respond(n) if receiver.respond else receiver.status
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.snapshot()
            if len(got) >= count:
                return got
            await asyncio.sleep(0.02)
        raise AssertionError(f"expected {count} request(s) within {timeout} s, got {len(self.snapshot())}")


def settings_for(nats_url: str, url: str, **overrides: object) -> Settings:
    """Test settings: short timeouts and backoff so retries take tenths of a
    second. The state file is relative: each test runs in its own directory
    (conftest), so two runs of one test share it and two tests never do."""
    base = Settings(nats_url=nats_url, url=url, timeout=2.0, retry_base=0.1, retry_max=0.4)
    return replace(base, **overrides)  # type: ignore[arg-type]


def state_of(settings: Settings) -> Position | None:
    return Position.load(Path(settings.state_file), settings.stream)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[None]:
    """The notifier's loop in this event loop, ready (consumer created and
    bound) on entry, stopped cleanly on exit."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(settings, stop, ready=ready, poll_seconds=0.2))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    if not ready.is_set():
        waiter.cancel()
        stop.set()
        if task.done():
            task.result()  # raises what went wrong
        raise AssertionError("the notifier did not become ready")
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def settled(js, settings: Settings, last_seq: int, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Wait until the notifier has settled every event up to `last_seq`
    (its state file says so): after this, nothing more will be posted."""
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = state_of(settings)
        if state is not None and state.position >= last_seq and not state.pending:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the notifier did not settle up to #{last_seq}: {state}")
