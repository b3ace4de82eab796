"""The two-person rule for an operator's press (BREAKGLASS_TWO_PERSON_VERBS).

A press of such a verb does not run: the gateway records an `approval` in
the session (written by the gateway, `by` the operator who pressed) and the
verb waits for another operator's Approve, up to `two_person_wait_seconds`.
The PWA shows it like the agent's asks, so a colleague approves it there.

- The one who pressed may deny (withdraw) it, never approve it; the name
  `agent` never approves (it is the agent's).
- The first decision wins: it is created once in the KV bucket
  (`decisions.<approval_id>`, gateway-only); a second gets "already
  approved/denied by X".
- An Approve writes the same `ApprovalGrant` the agent's asks use, naming
  who asked and who approved; the gateway then publishes the verb as the
  presser's, carrying the grant. pve-executor runs a two-person verb only
  against such a grant whose approver is not the one who asked (it holds
  the same list), so neither an operator nor agent-runner can skip the
  second person by publishing the verb directly.

Which approvals are presses is a fact of the transport: an `approval` the
gateway stored (eventbus.log Record.writer), never a claim of the payload.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from events import authorship
from eventbus import trace
from events.codec import decode_event_lenient, encode
from events.commands import ApprovalGrant, RunVerb
from events.kinds import ApprovalRequested, VerbPhase, VerbProgressed
from eventbus.topology import decision_key, grant_key
from events.types import new_id, utcnow
from eventbus.verb_requests import record_requested, run_verb
from events.verbs import Verb
from events.vms import Vm

from . import sessions
from .approvals import GRANT_SECONDS
from .bus import Bus
from .settings import Settings

log = logging.getLogger("gateway.presses")

AGENT = "agent"
#: Verbs published for an approved press whose result nobody awaits in HTTP:
#: kept referenced until they end (the outcome is in the session's log).
_running: set[asyncio.Task[object]] = set()


class PressRefused(Exception):
    """403: this caller may not decide this press."""


class PressDecided(Exception):
    """409: someone decided first."""


@dataclass(frozen=True)
class Asked:
    event: ApprovalRequested
    #: The service that stored the approval (gateway: an operator's press).
    writer: str

    @property
    def is_press(self) -> bool:
        return self.writer == authorship.GATEWAY


class Decision(msgspec.Struct, kw_only=True):
    approved: bool
    by: str
    at: float


async def ask(bus: Bus, verb: Verb, *, by: str, session_id: str, request_id: str, vm: Vm) -> str:
    """Record a press that waits for a second operator; returns its approval id."""
    approval_id = new_id()
    await bus.log.append(ApprovalRequested(
        session_id=session_id, by=by, approval_id=approval_id, verb=verb, request_id=request_id,
        reason=f"{by} pressed {verb.value}; another operator must approve it (two-person rule)",
    ), msg_id=f"{request_id}:approval")
    await record_requested(bus.log, VerbProgressed(
        session_id=session_id, by=by, verb=verb, phase=VerbPhase.REQUESTED, request_id=request_id,
        vm=vm.name, vmid=vm.vmid))
    log.info("%s pressed %s in session %s: waits for a second operator (approval %s)",
             by, verb.value, session_id, approval_id)
    return approval_id


async def find(bus: Bus, session_id: str, approval_id: str) -> Asked | None:
    """The session's `approval` event with this id, and who stored it.
    Raises `sessions.SessionNotFound`."""
    await sessions.get_session(bus, session_id)
    for record in reversed(await bus.log.read(session_id)):
        event = decode_event_lenient(record.data)
        if isinstance(event, ApprovalRequested) and event.approval_id == approval_id:
            return Asked(event, record.writer)
    return None


async def answer(bus: Bus, settings: Settings, asked: Asked, *, approve: bool, by: str) -> bool:
    """Decide an operator's press. True when this decision was taken; False
    when the press is no longer waiting (expired). Raises PressRefused,
    PressDecided."""
    event = asked.event
    assert asked.is_press and event.session_id is not None and event.request_id is not None
    trace.bind(session_id=event.session_id, request_id=event.request_id, verb=event.verb, by=by)
    if approve and by.casefold() == event.by.casefold():  # `Alice` and `alice` are one person
        raise PressRefused(f"two-person rule: you pressed `{event.verb.value}` yourself; "
                           "another operator must approve it")
    if approve and by.casefold() == AGENT:
        raise PressRefused("the agent never counts as an approver")
    if utcnow() >= event.ts + timedelta(seconds=settings.two_person_wait_seconds):
        log.info("press %s expired before it was decided", event.approval_id)
        return False
    vm = await _vm_of(bus, settings, event.session_id)
    kv = await bus.kv()
    decision = Decision(approved=approve, by=by, at=utcnow().timestamp())
    try:
        await kv.create(decision_key(event.approval_id), msgspec.json.encode(decision))
    except KeyWrongLastSequenceError:
        raise PressDecided(await _decided(bus, event.approval_id)) from None
    phase = VerbPhase.APPROVED if approve else VerbPhase.DENIED
    if approve:
        grant = ApprovalGrant(
            approval_id=event.approval_id, session_id=event.session_id, request_id=event.request_id, verb=event.verb,
            approved_by=by, requested_by=event.by, expires_at=utcnow() + timedelta(seconds=GRANT_SECONDS),
        )
        await kv.put(grant_key(event.approval_id), encode(grant))
    await bus.log.append(VerbProgressed(
        session_id=event.session_id, by=by, verb=event.verb, phase=phase, request_id=event.request_id,
        vm=vm.name, vmid=vm.vmid,
    ), msg_id=f"{event.request_id}:{phase.value}")
    log.info("press %s of %s by %s %s by %s", event.approval_id, event.verb.value, event.by, phase.value, by)
    if approve:
        command = RunVerb(by=event.by, request_id=event.request_id, verb=event.verb, session_id=event.session_id,
                          approval_id=event.approval_id, vmid=vm.vmid)
        nc = bus.nc
        assert nc is not None
        task = asyncio.create_task(run_verb(nc, bus.js, command, wait_seconds=settings.verb_wait_seconds))
        _running.add(task)
        task.add_done_callback(_running.discard)
    return True


async def _vm_of(bus: Bus, settings: Settings, session_id: str) -> Vm:
    """The VM a press acts on: its session's (the press route checked that
    the session is bound to the VM pressed)."""
    record = await sessions.get_session(bus, session_id)
    vm = settings.vms.named(record.vm) if record.vm else settings.vms.default
    if vm is None:
        raise PressRefused(f"the session's VM {record.vm!r} is no longer in BREAKGLASS_VMS")
    return vm


async def _decided(bus: Bus, approval_id: str) -> str:
    try:
        entry = await (await bus.kv()).get(decision_key(approval_id))
        first = msgspec.json.decode(entry.value or b"", type=Decision)
        return f"already {'approved' if first.approved else 'denied'} by {first.by}"
    except (KeyNotFoundError, msgspec.DecodeError):
        return "already decided"
