"""The application server's identity toward push services (RFC 8292).

One P-256 key, generated the first time the gateway starts and kept in the
data directory (mode 0600): a browser's subscription is bound to its public
half (the `applicationServerKey`), so it must survive restarts, and every
gateway replica must read the same file. Each push request carries a JWT
signed with it (`aud` = the push service's origin, `exp` within 24 h,
`sub` = a contact) and the public key, in `Authorization: vapid t=..., k=...`.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

logger = logging.getLogger("gateway.push")

KEY_FILE = "vapid-private.pem"
#: How long a signed JWT is valid (RFC 8292 §2: at most 24 hours).
JWT_SECONDS = 12 * 3600


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_or_create(data_dir: Path) -> ec.EllipticCurvePrivateKey:
    """The key in `data_dir`, made (0600, exclusively) when there is none.
    Two gateways starting at once: one creates, the other reads it."""
    path = data_dir / KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another process is writing it right now
            pem = path.read_bytes()
            if pem.strip():
                break
            time.sleep(0.05)
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError(f"{path} does not hold a P-256 private key")
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    logger.info("made the Web Push (VAPID) key %s", path)
    return key


def public_key(key: ec.EllipticCurvePrivateKey) -> str:
    """The `applicationServerKey` browsers subscribe with (base64url, uncompressed point)."""
    return b64url(key.public_key().public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.UncompressedPoint))


def audience(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


def authorization(key: ec.EllipticCurvePrivateKey, endpoint: str, contact: str, *, now: float | None = None) -> str:
    """The `Authorization` header value for one request to `endpoint`."""
    now = time.time() if now is None else now
    header = b64url(json.dumps({"typ": "JWT", "alg": "ES256"}, separators=(",", ":")).encode())
    claims = {"aud": audience(endpoint), "exp": int(now) + JWT_SECONDS, "sub": contact}
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{body}".encode()
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    signature = b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    return f"vapid t={header}.{body}.{signature}, k={public_key(key)}"
