"""Power verbs from the gateway's side: check, record, publish, wait.

The verb was already parsed into the enum by the route; it is checked
against the allow-list again here (defence in depth: pve-executor and the
host script check it too). With an idempotency key, the command's
`Nats-Msg-Id` is that key: a retried press is dropped by JetStream as a
duplicate, and its caller gets the first press's result from the KV record
pve-executor keeps, so a mutating verb never runs twice.
"""

from __future__ import annotations

import asyncio
import logging

from nats.js.errors import KeyNotFoundError

from events import subjects
from events.codec import ContractError, decode, encode
from events.commands import RunVerb, VerbRecord, VerbResult
from events.kinds import VerbPhase, VerbProgressed
from events.topology import verb_key
from events.types import new_id
from events.verbs import ALL, Verb

from .bus import Bus

log = logging.getLogger("gateway.verbs")

POLL_SECONDS = 0.2


class VerbNotAllowed(ValueError):
    pass


def no_answer(verb: Verb, seconds: float) -> VerbResult:
    return VerbResult(
        verb=verb, exit_code=124,
        stderr=f"no answer from pve-executor within {seconds:g} s; check the verb's outcome with `status`",
    )


async def request_verb(
    bus: Bus, verb: Verb, *, by: str, wait_seconds: float,
    session_id: str | None = None, idempotency_key: str | None = None,
) -> VerbResult:
    if verb not in ALL:
        raise VerbNotAllowed(verb)
    request_id = new_id()
    requested = VerbProgressed(session_id=session_id, by=by, verb=verb, phase=VerbPhase.REQUESTED, request_id=request_id)
    if session_id is not None:
        await bus.log.append(requested, msg_id=f"{request_id}:requested")
    await bus.log.append_audit("verb", requested, msg_id=f"{request_id}:requested:audit")

    command = RunVerb(by=by, request_id=request_id, verb=verb, session_id=session_id, idempotency_key=idempotency_key)
    nc = bus.nc
    assert nc is not None
    reply = await nc.subscribe(subjects.verb_reply(request_id), max_msgs=1)
    try:
        ack = await bus.js.publish(subjects.VERB, encode(command), headers={"Nats-Msg-Id": idempotency_key or request_id})
        if ack.duplicate and idempotency_key:
            log.info("verb %s with key %s was already requested; answering with its result", verb.value, idempotency_key)
            return await _stored_result(bus, verb, idempotency_key, wait_seconds)
        try:
            msg = await reply.next_msg(timeout=wait_seconds)
        except Exception:
            return no_answer(verb, wait_seconds)
        try:
            return decode(msg.data, VerbResult)
        except ContractError as exc:
            log.error("pve-executor sent a malformed reply: %s", exc)
            return VerbResult(verb=verb, exit_code=1, stderr="pve-executor sent a malformed reply")
    finally:
        try:
            await reply.unsubscribe()
        except Exception:
            pass


async def _stored_result(bus: Bus, verb: Verb, idempotency_key: str, wait_seconds: float) -> VerbResult:
    kv = await bus.kv()
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while asyncio.get_running_loop().time() < deadline:
        try:
            record = decode((await kv.get(verb_key(idempotency_key))).value or b"", VerbRecord)
            if record.state == "done" and record.result is not None:
                return record.result
        except (KeyNotFoundError, ContractError):
            pass
        await asyncio.sleep(POLL_SECONDS)
    return no_answer(verb, wait_seconds)
