"""`python -m gateway` (what `breakglass gateway` runs)."""

from __future__ import annotations

import asyncio
import socket
import sys
from types import FrameType

import uvicorn

from events.config import ConfigError
from eventbus.service import setup_logging

from .app import create_app
from .settings import Settings


def main() -> None:
    try:
        log = setup_logging("gateway")
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if not settings.auth_configured:
        log.warning("no BREAKGLASS_API_TOKEN and BREAKGLASS_TRUST_EDGE_HEADER=0: every /api request is refused")
    app = create_app(settings)
    # httptools: uvicorn's C HTTP parser/writer, less CPU per SSE frame than
    # h11 (BENCHMARKS.md), which thousands of streams per process need.
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None, access_log=False,
                            http="httptools")
    Server(config).run()


class Server(uvicorn.Server):
    """uvicorn waits for open responses before it stops, and an attach stream
    never ends by itself: a stop signal ends them first (the browsers resume
    by Last-Event-ID on another gateway or after the restart)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        streams = self.config.app.state.streams
        loop = getattr(self, "_loop", None)
        if loop is not None:
            loop.call_soon_threadsafe(streams.close)
        super().handle_exit(sig, frame)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)


if __name__ == "__main__":
    main()
