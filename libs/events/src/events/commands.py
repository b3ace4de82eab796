"""Commands: what a service is asked to do, in the imperative.

Commands travel on the work-queue stream (prompt, verb) or as core NATS
requests to whichever runner owns a turn (cancel, approval answers). Each is
decoded with a typed decoder on arrival; a command that does not decode is
terminated, never retried.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Union

import msgspec

from .types import Actor, IdempotencyKey, ModelName, Prompt, RequestId, SessionId, TurnId, utcnow
from .verbs import Verb


class Command(msgspec.Struct, kw_only=True, tag_field="type"):
    by: Actor
    ts: datetime = msgspec.field(default_factory=utcnow)


class StartTurn(Command, tag="prompt"):
    """Run one CLI turn for a session. The gateway already holds the turn
    lock and has recorded the `user` event when this is published."""

    session_id: SessionId
    turn_id: TurnId
    prompt: Prompt
    model: ModelName
    #: A turn nobody is watching (an alert's triage): the runner applies
    #: `approve-mutating` whatever its configured policy, so a mutating verb
    #: the agent asks for waits for a human. It can only narrow what the turn
    #: may do, never widen it, so trusting the publisher's word here trusts
    #: it no more than before (only the gateway may publish StartTurn).
    read_only: bool = False
    #: The VM the session is bound to (its `SessionRecord.vm`): the agent is
    #: told about it, reaches it as `ssh devvm`, and its verbs act on it only.
    #: None: the default VM (the first of BREAKGLASS_VMS; older publishers).
    vm: str | None = None


class CancelTurn(Command, tag="cancel"):
    session_id: SessionId
    turn_id: TurnId | None = None


class RunVerb(Command, tag="run_verb"):
    """Run one power verb. `verb` is an enum: anything else fails to decode."""

    request_id: RequestId
    verb: Verb
    session_id: SessionId | None = None
    idempotency_key: IdempotencyKey | None = None
    #: Informational only: pve-executor takes the origin (and, for the agent,
    #: `by`) from the subject the command arrived on (`subjects.verb_origin`).
    origin: Literal["operator", "agent"] = "operator"
    #: The operator's approval of an agent's mutating verb: names the
    #: `ApprovalGrant` the gateway stored, which pve-executor redeems once.
    approval_id: RequestId | None = None
    #: The VM to act on, by its Proxmox VMID; None: the default VM (the first
    #: of BREAKGLASS_VMS; what publishers before many VMs mean). pve-executor
    #: refuses an id outside its list, and the host script outside its own.
    vmid: int | None = None


class WarmSession(Command, tag="warm"):
    """A hint, not an order: an operator opened or attached to the session,
    so a prompt may follow. A runner with room starts the session's CLI
    ahead of need (agent_runner.warm), so the first prompt finds it warm.
    Core NATS, fire and forget: a runner that ignores it (an older one, or
    one at its cap) loses nothing but the head start. `model`: the model
    the next prompt most likely asks for (the gateway's default); `vm`:
    the session's VM (`SessionRecord.vm`), which the CLI is laid out for."""

    session_id: SessionId
    model: ModelName | None = None
    vm: str | None = None


class AnswerApproval(Command, tag="answer_approval"):
    session_id: SessionId
    approval_id: RequestId
    approved: bool


AnyCommand = Union[StartTurn, CancelTurn, RunVerb, AnswerApproval, WarmSession]

COMMAND_TYPES: tuple[type[Command], ...] = AnyCommand.__args__  # type: ignore[attr-defined]


# Replies and records: not commands, but part of the contract all the same.


class VerbResult(msgspec.Struct, kw_only=True):
    """The body of `POST /api/pve/{verb}` (SPEC §3), also the executor's reply."""

    verb: Verb
    exit_code: int
    stdout: str = ""
    stderr: str = ""
    rejected: bool = False
    #: pve-executor died while the verb was in its hands (its lease lapsed):
    #: the real outcome is unknown. `rejected` then says the command surely
    #: never reached the host; false means the host may have run it.
    lost: bool = False


class CancelReply(msgspec.Struct, kw_only=True):
    cancelled: bool


class ApprovalReply(msgspec.Struct, kw_only=True):
    """The runner's answer to `AnswerApproval`: `accepted` is false when no
    such approval is pending (already answered, timed out, turn over)."""

    accepted: bool


class SessionRecord(msgspec.Struct, kw_only=True):
    """A session's entry in the KV bucket."""

    session_id: SessionId
    created_by: Actor
    created_at: datetime
    #: The VM the session is about, chosen when it is created (a name of
    #: BREAKGLASS_VMS); None: the default VM (sessions from before many VMs).
    vm: str | None = None


class Unclaimed(msgspec.Struct, frozen=True, tag="unclaimed"):
    """No runner has the turn yet: the gateway's pending lease, then (once
    the command is published) its pick-up lease."""


class RunnerPhase(msgspec.Struct, frozen=True, kw_only=True):
    #: The runner instance that holds the turn (agent_runner.identity).
    runner: str


class Running(RunnerPhase, tag="running"):
    """A runner claimed the turn and renews the lease while the CLI runs."""


class Ending(RunnerPhase, tag="ending"):
    """The runner is writing the turn's `turn_end`: a lapsed lock in this
    phase may have its end stored already, so a reaper then writes only the
    `turn_end` (its message id makes it a no-op if so), never `interrupted`."""


class Reaping(msgspec.Struct, frozen=True, tag="reaping"):
    """A reaper took the lapsed lock over (CAS) and is ending the turn."""


LockPhase = Union[Unclaimed, Running, Ending, Reaping]

#: How `owner` spelled the phases before `phase` existed (see TurnLock).
_LEGACY_ENDING = "+ending"
_LEGACY_REAPER = "reaper"


def _legacy_owner(phase: LockPhase) -> str:
    if isinstance(phase, Running):
        return phase.runner
    if isinstance(phase, Ending):
        return phase.runner + _LEGACY_ENDING
    return _LEGACY_REAPER if isinstance(phase, Reaping) else ""


def _legacy_phase(owner: str) -> LockPhase:
    if not owner:
        return Unclaimed()
    if owner == _LEGACY_REAPER:
        return Reaping()
    if owner.endswith(_LEGACY_ENDING):
        return Ending(runner=owner.removesuffix(_LEGACY_ENDING))
    return Running(runner=owner)


class TurnLock(msgspec.Struct, kw_only=True):
    """A session's turn lock in the KV bucket, taken with compare-and-set.

    `phase` says who holds the turn: nobody yet (`unclaimed`), a runner
    (`running`, then `ending` while it writes `turn_end`), or a reaper
    ending a turn whose lease lapsed (`reaping`). `lease_until` (epoch
    seconds) is renewed while the turn runs, so a lock whose lease lapsed
    belongs to a process that died and may be reaped.

    `owner` is the same phase in the form writers used before `phase`
    existed ("" unclaimed, the runner, the runner + "+ending", "reaper"):
    still written, so a reader from before `phase` keeps working through a
    rolling restart, and read only from a lock such a writer stored (no
    `phase`). Nothing else reads it.
    """

    turn_id: TurnId
    by: Actor
    started_at: float
    lease_until: float
    phase: LockPhase = Unclaimed()
    owner: str = ""

    def __post_init__(self) -> None:
        # A new writer's `owner` always mirrors its `phase`, so an unclaimed
        # phase beside a non-empty owner is an older writer's lock (no `phase`).
        if isinstance(self.phase, Unclaimed) and self.owner:
            self.phase = _legacy_phase(self.owner)
        self.owner = _legacy_owner(self.phase)


class ApprovalGrant(msgspec.Struct, kw_only=True):
    """An operator's Approve of one verb the agent asked for, in the KV
    bucket (`grants.<approval_id>`). Only the gateway's NATS user may write
    it (eventbus.access), so neither the agent nor agent-runner can mint one;
    pve-executor runs an agent's mutating verb only against a grant bound
    to the same session, request and verb, before `expires_at`, once."""

    approval_id: RequestId
    session_id: SessionId
    request_id: RequestId
    verb: Verb
    approved_by: Actor
    expires_at: datetime
    #: Who asked for the verb (the agent, or the operator whose press waited
    #: for a second operator under the two-person rule). None in grants
    #: written before the field existed: those were all the agent's asks.
    requested_by: Actor | None = None


class _VerbRecordBase(msgspec.Struct, kw_only=True, tag_field="state"):
    request_id: RequestId
    verb: Verb


class VerbRunning(_VerbRecordBase, tag="running"):
    """The verb was handed to the executor that created the record."""


class VerbDone(_VerbRecordBase, tag="done"):
    """The key's one answer, whatever it was (success, failure, busy, lost)."""

    result: VerbResult


#: A verb request's entry in the KV bucket (`verbs.<idempotency key>`):
#: created before the verb runs, so a retried press (same key) gets the
#: first press's result instead of a second run, even after the bus's
#: de-duplication window has passed. Same stored form as before it was a
#: union (`state` + `result`; a running record's `"result": null` is ignored).
VerbRecord = Union[VerbRunning, VerbDone]
