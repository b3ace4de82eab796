"""What pve-executor keeps in the KV bucket: one record per idempotency key,
one lock per VM. Both are compare-and-set, so any number of executor
replicas agree.

- `verbs.<sha256(key)>` (`VerbRecord`): created *before* a verb runs. Whoever
  creates it runs the verb; anyone else with the same key gets its result.
  A key names one press, so its first answer is its only answer, whatever
  it was (success, failure, busy).
- `vmlocks.<vmid>` (`VmLock`): held while a mutating verb runs on that VM,
  so two presses cannot interleave a stop with a reset. The holder renews
  a short lease on it while the verb runs; a lock whose lease lapsed
  belongs to an executor that died holding it. The lock says which request
  it was and whether the command may have reached the host, so whoever
  frees it (CAS on its revision, so only one wins) ends that verb as
  `lost` (verbs.VerbHandler.sweep).
- `reads.<slot>` (`VmLock` too): the same lease for a running read-only
  verb, which takes no VM lock but must not vanish with a dead executor
  either. A few fixed slots (the first free one is taken), so the sweep
  reads them all without a list permission and nothing piles up per verb;
  with every slot taken a read runs unleased rather than not at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from events.codec import ContractError, decode, encode
from eventbus.log import WRONG_LAST_SEQUENCE
from eventbus import verb_records
from events.commands import VerbDone, VerbRecord, VerbResult, VerbRunning
from eventbus.topology import READ_LEASE_SLOTS, read_lease_key, verb_key, vm_lock_key

logger = logging.getLogger("pve-executor.records")


class VmLock(msgspec.Struct, kw_only=True):
    """A VM's lock: which request holds it, since when (epoch seconds).

    Private to pve-executor (the only reader and writer of `vmlocks.*`).
    The fields after `taken_at` came with the lease; a lock without them
    (written by an older executor) lapses `stale_after` its `taken_at`."""

    request_id: str
    verb: str
    by: str
    taken_at: float
    #: The executor process holding it, and until when (epoch seconds).
    owner: str = ""
    lease_until: float = 0.0
    #: What ending the verb as `lost` needs: where to record and store it.
    session_id: str | None = None
    idempotency_key: str | None = None
    #: Set right before the command is sent: the host may have run it.
    sent: bool = False
    #: The VM the verb acts on (None: a lock from before many VMs, the default).
    vmid: int | None = None


_vm_lock_decoder = msgspec.json.Decoder(VmLock)


def _unknown(now: float) -> VmLock:
    """A holder we could not read (it changed under us): still a holder."""
    return VmLock(request_id="unknown", verb="unknown", by="unknown", taken_at=now)


class IdempotencyRecords:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def claim(self, key: str, record: VerbRunning) -> VerbRecord | None:
        """Create the key's record. None: it is ours, run the verb. Otherwise
        the record someone created first (running or done)."""
        try:
            await self._kv.create(verb_key(key), encode(record))
            return None
        except KeyWrongLastSequenceError:
            pass
        existing = await self.read(key)
        # Unreadable or gone between the two calls: still not ours to run.
        return existing or VerbRunning(request_id=record.request_id, verb=record.verb)

    async def read(self, key: str) -> VerbRecord | None:
        return await verb_records.read(self._kv, key)

    async def finish(self, key: str, record: VerbDone) -> bool:
        """Store the key's one result (CAS): only while the key's record is
        still `running` for the same request. False when it is done already
        (an executor that outlived its lease finds its verb ended `lost`)."""
        for _ in range(3):
            try:
                entry = await self._kv.get(verb_key(key))
            except KeyNotFoundError:
                return False
            try:
                current = decode(entry.value or b"", VerbRecord)
            except ContractError:
                current = None
            ours = isinstance(current, VerbRunning) and current.request_id == record.request_id
            if current is not None and not ours:
                return False
            try:
                await self._kv.update(verb_key(key), encode(record), last=entry.revision)
                return True
            except KeyWrongLastSequenceError:
                continue
        return False

    async def wait_done(self, key: str, seconds: float) -> VerbResult | None:
        """The key's result once its press is done, or None after `seconds`."""
        return await verb_records.wait_done(self._kv, key, seconds)


@dataclass(frozen=True, slots=True)
class HeldLock:
    #: The KV key held: a VM's lock or a read lease slot.
    key: str
    revision: int
    lock: VmLock


class VmLocks:
    def __init__(self, kv: KeyValue, *, stale_after: float, lease: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._kv = kv
        self._stale_after = stale_after
        self._lease = lease
        self._clock = clock

    def lapsed(self, lock: VmLock | None) -> bool:
        """Its holder is gone: lease lapsed (or, for a lock from before
        leases, older than the longest a verb can take; or unreadable)."""
        if lock is None:
            return True
        now = self._clock()
        if lock.lease_until:
            return lock.lease_until <= now
        return now - lock.taken_at >= self._stale_after

    async def take(self, vmid: int, lock: VmLock) -> HeldLock | VmLock:
        """The lock (ours now, its lease starting), or the lock that holds
        the VM (busy), a lapsed one included: `abandoned` + the sweep end
        and free those, never a taker in passing."""
        key = vm_lock_key(vmid)
        lock = self._leased(lock)
        for _ in range(2):
            try:
                return HeldLock(key, await self._kv.create(key, encode(lock)), lock)
            except KeyWrongLastSequenceError:
                pass
            holder = await self._holder(key)
            if holder is not None:
                return holder
        return _unknown(self._clock())

    async def take_read(self, lock: VmLock) -> HeldLock | None:
        """A read lease slot for a read-only verb (ours now, its lease
        starting); None when every slot is held."""
        lock = self._leased(lock)
        for slot in range(READ_LEASE_SLOTS):
            key = read_lease_key(slot)
            try:
                return HeldLock(key, await self._kv.create(key, encode(lock)), lock)
            except KeyWrongLastSequenceError:
                continue
        return None

    def _leased(self, lock: VmLock) -> VmLock:
        return msgspec.structs.replace(lock, taken_at=self._clock(), lease_until=self._clock() + self._lease)

    async def renew(self, held: HeldLock, *, sent: bool = False) -> HeldLock | None:
        """Extend the lease (and mark the command sent), CAS; None when the
        lock is not ours any more (an executor ended our verb as `lost`)."""
        lock = msgspec.structs.replace(held.lock, lease_until=self._clock() + self._lease,
                                       sent=held.lock.sent or sent)
        try:
            return HeldLock(held.key, await self._kv.update(held.key, encode(lock), last=held.revision), lock)
        except KeyWrongLastSequenceError:
            return None

    async def abandoned(self, vmid: int, *, alive: Callable[[VmLock], bool]) -> HeldLock | None:
        """The VM's lock if its holder is gone: its lease lapsed, and it is
        not `alive` (the caller's own verb still running, whatever its lease
        says after NATS was away)."""
        return await self._abandoned(vm_lock_key(vmid), alive)

    async def abandoned_reads(self, *, alive: Callable[[VmLock], bool]) -> list[HeldLock]:
        """The read lease slots whose holders are gone (as `abandoned`)."""
        found = await asyncio.gather(*(self._abandoned(read_lease_key(slot), alive)
                                       for slot in range(READ_LEASE_SLOTS)))
        return [held for held in found if held is not None]

    async def _abandoned(self, key: str, alive: Callable[[VmLock], bool]) -> HeldLock | None:
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        lock = self._decode(entry.value)
        if lock is not None and (alive(lock) or not self.lapsed(lock)):
            return None
        return HeldLock(key, entry.revision, lock or _unknown(0.0))

    async def release(self, held: HeldLock) -> bool:
        """Free the lock (CAS); False when it is not this revision any more."""
        try:
            await self._kv.delete(held.key, last=held.revision)
            return True
        except KeyWrongLastSequenceError:
            pass
        except APIError as exc:  # nats-py reports a stale revision on delete as a plain API error
            if exc.err_code != WRONG_LAST_SEQUENCE:
                raise
        logger.warning("%s was taken over while request %s held it", held.key, held.lock.request_id)
        return False

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
