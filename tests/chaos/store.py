"""Reading what NATS holds, from the test's own connection (opened per
question, so a nats-server restart in between does not matter): the stored
events of a subject with their chain links, KV keys, consumer state."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError, NoKeysError, NotFoundError

from events import chain, subjects
from eventbus.topology import EXECUTOR_CONSUMER, Topology, lock_key

TOPOLOGY = Topology()


@dataclass(frozen=True)
class Stored:
    seq: int
    data: bytes
    link: str
    #: The service whose subject held it ("" before per-writer subjects): bound into the link.
    writer: str = ""

    @property
    def event(self) -> dict:
        return json.loads(self.data)

    @property
    def kind(self) -> str:
        return self.event.get("kind", "")


@contextlib.asynccontextmanager
async def connected(url: str, timeout: float = 30.0) -> AsyncIterator[object]:
    """A JetStream context; waits for the server (it may be restarting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            nc = await nats.connect(url, name="chaos-checker", connect_timeout=1, max_reconnect_attempts=0,
                                    allow_reconnect=False)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


async def read_subject(js, filters: tuple[str, ...]) -> list[Stored]:  # type: ignore[no-untyped-def]
    """Every stored message on the `filters` (events.subjects), in stream order (a full replay)."""
    last = 0
    for subject in filters:
        try:
            last = max(last, (await js.get_last_msg(TOPOLOGY.events_stream, subject)).seq)
        except NotFoundError:
            pass
    if not last:
        return []
    out: list[Stored] = []
    sub = await js.subscribe(filters[0], stream=TOPOLOGY.events_stream, ordered_consumer=True,
                             config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, inactive_threshold=2.0,
                                                   filter_subjects=list(filters)))
    try:
        while True:
            msg = await sub.next_msg(timeout=10)
            seq = msg.metadata.sequence.stream
            out.append(Stored(seq, msg.data, (msg.headers or {}).get(chain.HEADER, ""),
                              subjects.writer_of(msg.subject) or ""))
            if seq >= last:
                return out
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def session_events(js, session_id: str) -> list[Stored]:  # type: ignore[no-untyped-def]
    return await read_subject(js, subjects.session_filters(session_id))


async def lock_held(js, session_id: str) -> bool:  # type: ignore[no-untyped-def]
    kv = await js.key_value(TOPOLOGY.kv_bucket)
    try:
        entry = await kv.get(lock_key(session_id))
    except KeyNotFoundError:
        return False
    return bool(entry.value)


async def held_locks(js) -> list[str]:  # type: ignore[no-untyped-def]
    """Turn-lock keys still present in the KV bucket."""
    kv = await js.key_value(TOPOLOGY.kv_bucket)
    try:
        keys = await kv.keys()
    except NoKeysError:
        return []
    held = []
    for key in keys:
        if key.startswith("locks."):
            with contextlib.suppress(KeyNotFoundError):
                if (await kv.get(key)).value:
                    held.append(key)
    return held


async def vm_lock(js, vmid: int = 102) -> dict | None:  # type: ignore[no-untyped-def]
    kv = await js.key_value(TOPOLOGY.kv_bucket)
    try:
        entry = await kv.get(f"vmlocks.{vmid}")
    except KeyNotFoundError:
        return None
    return json.loads(entry.value) if entry.value else None


async def executor_idle(js) -> bool:  # type: ignore[no-untyped-def]
    """No verb command waits for pve-executor or is being delivered to it."""
    info = await js.consumer_info(TOPOLOGY.commands_stream, EXECUTOR_CONSUMER)
    return info.num_pending == 0 and info.num_ack_pending == 0
