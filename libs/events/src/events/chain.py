"""Tamper evidence: each stored event is linked to the previous event of its
session by a SHA-256 hash, so an export can be verified offline.

The rule (documented in docs/audit.md):

    link(n) = sha256( link(n-1) as lower-case hex  ||  "\\n"  ||  the event's stored bytes )
    link(before the first event) = "" (empty string)

An event stored on a per-writer subject (events.subjects.session_writer)
binds its writer too, so an export cannot re-attribute it:

    link(n) = sha256( link(n-1)  ||  "\\n"  ||  writer  ||  "\\n"  ||  the event's stored bytes )

The link travels in the message header `Breakglass-Chain`, beside the
stored bytes it covers, so the event body (what clients and integrators
read) is untouched and nothing needs re-encoding to check it.

Why it cannot fork: an appender publishes with
`Nats-Expected-Last-Subject-Sequence` set to the sequence whose link it
extended, over every writer's subject of the session at once
(`Nats-Expected-Last-Subject-Sequence-Subject`, a wildcard). If another appender (gateway, runner, executor) got in first,
JetStream refuses the publish and the appender re-reads the new tail and
links to it. So every link has exactly one successor.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

HEADER = "Breakglass-Chain"
GENESIS = ""


def link(previous: str, data: bytes, writer: str = "") -> str:
    if writer:
        return hashlib.sha256(previous.encode() + b"\n" + writer.encode() + b"\n" + data).hexdigest()
    return hashlib.sha256(previous.encode() + b"\n" + data).hexdigest()


@dataclass(frozen=True)
class Broken:
    """The first link that does not hold, and why."""

    index: int
    seq: int | None
    reason: str


def verify(entries: Iterable[tuple], previous: str = GENESIS) -> Broken | None:
    """Check (seq, link, data[, writer]) tuples in order; None when every link holds."""
    last_seq: int | None = None
    for index, (seq, claimed, data, *rest) in enumerate(entries):
        if seq is not None and last_seq is not None and seq <= last_seq:
            return Broken(index, seq, f"sequence {seq} does not follow {last_seq}")
        expected = link(previous, data, rest[0] if rest else "")
        if claimed != expected:
            return Broken(index, seq, "hash does not match the event and the link before it (altered, inserted or removed)")
        previous, last_seq = claimed, seq
    return None
