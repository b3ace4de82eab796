"""`python -m gateway` (what `breakglass gateway` runs)."""

from __future__ import annotations

import sys

import uvicorn

from events.config import ConfigError
from events.service import setup_logging

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
    # httptools: uvicorn's C HTTP parser/writer, a quarter less CPU per SSE
    # frame than h11 (BENCHMARKS.md), which 5,000 streams per host need.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None, access_log=False,
                http="httptools")


if __name__ == "__main__":
    main()
