"""Power verbs from the gateway's side: check, record, publish, wait.

The verb was already parsed into the enum by the route; it is checked
against the allow-list again here (defence in depth: pve-executor and the
host script check it too). With an idempotency key, the command's
`Nats-Msg-Id` is that key: a retried press is dropped by JetStream as a
duplicate, and its caller gets the first press's result from the KV record
pve-executor keeps, so a mutating verb never runs twice.

Recording and publishing are `eventbus.verb_requests`, shared with
agent-runner's verb tool.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from nats.js.errors import KeyNotFoundError

from eventbus import trace
from events.codec import ContractError, decode
from events.commands import RunVerb, VerbDone, VerbRecord, VerbResult
from events.kinds import VerbPhase, VerbProgressed
from eventbus.topology import verb_key
from events.types import new_id
from eventbus.verb_requests import no_answer, record_requested, run_verb
from events.verbs import ALL, Verb
from events.vms import Vm, VmList

from .bus import Bus

log = logging.getLogger("gateway.verbs")

POLL_SECONDS = 0.2

__all__ = ["VerbNotAllowed", "no_answer", "request_verb"]


class VerbNotAllowed(ValueError):
    pass


async def request_verb(
    bus: Bus, verb: Verb, *, by: str, wait_seconds: float, vm: Vm, vms: VmList,
    session_id: str | None = None, idempotency_key: str | None = None,
) -> VerbResult:
    if verb not in ALL:
        raise VerbNotAllowed(verb)
    if vm not in vms.vms:  # the route resolved it from the list; checked again all the same
        raise VerbNotAllowed(f"VM {vm.vmid} is not in BREAKGLASS_VMS")
    # The HTTP request's own id (eventbus.trace), so one id names the press
    # in the gateway's, the bus's and pve-executor's records alike.
    request_id = trace.current().get("request_id") or new_id()
    trace.bind(session_id=session_id, verb=verb, by=by, request_id=request_id, vm=vm.name)
    log.info("verb requested%s", f" (idempotency key {idempotency_key})" if idempotency_key else "")
    await record_requested(bus.log, VerbProgressed(
        session_id=session_id, by=by, verb=verb, phase=VerbPhase.REQUESTED, request_id=request_id,
        vm=vm.name, vmid=vm.vmid))
    command = RunVerb(by=by, request_id=request_id, verb=verb, session_id=session_id, idempotency_key=idempotency_key,
                      vmid=vm.vmid)
    nc = bus.nc
    assert nc is not None
    on_duplicate = partial(_stored_result, bus, verb, idempotency_key, wait_seconds) if idempotency_key else None
    return await run_verb(nc, bus.js, command, wait_seconds=wait_seconds, on_duplicate=on_duplicate)


async def _stored_result(bus: Bus, verb: Verb, idempotency_key: str, wait_seconds: float) -> VerbResult:
    log.info("verb %s with key %s was already requested; answering with its result", verb.value, idempotency_key)
    kv = await bus.kv()
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while asyncio.get_running_loop().time() < deadline:
        try:
            record = decode((await kv.get(verb_key(idempotency_key))).value or b"", VerbRecord)
            if isinstance(record, VerbDone):
                return record.result
        except (KeyNotFoundError, ContractError):
            pass
        await asyncio.sleep(POLL_SECONDS)
    return no_answer(verb, wait_seconds)
