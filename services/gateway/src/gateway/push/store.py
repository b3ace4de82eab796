"""Push subscriptions in the KV bucket, per identity.

`pushsubs.<sha256 of the endpoint>` holds who subscribed (the identity the
pushes, and the decision grants they carry, belong to), the endpoint, the
browser's keys and when it expires. A browser posts its subscription each
time the page loads, which renews it; one not renewed expires
(BREAKGLASS_PUSH_SUBSCRIPTION_DAYS, or sooner when the browser says so) and
is dropped, as is one the push service answers 404 or 410 for.

Every gateway keeps the live set in memory from one KV watch, so a push
needs no listing on its path."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import time
from urllib.parse import urlsplit

import msgspec
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from eventbus.topology import PUSH_SUB_KEYS, push_sub_key

from . import ece
from .vapid import b64url_decode

log = logging.getLogger("gateway.push")


class Subscription(msgspec.Struct, kw_only=True):
    """Private to the gateway (the only reader and writer of `pushsubs.*`)."""

    identity: str
    endpoint: str
    p256dh: str
    auth: str
    created_at: float
    expires_at: float

    @property
    def key(self) -> str:
        return key_of(self.endpoint)

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at


_decoder = msgspec.json.Decoder(Subscription)


class BadSubscription(ValueError):
    """A subscription the gateway will not store; the message says why."""


def key_of(endpoint: str) -> str:
    return push_sub_key(hashlib.sha256(endpoint.encode()).hexdigest())


def check_endpoint(endpoint: str, *, allow_http: bool) -> str:
    parts = urlsplit(endpoint)
    if parts.scheme != "https" and not (allow_http and parts.scheme == "http"):
        raise BadSubscription("a push endpoint must be an https:// URL")
    if not parts.hostname or parts.username or parts.password or parts.fragment:
        raise BadSubscription("a push endpoint must be a plain URL with a host")
    if not allow_http and internal_host(parts.hostname):
        raise BadSubscription("a push endpoint must be a public push service, not a loopback, private or "
                              "link-local address")
    return endpoint


#: Names that never leave this machine or its network.
_INTERNAL_SUFFIXES = ("localhost", ".localhost", ".local", ".internal", ".localdomain", ".home.arpa")


def internal_host(hostname: str) -> bool:
    """True for a host the gateway must not POST to for whoever subscribed
    (the gateway would reach its own network: SSRF). IP literals are judged
    by their address, names by their suffix; a public name that resolves to
    an internal address is not caught here (no DNS at subscribe time), which
    is why the push carries only ciphertext and no redirect is followed."""
    name = hostname.strip("[]").rstrip(".").lower()
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return name.endswith(_INTERNAL_SUFFIXES) or "." not in name
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def check_keys(p256dh: str, auth: str) -> None:
    try:
        point, secret = b64url_decode(p256dh), b64url_decode(auth)
    except ValueError:
        raise BadSubscription("the subscription's keys must be base64url") from None
    try:
        ece.encrypt(b"", point, secret)  # the same checks a push will make
    except ece.BadSubscriptionKey as exc:
        raise BadSubscription(str(exc)) from None


class Subscriptions:
    """The bucket's subscriptions, and this gateway's copy of them."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self.live: dict[str, Subscription] = {}
        self._watch: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def put(self, sub: Subscription) -> None:
        await self._kv.put(sub.key, msgspec.json.encode(sub))
        self.live[sub.key] = sub  # at once here; the watch tells the other gateways

    async def remove(self, key: str, why: str) -> None:
        self.live.pop(key, None)
        try:
            await self._kv.delete(key)
            log.info("push subscription %s removed: %s", key, why)
        except KeyNotFoundError:
            pass

    async def remove_endpoint(self, endpoint: str, identity: str) -> bool:
        """Remove the caller's own subscription; False when it has none there."""
        key = key_of(endpoint)
        try:
            current = _decoder.decode((await self._kv.get(key)).value or b"")
        except (KeyNotFoundError, msgspec.DecodeError, msgspec.ValidationError):
            return False
        if current.identity != identity:
            return False
        await self.remove(key, f"unsubscribed by {identity}")
        return True

    def current(self, now: float | None = None) -> tuple[list[Subscription], list[Subscription]]:
        """(live, expired) subscriptions."""
        now = time.time() if now is None else now
        subs = list(self.live.values())
        return [s for s in subs if not s.expired(now)], [s for s in subs if s.expired(now)]

    async def start(self) -> None:
        self._watch = asyncio.ensure_future(self._follow())
        await asyncio.wait_for(self._ready.wait(), 10.0)

    async def _follow(self) -> None:
        while True:
            try:
                watcher = await self._kv.watch(f"{PUSH_SUB_KEYS}.*")
                try:
                    async for entry in watcher:
                        if entry is None:
                            self._ready.set()
                            continue
                        if entry.operation in ("DEL", "PURGE") or not entry.value:
                            self.live.pop(entry.key, None)
                            continue
                        try:
                            self.live[entry.key] = _decoder.decode(entry.value)
                        except (msgspec.DecodeError, msgspec.ValidationError):
                            log.warning("unreadable push subscription %s ignored", entry.key)
                finally:
                    await watcher.stop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the connection went away: watch again
                log.info("push subscription watch restarts: %s", exc)
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
