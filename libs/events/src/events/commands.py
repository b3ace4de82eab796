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


class TurnLock(msgspec.Struct, kw_only=True):
    """A session's turn lock in the KV bucket, taken with compare-and-set.

    `owner` is the runner instance that holds the turn ("" until one picks it
    up); `lease_until` (epoch seconds) is renewed while it runs, so a lock whose
    lease lapsed belongs to a runner that died and may be reaped.
    """

    turn_id: TurnId
    by: Actor
    started_at: float
    lease_until: float
    owner: str = ""


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


class VerbRecord(msgspec.Struct, kw_only=True):
    """A verb request's entry in the KV bucket (`verbs.<idempotency key>`):
    created before the verb runs, so a retried press (same key) gets the
    first press's result instead of a second run, even after the bus's
    de-duplication window has passed."""

    request_id: RequestId
    verb: Verb
    state: Literal["running", "done"]
    result: VerbResult | None = None
