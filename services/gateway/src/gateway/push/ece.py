"""RFC 8291 message encryption for Web Push: `aes128gcm` (RFC 8188), one
record, to the subscription's P-256 key and auth secret.

Only the browser that made the subscription holds the private key, so the
push service relaying the message reads nothing of it."""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

#: The record size announced in the header: one record holds any payload
#: a push service accepts (4096 bytes at most, RFC 8030 §7.2).
RECORD_SIZE = 4096
#: What a push service must accept; the encrypted body must stay within it.
MAX_PAYLOAD = RECORD_SIZE - 16 - 1 - 86  # tag, delimiter, header


class BadSubscriptionKey(ValueError):
    """The subscription's `p256dh` or `auth` is not a usable key."""


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def encrypt(plaintext: bytes, p256dh: bytes, auth: bytes, *, salt: bytes | None = None,
            sender: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    """The request body for one push: header (salt, record size, the
    sender's ephemeral public key) and the one encrypted record."""
    if len(plaintext) > MAX_PAYLOAD:
        raise ValueError(f"a push payload holds at most {MAX_PAYLOAD} bytes")
    if len(auth) != 16:
        raise BadSubscriptionKey("the subscription's auth secret must be 16 bytes")
    try:
        receiver = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), p256dh)
    except ValueError:
        raise BadSubscriptionKey("the subscription's p256dh is not a P-256 public key") from None
    sender = sender or ec.generate_private_key(ec.SECP256R1())
    sender_public = sender.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    salt = salt or os.urandom(16)
    shared = sender.exchange(ec.ECDH(), receiver)
    # RFC 8291 §3.3-3.4: the auth secret and both public keys go into the IKM.
    prk_key = _hmac(auth, shared)
    ikm = _hmac(prk_key, b"WebPush: info\x00" + p256dh + sender_public + b"\x01")
    prk = _hmac(salt, ikm)
    cek = _hmac(prk, b"Content-Encoding: aes128gcm\x00\x01")[:16]
    nonce = _hmac(prk, b"Content-Encoding: nonce\x00\x01")[:12]
    record = AESGCM(cek).encrypt(nonce, plaintext + b"\x02", None)  # 0x02: the last record
    header = salt + struct.pack("!IB", RECORD_SIZE, len(sender_public)) + sender_public
    return header + record
