"""Browser logins: the cookie holds a random login id, the server the login.

`POST /api/login` trades the bearer token for a login id (32 random bytes).
The KV bucket keeps `logins.<sha256(id)>` (only the gateway's NATS user may
write the family; readers of the bucket see a hash, which opens nothing),
so every gateway replica honours it and `POST /api/logout` revokes it
everywhere. A login is bound to the token it was made with (an HMAC of the
token keyed by the login id): rotating BREAKGLASS_API_TOKEN ends every
login made with the old one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import msgspec
from nats.js.errors import KeyNotFoundError

from eventbus.topology import login_key

from .bus import Bus

#: How long a login lasts (the cookie's Max-Age too).
MAX_AGE = 30 * 24 * 3600


class Login(msgspec.Struct, kw_only=True):
    """Private to the gateway (the only reader and writer of `logins.*`)."""

    user: str
    expires_at: float
    token_mac: str


_decoder = msgspec.json.Decoder(Login)


def _key(login_id: str) -> str:
    return login_key(hashlib.sha256(login_id.encode()).hexdigest())


def _mac(login_id: str, token: str) -> str:
    return hmac.new(login_id.encode(), token.encode(), hashlib.sha256).hexdigest()


class Logins:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def open(self, user: str, token: str) -> str:
        """A new login for `user`; returns the id the cookie carries."""
        login_id = secrets.token_urlsafe(32)
        login = Login(user=user, expires_at=time.time() + MAX_AGE, token_mac=_mac(login_id, token))
        await (await self._bus.kv()).put(_key(login_id), msgspec.json.encode(login))
        return login_id

    async def who(self, login_id: str, token: str) -> str | None:
        """The user of a live login, None for anything else."""
        if not 20 <= len(login_id) <= 100:
            return None
        try:
            entry = await (await self._bus.kv()).get(_key(login_id))
            login = _decoder.decode(entry.value or b"")
        except (KeyNotFoundError, msgspec.DecodeError, msgspec.ValidationError):
            return None
        if time.time() >= login.expires_at or not hmac.compare_digest(login.token_mac, _mac(login_id, token)):
            return None
        return login.user

    async def revoke(self, login_id: str) -> None:
        if 20 <= len(login_id) <= 100:
            try:
                await (await self._bus.kv()).delete(_key(login_id))
            except KeyNotFoundError:
                pass
