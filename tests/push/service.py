"""A push service on this machine (RFC 8030's side of Web Push), for tests.

It plays what FCM or Mozilla's autopush do for a browser, with the checks
they make plus one they cannot: it holds the subscription's private key (a
browser's, made here) so it decrypts what the gateway sent.

- `Authorization: vapid t=<JWT>, k=<key>` (RFC 8292): the ES256 signature
  verifies with `k`, `aud` is this service's origin, `exp` is in the future
  and at most 24 h away, `sub` is a mailto:/https: contact; anything else
  is 401/403 and nothing is kept.
- The body is `Content-Encoding: aes128gcm`, decrypted with the
  subscription's private key and auth secret by `http_ece` (an independent
  implementation, not the gateway's code).
- An endpoint can be told to answer 404 or 410 (unsubscribed / gone).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.servers import serve_app


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Browser:
    """One browser's subscription: what the page would post, and its secrets."""

    endpoint: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    def subscription(self, expiration_ms: float | None = None) -> dict[str, Any]:
        point = self.key.public_key().public_bytes(serialization.Encoding.X962,
                                                   serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": self.endpoint, "expirationTime": expiration_ms,
                "keys": {"p256dh": b64u(point), "auth": b64u(self.auth)}}


@dataclass
class Received:
    endpoint: str
    at: float
    payload: dict[str, Any]
    headers: dict[str, str]
    claims: dict[str, Any]


class PushService:
    def __init__(self) -> None:
        self.base = ""
        self.browsers: dict[str, Browser] = {}
        self.received: list[Received] = []
        self.refused: list[tuple[str, int, str]] = []
        self.answer: dict[str, int] = {}
        self.application_key: str | None = None  # the applicationServerKey subscribed with
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)

    def browser(self) -> Browser:
        token = uuid.uuid4().hex
        b = Browser(endpoint=f"{self.base}/push/{token}")
        self.browsers[token] = b
        return b

    def wait(self, count: int = 1, timeout: float = 10.0, **match: Any) -> list[Received]:
        """The pushes received whose payload has every `match` item, once
        there are `count` of them."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                found = [r for r in self.received if all(r.payload.get(k) == v for k, v in match.items())]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(found)} of {count} pushes matching {match} arrived; "
                                       f"got {[r.payload for r in self.received]}, refused {self.refused}")
                self._arrived.wait(left)

    def _refuse(self, token: str, status: int, why: str) -> Response:
        with self._arrived:
            self.refused.append((token, status, why))
            self._arrived.notify_all()
        return Response(why, status_code=status)

    def _vapid(self, header: str) -> dict[str, Any]:
        scheme, _, params = header.partition(" ")
        if scheme.lower() != "vapid":
            raise ValueError("not a vapid authorization")
        parts = dict(p.strip().split("=", 1) for p in params.split(","))
        jwt, key = parts["t"], parts["k"]
        if self.application_key is not None and key != self.application_key:
            raise ValueError("k is not the key the subscription was made with")
        head, body, sig = jwt.split(".")
        if json.loads(unb64u(head)) != {"typ": "JWT", "alg": "ES256"}:
            raise ValueError("JWT header is not ES256")
        raw = unb64u(sig)
        if len(raw) != 64:
            raise ValueError("ES256 signature is not 64 bytes")
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64u(key))
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        try:
            public.verify(der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise ValueError("JWT signature does not verify with k") from None
        claims = json.loads(unb64u(body))
        if claims.get("aud") != self.base:
            raise ValueError(f"aud {claims.get('aud')!r} is not {self.base}")
        if not time.time() < claims["exp"] <= time.time() + 24 * 3600:
            raise ValueError("exp is not within the next 24 h")
        if not str(claims.get("sub", "")).startswith(("mailto:", "https://")):
            raise ValueError("sub is not a contact")
        return claims

    async def _push(self, request: Request) -> Response:
        token = request.path_params["token"]
        browser = self.browsers.get(token)
        if browser is None:
            return self._refuse(token, 404, "no such subscription")
        if token in self.answer:
            return self._refuse(token, self.answer[token], "told to refuse")
        try:
            claims = self._vapid(request.headers.get("authorization", ""))
        except (ValueError, KeyError) as exc:
            return self._refuse(token, 403, f"VAPID: {exc}")
        if request.headers.get("content-encoding") != "aes128gcm" or "ttl" not in request.headers:
            return self._refuse(token, 400, "not aes128gcm, or no TTL")
        body = await request.body()
        if len(body) > 4096:
            return self._refuse(token, 413, "over 4096 bytes")
        try:
            plain = http_ece.decrypt(body, private_key=browser.key, auth_secret=browser.auth, version="aes128gcm")
        except Exception as exc:
            return self._refuse(token, 400, f"does not decrypt: {exc}")
        with self._arrived:
            self.received.append(Received(browser.endpoint, time.time(), json.loads(plain),
                                          dict(request.headers), claims))
            self._arrived.notify_all()
        return Response(status_code=201, headers={"Location": f"{self.base}/message/{uuid.uuid4().hex}"})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/push/{token}", self._push, methods=["POST"])])


@contextmanager
def push_service():
    service = PushService()
    with serve_app(service.app()) as base:
        service.base = base
        yield service
