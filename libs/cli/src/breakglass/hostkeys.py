"""Seeing and pinning an SSH server's host key.

A key is pinned only after someone vouched for it: the operator, who
compares the fingerprint with the one the host itself prints
(`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), or an expected
fingerprint given up front. Nothing here trusts a key because it was first.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from dataclasses import dataclass


class HostKeyError(Exception):
    """The host key could not be seen or did not match; the message says why."""


@dataclass(frozen=True)
class HostKey:
    kind: str
    blob: str  # base64, as in known_hosts

    @property
    def fingerprint(self) -> str:
        """OpenSSH's SHA256 fingerprint (what `ssh-keygen -l` prints)."""
        digest = hashlib.sha256(base64.b64decode(self.blob)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    def known_hosts_line(self, host: str, port: int) -> str:
        name = host if port == 22 else f"[{host}]:{port}"
        return f"{name} {self.kind} {self.blob}\n"


def scan(host: str, port: int, timeout: int = 5) -> list[HostKey]:
    """The host keys `host:port` presents now (ssh-keyscan)."""
    keyscan = shutil.which("ssh-keyscan")
    if keyscan is None:
        raise HostKeyError("ssh-keyscan is missing: install openssh-client")
    try:
        res = subprocess.run(
            [keyscan, "-T", str(timeout), "-p", str(port), host],
            capture_output=True, text=True, timeout=timeout * 4, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise HostKeyError(f"{host}:{port} did not answer within {timeout * 4}s") from None
    keys = []
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#"):
            keys.append(HostKey(parts[1], parts[2]))
    if not keys:
        raise HostKeyError(f"no SSH server answered at {host}:{port}")
    return keys


def matching(keys: list[HostKey], fingerprint: str) -> list[HostKey]:
    """The keys with this fingerprint (`SHA256:...`, the prefix optional)."""
    want = fingerprint.strip()
    want = want if want.startswith("SHA256:") else "SHA256:" + want
    return [k for k in keys if k.fingerprint == want.rstrip("=")]
