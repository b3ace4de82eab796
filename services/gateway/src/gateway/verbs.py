"""Power verbs from the gateway's side: check, record, publish, wait.

The verb was already parsed into the enum by the route, and the VM
resolved from the allow-list; the VM is checked against the list again
here (defence in depth: pve-executor and the host script check it too).
With an idempotency key, the command's `Nats-Msg-Id` is that key: a
retried press is dropped by JetStream as a duplicate, and its caller gets
the first press's result from the KV record pve-executor keeps, so a
mutating verb never runs twice.

Recording and publishing are `eventbus.verb_requests`, shared with
agent-runner's verb tool; waiting for a duplicate's first result is
`eventbus.verb_records`, shared with pve-executor.
"""

from __future__ import annotations

import logging
from functools import partial

from eventbus import trace, verb_records
from events.commands import RunVerb, VerbResult
from events.kinds import VerbPhase, VerbProgressed
from events.types import new_id
from eventbus.verb_requests import no_answer, record_requested, run_verb
from events.verbs import Verb
from events.vms import Vm, VmList

from .bus import Bus

log = logging.getLogger("gateway.verbs")

#: The exit code of a refusal (as pve-executor's).
EX_REFUSED = 64

__all__ = ["no_answer", "request_verb"]


async def request_verb(
    bus: Bus, verb: Verb, *, by: str, wait_seconds: float, vm: Vm, vms: VmList,
    session_id: str | None = None, idempotency_key: str | None = None,
) -> VerbResult:
    if vm not in vms.vms:  # the caller resolved it from the list; checked again all the same
        log.error("refused %s on VM %d: not in BREAKGLASS_VMS", verb.value, vm.vmid)
        return VerbResult(verb=verb, exit_code=EX_REFUSED, rejected=True,
                          stderr=f"refused: VM {vm.vmid} is not in BREAKGLASS_VMS; nothing was run")
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
    result = await verb_records.wait_done(await bus.kv(), idempotency_key, wait_seconds)
    return result if result is not None else no_answer(verb, wait_seconds)
