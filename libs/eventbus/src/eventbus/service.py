"""What every service's `__main__` does around its own work.

Logging set-up, the one-line exit on a bad setting, and a clean stop on
SIGINT/SIGTERM. Kept here so the three services do it identically.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping

from . import logfmt
from events.config import ConfigError, Env


_PR_SET_PDEATHSIG = 1
#: How long a service may take to wind down after SIGTERM before it is cancelled.
STOP_GRACE_SECONDS = 10.0
LEVELS = ("debug", "info", "warning", "error")


def die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the kernel SIGKILL the child when its parent
    dies, however it dies (SIGKILL included); None where prctl does not exist.

    Used by `breakglass up` for the services and by agent-runner for the CLI:
    SIGKILL rather than SIGTERM, so a child busy in a graceful shutdown (an
    open SSE stream, a CLI turn) never outlives the process that owns it.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded now: the child only calls it
    prctl = libc.prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def setup_logging(service: str, environ: Mapping[str, str] | None = None) -> logging.Logger:
    """Log as `BREAKGLASS_LOG_FORMAT` and `BREAKGLASS_LOG_LEVEL` say (see
    eventbus.logfmt); a bad value is a ConfigError like any other setting."""
    env = Env(environ)
    level = env.choice("LOG_LEVEL", "info", LEVELS)
    logfmt.install(service, level, env.choice("LOG_FORMAT", "auto", logfmt.FORMATS))
    return logging.getLogger(service)


def run(service: str, main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `main(stop)` until it returns; SIGINT/SIGTERM set `stop`.

    A `ConfigError` ends the process with one line and exit code 2.
    """
    try:
        log = setup_logging(service)
    except ConfigError as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        work = asyncio.create_task(main(stop))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not work.done():
            # Asked to stop: `main` winds down on its own (turns end, events
            # are written); if it is stuck (e.g. still waiting for NATS), it
            # is cancelled after the grace period instead of hanging.
            try:
                await asyncio.wait_for(work, STOP_GRACE_SECONDS)
            except asyncio.TimeoutError:
                log.warning("did not stop within %g s; cancelled", STOP_GRACE_SECONDS)
                return
        work.result()

    try:
        asyncio.run(runner())
    except ConfigError as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:
        log.error("cannot start: %s", exc)
        raise SystemExit(1) from None
