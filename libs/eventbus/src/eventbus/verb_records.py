"""A press's idempotency record (`VerbRecord` in the KV bucket), as those
who wait for its result read it.

Two waiters: pve-executor, when a repeated key arrives while the first
press still runs, and the gateway, when JetStream dropped a press as a
duplicate of an earlier one. Both need the first press's result or "not
yet", so the reading, the "is it done" test and the wait are written once.
"""

from __future__ import annotations

import logging

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from events.codec import ContractError, decode
from events.commands import VerbDone, VerbRecord, VerbResult
from .retry import Backoff, polling
from .topology import verb_key

log = logging.getLogger("eventbus.verb_records")

#: How often a waiter reads the record again.
POLL_SECONDS = 0.1


async def read(kv: KeyValue, key: str) -> VerbRecord | None:
    """The record of idempotency key `key`; None when there is none or it
    cannot be read (either way nobody can be answered from it)."""
    try:
        entry = await kv.get(verb_key(key))
    except KeyNotFoundError:
        return None
    try:
        return decode(entry.value or b"", VerbRecord)
    except ContractError as exc:
        log.error("unreadable verb record for an idempotency key: %s", exc)
        return None


def result_of(record: VerbRecord | None) -> VerbResult | None:
    """The record's one result once its press is done; None while it runs."""
    return record.result if isinstance(record, VerbDone) else None


async def wait_done(kv: KeyValue, key: str, seconds: float) -> VerbResult | None:
    """The result of `key`'s press once it is done, or None after `seconds`
    (the record is read once more at the deadline)."""

    async def done() -> VerbResult | None:
        return result_of(await read(kv, key))

    return await polling(done, Backoff(seconds, POLL_SECONDS))
