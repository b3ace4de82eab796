"""The grant an approval's push carries: Approve/Deny from the notification.

The service worker that handles the notification's action holds no bearer
token; the push it received carries one of these instead (a random token;
the KV bucket keeps only its SHA-256, `pushgrants.<digest>`). The grant is
bound to one identity (the subscription the push was sent to, who is
recorded as the decider), one session, one approval and its verb request,
and expires with the approval itself (the `approval` event's time plus the
approval timeout). It is spent by compare-and-set on first use, so a
replayed action is refused even if it races the first.
"""

from __future__ import annotations

import hashlib
import secrets
import time

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from eventbus.topology import push_grant_key

#: A token is 32 random bytes, base64url (43 characters).
TOKEN_LENGTH = 43
#: The one route a grant opens, and the header that carries it (api/push.py, guard.py).
DECISION_PATH = "/api/push/decision"
GRANT_HEADER = "X-Breakglass-Push-Grant"


class PushGrant(msgspec.Struct, kw_only=True):
    identity: str
    session_id: str
    approval_id: str
    request_id: str
    verb: str
    expires_at: float
    spent_at: float | None = None
    spent_by_action: str | None = None


_decoder = msgspec.json.Decoder(PushGrant)


class GrantRefused(Exception):
    """The grant cannot decide: `status` (HTTP) and the reason, in words."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _key(token: str) -> str:
    return push_grant_key(hashlib.sha256(token.encode()).hexdigest())


def well_formed(token: str | None) -> bool:
    return bool(token) and len(token) == TOKEN_LENGTH and all(  # type: ignore[arg-type]
        c.isascii() and (c.isalnum() or c in "-_") for c in token)  # type: ignore[union-attr]


async def issue(kv: KeyValue, *, identity: str, session_id: str, approval_id: str, request_id: str,
                verb: str, expires_at: float) -> str:
    token = secrets.token_urlsafe(32)
    grant = PushGrant(identity=identity, session_id=session_id, approval_id=approval_id, request_id=request_id,
                      verb=verb, expires_at=expires_at)
    await kv.create(_key(token), msgspec.json.encode(grant))
    return token


def expired(stored: bytes, now: float) -> bool:
    """A stored grant that can decide nothing any more (the sweep drops it)."""
    try:
        return now >= _decoder.decode(stored).expires_at
    except (msgspec.DecodeError, msgspec.ValidationError):
        return True


async def spend(kv: KeyValue, token: str, action: str, *, now: float | None = None) -> PushGrant:
    """The grant, now spent; `GrantRefused` when it is unknown, spent or expired."""
    if not well_formed(token):
        raise GrantRefused(403, "not a decision grant")
    try:
        entry = await kv.get(_key(token))
        grant = _decoder.decode(entry.value or b"")
    except (KeyNotFoundError, msgspec.DecodeError, msgspec.ValidationError):
        raise GrantRefused(403, "unknown decision grant") from None
    if grant.spent_at is not None:
        raise GrantRefused(409, f"this notification's grant was already used ({grant.spent_by_action}); "
                                "it decides once")
    now = time.time() if now is None else now
    if now >= grant.expires_at:
        raise GrantRefused(410, "the approval's time is over; it was denied when it timed out")
    spent = msgspec.structs.replace(grant, spent_at=now, spent_by_action=action)
    try:
        await kv.update(entry.key, msgspec.json.encode(spent), last=entry.revision)
    except KeyWrongLastSequenceError:
        raise GrantRefused(409, "this notification's grant was already used; it decides once") from None
    return grant
