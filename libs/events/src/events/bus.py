"""Connecting to NATS the same way in every service.

Reconnects forever (a service outlives a NATS restart) and reports
connection changes through the caller's logger instead of printing.
"""

from __future__ import annotations

import asyncio
import logging

import nats
from nats.aio.client import Client


async def connect(url: str, name: str, *, log: logging.Logger | None = None, **options: object) -> Client:
    log = log or logging.getLogger(name)

    async def on_error(exc: Exception) -> None:
        log.warning("nats error: %s", exc)

    async def on_disconnect() -> None:
        log.warning("nats disconnected")

    async def on_reconnect() -> None:
        log.info("nats reconnected")

    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
        allow_reconnect=True,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        **options,
    )


async def connect_or_stop(url: str, name: str, stop, *, log: logging.Logger | None = None) -> Client | None:  # type: ignore[no-untyped-def]
    """`connect`, which waits for NATS as long as it takes, unless `stop` is
    set first (then None): a service asked to stop while NATS is away stops."""
    connecting = asyncio.create_task(connect(url, name, log=log))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if connecting.done():
        return connecting.result()
    connecting.cancel()
    return None
