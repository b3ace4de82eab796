"""Step-up: a fresh passkey assertion for one mutating verb request.

With BREAKGLASS_STEP_UP=1 a mutating verb, pressed or approved, runs only
after the operator's passkey (WebAuthn, user verification required) signed
a challenge made for exactly that request: who (the identity), what (press
or approve), which verb, which session and which request (the approval id,
or the press's idempotency key). A stolen bearer token or login cookie
alone then cannot run a mutating verb.

A challenge is 32 random bytes, kept in the KV bucket under the hash of
the challenge (`stepups.*`, which only the gateway may write), lives
`step_up_seconds`, and is deleted by compare-and-set before its signature
is checked: it is good for one request, once. The passkeys themselves are
`passkeys.<sha256 of the user>` (public keys and signature counters only).

The flow: a route that needs step-up and got none answers 428 with the
WebAuthn request options (`StepUpNeeded`); the PWA runs
`navigator.credentials.get` and sends the same request again with
`step_up` = the credential as JSON. A stale, replayed, foreign or
mismatched assertion is 403 with the reason (`StepUpRefused`).

`required(settings, verb)` is the one question other parts ask (a
notification action must open the page instead of deciding when it is
true).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any, Literal

import msgspec
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from webauthn import (
    generate_authentication_options, generate_registration_options, options_to_json,
    verify_authentication_response, verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria, PublicKeyCredentialDescriptor, ResidentKeyRequirement,
    UserVerificationRequirement,
)

from eventbus.topology import passkey_key, stepup_key
from events.verbs import Verb, is_mutating

from .bus import Bus
from .settings import Settings

Action = Literal["press", "approve", "register", "enrol"]
#: The most credentials one operator may register (a phone, a laptop, a spare key...).
MAX_PASSKEYS = 10


def required(settings: Settings, verb: Verb) -> bool:
    """Whether running `verb` (pressed or approved) needs a passkey assertion."""
    return settings.step_up and is_mutating(verb)


class Binding(msgspec.Struct, frozen=True, kw_only=True):
    """What one challenge is good for, and nothing else."""

    user: str
    action: Action
    verb: str = ""
    session_id: str | None = None
    #: The approval id (approve), the press's idempotency key (press, "" without one),
    #: how many passkeys the operator had when the challenge was made (register).
    subject: str = ""
    #: The VM pressed on (press): an assertion for one VM never presses on another.
    vm: str = ""

    def describe(self) -> str:
        where = f" on VM {self.vm}" if self.vm else ""
        where += f" in session {self.session_id}" if self.session_id else ""
        if self.action == "press" and self.subject:
            where += f" (idempotency key {self.subject})"
        return {"press": f"pressing `{self.verb}`{where}", "approve": f"approving `{self.verb}`{where}",
                "register": "registering a passkey", "enrol": "adding another passkey"}[self.action]


class Pending(msgspec.Struct, kw_only=True):
    binding: Binding
    #: The verb request the assertion unlocks (its `request_id`).
    request_id: str
    expires_at: float


class Passkey(msgspec.Struct, kw_only=True):
    id: str  # base64url credential id
    public_key: str  # base64url COSE key
    sign_count: int = 0
    created_at: float = 0.0


class Passkeys(msgspec.Struct, kw_only=True):
    user: str
    user_handle: str  # base64url, random, never the user name
    credentials: list[Passkey] = msgspec.field(default_factory=list)


class StepUpNeeded(Exception):
    """428: the request needs a passkey assertion; `options` ask for it."""

    def __init__(self, detail: str, options: dict[str, Any]) -> None:
        super().__init__(detail)
        self.detail = detail
        self.options = options


class StepUpRefused(Exception):
    """403: the assertion (or its absence) does not allow this request."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def install(app: FastAPI) -> None:
    """Render the two exceptions as the documented bodies."""

    async def needed(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StepUpNeeded)
        return JSONResponse({"detail": exc.detail, "step_up": exc.options}, status_code=428)

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StepUpRefused)
        return JSONResponse({"detail": exc.detail}, status_code=403)

    app.add_exception_handler(StepUpNeeded, needed)
    app.add_exception_handler(StepUpRefused, refused)


def _digest(value: bytes | str) -> str:
    return hashlib.sha256(value.encode() if isinstance(value, str) else value).hexdigest()


class StepUp:
    """Passkeys and challenges of every operator, in the KV bucket."""

    def __init__(self, bus: Bus, settings: Settings) -> None:
        self._bus = bus
        self._settings = settings

    # --- passkeys ---------------------------------------------------------------

    async def passkeys(self, user: str) -> tuple[Passkeys | None, int | None]:
        kv = await self._bus.kv()
        try:
            entry = await kv.get(passkey_key(_digest(user)))
        except KeyNotFoundError:
            return None, None
        try:
            return msgspec.json.decode(entry.value or b"", type=Passkeys), entry.revision
        except msgspec.DecodeError:
            return None, entry.revision

    async def registration_options(self, user: str, proof: dict[str, Any] | None = None) -> dict[str, Any]:
        """Creation options for a new passkey. The first is registered with
        the login alone; every further one needs an assertion of a passkey
        the operator already has (else whoever holds the token could enrol
        their own and step up with it)."""
        keys, _ = await self.passkeys(user)
        if keys is not None and len(keys.credentials) >= MAX_PASSKEYS:
            raise StepUpRefused(f"{user} already has {MAX_PASSKEYS} passkeys; remove one first")
        if keys is not None and keys.credentials:
            await self.demand(Binding(user=user, action="enrol"), proof, request_id="")
        handle = keys.user_handle if keys else _user_handle(user)
        # Bound to how many passkeys there are now: a challenge fetched while
        # there were none cannot register a second one without the enrol proof.
        challenge = await self._challenge(Binding(user=user, action="register", subject=str(_count(keys))),
                                          request_id="")
        options = generate_registration_options(
            rp_id=self._settings.webauthn_rp_id, rp_name="breakglass", user_name=user,
            user_id=base64url_to_bytes(handle), challenge=challenge, timeout=int(self._settings.step_up_seconds * 1000),
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED, user_verification=UserVerificationRequirement.REQUIRED),
            exclude_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(c.id))
                                 for c in (keys.credentials if keys else [])],
        )
        return json.loads(options_to_json(options))

    async def register(self, user: str, credential: dict[str, Any]) -> str:
        """Verify a registration made from `registration_options`; returns the
        new credential's id. Raises StepUpRefused."""
        challenge = _client_challenge(credential)
        keys, _ = await self.passkeys(user)
        await self._redeem(challenge, Binding(user=user, action="register", subject=str(_count(keys))))
        try:
            verified = verify_registration_response(
                credential=credential, expected_challenge=challenge, expected_rp_id=self._settings.webauthn_rp_id,
                expected_origin=list(self._settings.webauthn_origins), require_user_verification=True,
            )
        except (InvalidRegistrationResponse, ValueError, KeyError, TypeError) as exc:
            raise StepUpRefused(f"the passkey registration did not verify: {exc}") from None
        new = Passkey(id=bytes_to_base64url(verified.credential_id),
                      public_key=bytes_to_base64url(verified.credential_public_key),
                      sign_count=verified.sign_count, created_at=time.time())
        for _ in range(5):
            keys, revision = await self.passkeys(user)
            current = keys or Passkeys(user=user, user_handle=_user_handle(user))
            if any(c.id == new.id for c in current.credentials):
                raise StepUpRefused("this passkey is already registered")
            current.credentials.append(new)
            if await self._store(user, current, revision):
                return new.id
        raise StepUpRefused("the passkeys changed while registering; try again")

    async def _store(self, user: str, keys: Passkeys, revision: int | None) -> bool:
        kv = await self._bus.kv()
        data = msgspec.json.encode(keys)
        try:
            if revision is None:
                await kv.create(passkey_key(_digest(user)), data)
            else:
                await kv.update(passkey_key(_digest(user)), data, last=revision)
        except KeyWrongLastSequenceError:
            return False
        return True

    # --- step-up ----------------------------------------------------------------

    async def demand(self, binding: Binding, proof: dict[str, Any] | None, *, request_id: str) -> str:
        """The request id the verb runs under, once `proof` (a credential as
        JSON) is an assertion made for exactly `binding`. Without a proof:
        StepUpNeeded with options for a new challenge bound to `binding` and
        `request_id`. Anything else: StepUpRefused."""
        if proof is None:
            raise StepUpNeeded(f"confirm {binding.describe()} with your passkey",
                               await self.authentication_options(binding, request_id))
        return await self.verify(binding, proof)

    async def authentication_options(self, binding: Binding, request_id: str) -> dict[str, Any]:
        keys, _ = await self.passkeys(binding.user)
        if keys is None or not keys.credentials:
            raise StepUpRefused(f"{binding.describe()} needs a passkey (step-up is on), and {binding.user} has none: "
                                "register one in Settings first")
        challenge = await self._challenge(binding, request_id)
        options = generate_authentication_options(
            rp_id=self._settings.webauthn_rp_id, challenge=challenge,
            timeout=int(self._settings.step_up_seconds * 1000),
            allow_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(c.id)) for c in keys.credentials],
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        return {"request_id": request_id, "public_key": json.loads(options_to_json(options))}

    async def verify(self, binding: Binding, proof: dict[str, Any]) -> str:
        challenge = _client_challenge(proof)
        pending = await self._redeem(challenge, binding)
        keys, revision = await self.passkeys(binding.user)
        raw_id = proof.get("rawId") or proof.get("id")
        stored = next((c for c in (keys.credentials if keys else []) if c.id == raw_id), None)
        if keys is None or stored is None:
            raise StepUpRefused(f"this passkey is not registered for {binding.user}")
        try:
            verified = verify_authentication_response(
                credential=proof, expected_challenge=challenge, expected_rp_id=self._settings.webauthn_rp_id,
                expected_origin=list(self._settings.webauthn_origins),
                credential_public_key=base64url_to_bytes(stored.public_key),
                credential_current_sign_count=stored.sign_count, require_user_verification=True,
            )
        except (InvalidAuthenticationResponse, ValueError, KeyError, TypeError) as exc:
            raise StepUpRefused(f"the passkey assertion did not verify: {exc}") from None
        stored.sign_count = verified.new_sign_count
        await self._store(binding.user, keys, revision)  # a lost race only delays the counter
        return pending.request_id

    async def _challenge(self, binding: Binding, request_id: str) -> bytes:
        challenge = secrets.token_bytes(32)
        pending = Pending(binding=binding, request_id=request_id,
                          expires_at=time.time() + self._settings.step_up_seconds)
        await (await self._bus.kv()).put(stepup_key(_digest(challenge)), msgspec.json.encode(pending))
        return challenge

    async def _redeem(self, challenge: bytes, binding: Binding) -> Pending:
        """The challenge's record, deleted (compare-and-set) so no second
        request can use it; refused when unknown, used, expired or made for
        another request."""
        kv = await self._bus.kv()
        key = stepup_key(_digest(challenge))
        try:
            entry = await kv.get(key)
            pending = msgspec.json.decode(entry.value or b"", type=Pending)
        except (KeyNotFoundError, msgspec.DecodeError):
            raise StepUpRefused("this passkey confirmation is unknown or was already used; confirm again") from None
        if pending.binding != binding:
            who = "" if pending.binding.user == binding.user else f" by {pending.binding.user}"
            raise StepUpRefused(f"this passkey confirmation was made for {pending.binding.describe()}{who}, "
                                f"not for {binding.describe()}")
        try:
            await kv.delete(key, last=entry.revision)
        except KeyWrongLastSequenceError:
            raise StepUpRefused("this passkey confirmation was already used; confirm again") from None
        if time.time() >= pending.expires_at:
            raise StepUpRefused(f"this passkey confirmation expired (it is good for "
                                f"{self._settings.step_up_seconds:g} s); confirm again")
        return pending


def _count(keys: Passkeys | None) -> int:
    return len(keys.credentials) if keys is not None else 0


def _client_data(credential: dict[str, Any]) -> dict[str, Any]:
    try:
        data = json.loads(base64url_to_bytes(credential["response"]["clientDataJSON"]))
        if not isinstance(data, dict):
            raise ValueError
        return data
    except (KeyError, TypeError, ValueError):
        raise StepUpRefused("not a passkey credential: response.clientDataJSON is missing or unreadable") from None


def _client_challenge(credential: dict[str, Any]) -> bytes:
    if not isinstance(credential, dict):
        raise StepUpRefused("not a passkey credential")
    challenge = _client_data(credential).get("challenge")
    try:
        decoded = base64url_to_bytes(challenge) if isinstance(challenge, str) else b""
    except (ValueError, TypeError):
        decoded = b""
    if len(decoded) != 32:
        raise StepUpRefused("not a passkey credential made for this gateway (no challenge of it)")
    return decoded


def _user_handle(user: str) -> str:
    """WebAuthn's user handle: stable per operator, not the name itself."""
    return bytes_to_base64url(hashlib.sha256(b"breakglass passkey user:" + user.encode()).digest())
