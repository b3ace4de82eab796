"""What pve-executor keeps in the KV bucket: one record per idempotency key,
one lock per VM. Both are compare-and-set, so any number of executor
replicas agree.

- `verbs.<sha256(key)>` (`VerbRecord`): created *before* a verb runs. Whoever
  creates it runs the verb; anyone else with the same key gets its result.
  A key names one press, so its first answer is its only answer, whatever
  it was (success, failure, busy).
- `vmlocks.<vmid>` (`VmLock`): held while a mutating verb runs on that VM,
  so two presses cannot interleave a stop with a reset. A lock older than
  the longest a verb can take belongs to an executor that died holding it,
  and may be taken over (CAS on its revision, so only one taker wins).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from events.codec import ContractError, decode, encode
from events.commands import VerbRecord
from events.topology import verb_key, vm_lock_key

log = logging.getLogger("pve-executor.records")


class VmLock(msgspec.Struct, kw_only=True):
    """A VM's lock: which request holds it, since when (epoch seconds).

    Private to pve-executor (the only reader and writer of `vmlocks.*`)."""

    request_id: str
    verb: str
    by: str
    taken_at: float


_vm_lock_decoder = msgspec.json.Decoder(VmLock)


def _unknown(now: float) -> VmLock:
    """A holder we could not read (it changed under us): still a holder."""
    return VmLock(request_id="unknown", verb="unknown", by="unknown", taken_at=now)


class IdempotencyRecords:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def claim(self, key: str, record: VerbRecord) -> VerbRecord | None:
        """Create the key's record. None: it is ours, run the verb. Otherwise
        the record someone created first (state running or done)."""
        try:
            await self._kv.create(verb_key(key), encode(record))
            return None
        except KeyWrongLastSequenceError:
            pass
        existing = await self.read(key)
        # Unreadable or gone between the two calls: still not ours to run.
        return existing or VerbRecord(request_id=record.request_id, verb=record.verb, state="running")

    async def read(self, key: str) -> VerbRecord | None:
        try:
            entry = await self._kv.get(verb_key(key))
        except KeyNotFoundError:
            return None
        try:
            return decode(entry.value or b"", VerbRecord)
        except ContractError as exc:
            log.error("unreadable verb record for an idempotency key: %s", exc)
            return None

    async def finish(self, key: str, record: VerbRecord) -> None:
        await self._kv.put(verb_key(key), encode(record))

    async def wait_done(self, key: str, seconds: float, poll: float = 0.1) -> VerbRecord | None:
        """The key's record once it is done, or None after `seconds`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            record = await self.read(key)
            if record is not None and record.state == "done" and record.result is not None:
                return record
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(min(poll, max(0.0, deadline - loop.time())))


@dataclass(frozen=True, slots=True)
class HeldLock:
    vmid: int
    revision: int
    lock: VmLock


class VmLocks:
    def __init__(self, kv: KeyValue, *, stale_after: float, clock: Callable[[], float] = time.time) -> None:
        self._kv = kv
        self._stale_after = stale_after
        self._clock = clock

    async def take(self, vmid: int, request_id: str, verb: str, by: str) -> HeldLock | VmLock:
        """The lock (ours now), or the lock that holds the VM (busy)."""
        key = vm_lock_key(vmid)
        lock = VmLock(request_id=request_id, verb=verb, by=by, taken_at=self._clock())
        try:
            return HeldLock(vmid, await self._kv.create(key, encode(lock)), lock)
        except KeyWrongLastSequenceError:
            pass
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:  # released in between: one more try
            try:
                return HeldLock(vmid, await self._kv.create(key, encode(lock)), lock)
            except KeyWrongLastSequenceError:
                return await self._holder(key) or _unknown(self._clock())
        current = self._decode(entry.value)
        if current is not None and self._clock() - current.taken_at < self._stale_after:
            return current
        log.warning("taking over the abandoned lock of VM %d (%s)", vmid,
                    f"{current.verb} by {current.by}, request {current.request_id}" if current else "unreadable")
        try:
            return HeldLock(vmid, await self._kv.update(key, encode(lock), last=entry.revision), lock)
        except KeyWrongLastSequenceError:  # another taker won
            return await self._holder(key) or _unknown(self._clock())

    async def release(self, held: HeldLock) -> None:
        try:
            await self._kv.delete(vm_lock_key(held.vmid), last=held.revision)
        except KeyWrongLastSequenceError:
            log.warning("the lock of VM %d was taken over while request %s held it",
                        held.vmid, held.lock.request_id)

    async def _holder(self, key: str) -> VmLock | None:
        try:
            return self._decode((await self._kv.get(key)).value)
        except KeyNotFoundError:
            return None

    @staticmethod
    def _decode(value: bytes | None) -> VmLock | None:
        try:
            return _vm_lock_decoder.decode(value or b"")
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
