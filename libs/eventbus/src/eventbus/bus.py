"""Connecting to NATS the same way in every service.

Reconnects forever (a service outlives a NATS restart) and reports
connection changes through the caller's logger instead of printing.

A service connects as the NATS user of its role (the user:password in its
URL, see eventbus.access) and reads replies under that role's own inbox
prefix, the only inbox its user may subscribe to. URLs carry passwords:
log them only through `redact`.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import unquote, urlsplit, urlunsplit

import nats
from nats.aio.client import Client

from . import access, metrics
from events.config import ConfigError, redact, servers

#: The oldest nats-server the services run against (README: Supported
#: versions): atomic batch publishes (`allow_atomic`) arrived in 2.12.
MIN_SERVER_VERSION = (2, 12)


class UnsupportedServer(ConfigError):
    """The NATS server is older than MIN_SERVER_VERSION."""


def check_server(nc: Client) -> None:
    try:
        version = nc.connected_server_version
        found = (version.major, version.minor)
    except ValueError:  # not semver: a build we cannot judge, so let it be
        return
    if found < MIN_SERVER_VERSION:
        raise UnsupportedServer(
            f"nats-server {version.major}.{version.minor}.{version.patch} is older than the supported "
            f"{'.'.join(map(str, MIN_SERVER_VERSION))}; upgrade it (README: Supported versions)"
        )


def role_of(url: str) -> str | None:
    """The eventbus.access role a URL's user is, if it is one."""
    try:
        user = unquote(urlsplit((servers(url) or [""])[0]).username or "")
    except ValueError:
        return None
    return user if user in access.ROLES else None


def inbox_for(name: str) -> dict[str, str]:
    """`inbox_prefix=` for a connection named after a role, else nothing."""
    return {"inbox_prefix": access.inbox_prefix(name)} if name in access.ROLES else {}


async def connect(url: str, name: str, *, log: logging.Logger | None = None, **options: object) -> Client:
    """Connect as `name`; a role of eventbus.access gets its own inbox prefix."""
    log = log or logging.getLogger(name)
    options = {**inbox_for(name), **options}

    async def on_error(exc: Exception) -> None:
        log.warning("nats error: %s", exc)

    async def on_disconnect() -> None:
        metrics.NATS_CONNECTED.set(0)
        metrics.NATS_DISCONNECTS.inc()
        log.warning("nats disconnected")

    async def on_reconnect() -> None:
        metrics.NATS_CONNECTED.set(1)
        log.info("nats reconnected")

    async def on_closed() -> None:
        metrics.NATS_CONNECTED.set(0)

    nc = await nats.connect(
        servers(url),
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
        allow_reconnect=True,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        closed_cb=on_closed,
        **options,
    )
    try:
        check_server(nc)
    except UnsupportedServer:
        await nc.close()
        raise
    metrics.NATS_CONNECTED.set(1)
    return nc


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
