"""The receiver's memory, in the KV bucket, changed only by compare-and-set
so that gateway replicas (and Alertmanager's retries) agree:

- an alert group (`alerts.group-<hash>`): its session, each alert's last
  recorded status (an alert is recorded once per status, however often
  Alertmanager repeats it), and whether a triage runs for it (`triage_until`:
  one at a time; a triage whose gateway died frees the group when it lapses);
- a VM's window (`alerts.vm-<name>`): its current alert session and when
  its last triage started. Within the window no other triage starts for
  that VM, and alerts of new groups join that session instead of opening
  one each: a storm of alerts makes one session with one triage.

Private to the gateway (no other service reads them): plain msgspec Structs
here, not contract types in libs/events.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue


S = TypeVar("S", bound=msgspec.Struct)
T = TypeVar("T")

CAS_ATTEMPTS = 20


class GroupState(msgspec.Struct, kw_only=True):
    session_id: str
    vm: str
    #: fingerprint -> "firing" | "resolved", as last recorded in the session.
    alerts: dict[str, str] = {}
    #: Epoch seconds until which a triage of this group is running (0: none).
    triage_until: float = 0.0

    @property
    def closed(self) -> bool:
        """Every alert of the group resolved: a new firing opens a new incident."""
        return bool(self.alerts) and all(status == "resolved" for status in self.alerts.values())

    def triaging(self, now: float) -> bool:
        return self.triage_until > now


class VmWindow(msgspec.Struct, kw_only=True):
    #: The VM's current alert session: new groups join it while it is open.
    session_id: str
    opened_at: float
    #: When the VM's last triage started (0: never).
    triaged_at: float = 0.0

    def open(self, now: float, window: float) -> bool:
        return now - self.opened_at < window

    def triaged_within(self, now: float, window: float) -> bool:
        return now - self.triaged_at < window


class Lost(RuntimeError):
    """Too many concurrent writers to one key: the caller answers 503."""


async def load(kv: KeyValue, key: str, type_: type[S]) -> tuple[S | None, int]:
    """The record and its revision (0: none, or unreadable: overwritten)."""
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None, 0
    try:
        return (msgspec.json.decode(entry.value, type=type_) if entry.value else None), entry.revision
    except msgspec.DecodeError:
        return None, entry.revision


async def save(kv: KeyValue, key: str, record: msgspec.Struct, revision: int) -> bool:
    """Compare-and-set; False when someone else wrote the key first."""
    try:
        if revision == 0:
            await kv.create(key, msgspec.json.encode(record))
        else:
            await kv.update(key, msgspec.json.encode(record), last=revision)
        return True
    except KeyWrongLastSequenceError:
        return False


async def change(kv: KeyValue, key: str, type_: type[S], edit: Callable[[S | None], Awaitable[tuple[S | None, T]]]) -> T:
    """Read, `edit`, compare-and-set, again on a conflict. `edit` returns
    the new record (None: leave it) and what `change` returns."""
    for _ in range(CAS_ATTEMPTS):
        current, revision = await load(kv, key, type_)
        new, answer = await edit(current)
        if new is None or await save(kv, key, new, revision):
            return answer
    raise Lost(key)


def now() -> float:
    return time.time()
