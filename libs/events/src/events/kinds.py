"""Event kinds: the facts recorded in a session's log, in the past tense.

Wire shape (SPEC §4): a flat JSON object whose `kind` names the fact, with
the envelope fields beside the kind's own fields. The gateway adds `id` (the
JetStream sequence) on the way out, so stored bytes go to the browser
without being decoded and encoded again.

Evolution rule: within schema version `v` changes are additive only (a new
kind, or a new optional field with a default). Readers skip kinds they do not
know (`decode_event_lenient`). Renaming or removing a field bumps `v`.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Union

import msgspec

from .types import Actor, SessionId, TurnId, utcnow
from .verbs import Verb

SCHEMA_VERSION = 1


class Envelope(msgspec.Struct, kw_only=True, tag_field="kind", omit_defaults=False):
    """Fields every event carries: which session and turn, when, and who."""

    v: int = SCHEMA_VERSION
    #: None only for events that belong to no session (e.g. a verb pressed
    #: outside any session, recorded on the audit subject).
    session_id: SessionId | None = None
    turn_id: TurnId | None = None
    ts: Annotated[datetime, msgspec.Meta(tz=True)] = msgspec.field(default_factory=utcnow)
    by: Actor


class UserPrompted(Envelope, tag="user"):
    """The operator's prompt; opens a turn."""

    text: str
    model: str | None = None


class CliSessionBound(Envelope, tag="session"):
    """The CLI reported its own session id (its `system/init` line)."""

    cli_session_id: str
    model: str = ""


class TextSaid(Envelope, tag="text"):
    """Assistant prose, one whole content block. `block` names it the way
    `delta` events do, so a client drops exactly the deltas this replaces."""

    text: str
    block: str = ""


class TextDelta(Envelope, tag="delta"):
    """Live token text. Ephemeral: sent on the live subject, never stored;
    superseded by the `text` event carrying the whole block. Clients append
    deltas of the same `block` and drop them when the `text` arrives."""

    text: str
    block: str = ""


class TurnStatus(Envelope, tag="status"):
    """A running turn's heartbeat. Ephemeral: sent on the live subject every
    lease renewal (default 5 s), never stored (it would bloat the audit log).
    A client that hears none for `lease_seconds` while a turn runs can say
    "agent runner lost" before the reaper records `interrupted`."""

    elapsed_seconds: float
    since_output_seconds: float
    lease_seconds: float
    runner: str = ""


class ToolCalled(Envelope, tag="tool"):
    name: str
    input: dict[str, Any] = {}
    tool_use_id: str = ""


class ToolReturned(Envelope, tag="tool_result"):
    tool_use_id: str
    output: str
    is_error: bool = False
    truncated: bool = False


class ResultReported(Envelope, tag="result"):
    """The CLI's `result` line (a process may print several)."""

    is_error: bool
    result: str = ""
    duration_ms: int = 0
    #: The CLI's own words for how it ended (e.g. `error_during_execution`,
    #: terminal reason `aborted_streaming`, `api_error`), for clients that
    #: need to tell an aborted turn from a failed one.
    subtype: str = ""
    terminal_reason: str | None = None


class TurnFailed(Envelope, tag="error"):
    """A failure the operator must see: CLI exit, timeout, crash."""

    error: str


class TurnCancelled(Envelope, tag="cancelled"):
    """The operator pressed Stop."""


class TurnInterrupted(Envelope, tag="interrupted"):
    """The service running the turn vanished; recorded by whoever reaped it."""

    reason: str


class Outcome(str, enum.Enum):
    OK = "ok"
    ERROR = "error"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"


class TurnEnded(Envelope, tag="turn_end"):
    """Every `user` is followed by exactly one `turn_end`, whatever happened."""

    outcome: Outcome | None = None


class VerbPhase(str, enum.Enum):
    REQUESTED = "requested"
    APPROVED = "approved"
    DENIED = "denied"
    RUNNING = "running"
    DONE = "done"


class VerbProgressed(Envelope, tag="verb"):
    verb: Verb
    phase: VerbPhase
    request_id: str | None = None
    exit_code: int | None = None
    stdout: str | None = None
    stderr: str | None = None
    rejected: bool = False
    #: On `done`: pve-executor died while running the verb and another
    #: executor ended it (commands.VerbResult.lost says what is known).
    lost: bool = False
    #: The VM the verb acts on (name and Proxmox VMID); None on events from
    #: before many VMs, which all acted on the one VM.
    vm: str | None = None
    vmid: int | None = None


class ApprovalRequested(Envelope, tag="approval"):
    """A verb the agent asked for waits for the operator's Approve/Deny; or,
    written by the gateway under the two-person rule, an operator's press
    (`by`) waits for another operator's Approve/Deny."""

    approval_id: str
    verb: Verb
    reason: str = ""
    #: The `request_id` of the `verb` events this approval gates.
    request_id: str | None = None


class ApprovalEscalated(Envelope, tag="escalated"):
    """An approval nobody answered within the escalation delay was also sent
    to a second channel (the notifier's). `channel` says where, for the
    operator to read (a kind and a host, never a secret such as an ntfy
    topic); `by` is who sent it."""

    approval_id: str
    channel: str
    after_seconds: float = 0.0


class ObserverAction(str, enum.Enum):
    CREATED = "created"
    USED = "used"
    REVOKED = "revoked"


class ObserverAudited(Envelope, tag="observer"):
    """A read-only observer link to this session was created, used or
    revoked (gateway.observers). `by` is the operator for `created` and
    `revoked`, and `observer-<link id>` for `used`: every read through a
    link is on the record of the session it opens."""

    action: ObserverAction
    #: The link's id (a hash of its secret, never the secret).
    observer_id: str
    #: When the link stops working (on `created`).
    expires_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    #: On `used`: what was read (`stream`, `events` or `export`).
    route: str = ""


class AlertStatus(str, enum.Enum):
    FIRING = "firing"
    RESOLVED = "resolved"


#: An Alertmanager label or annotation map: names and values as sent, bounded.
Labels = dict[Annotated[str, msgspec.Meta(max_length=256)], Annotated[str, msgspec.Meta(max_length=8192)]]


class AlertReceived(Envelope, tag="alert"):
    """An alert Alertmanager delivered (`by`: `alertmanager`): the first event
    of a triage session, and again when it resolves. Recorded once per alert
    (fingerprint) and status, however often Alertmanager repeats it."""

    alertname: str
    status: AlertStatus
    #: The VM the receiver's label mapping chose (the triage's target).
    vm: str
    fingerprint: str = ""
    labels: Labels = {}
    annotations: Labels = {}
    starts_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    ends_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    generator_url: str = ""


class DiagnosisReady(Envelope, tag="diagnosis"):
    """The end of an alert's automatic triage: one paragraph for the operator
    (its first line is what a notification shows), written after the
    read-only verbs and the read-only agent turn."""

    alertname: str
    summary: str
    #: How the triage's agent turn ended (None: it never started).
    outcome: Outcome | None = None


class Tokens(msgspec.Struct, kw_only=True):
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_creation: int = 0


class UsageReported(Envelope, tag="usage"):
    """Cost and tokens from a `result` line. `cost_usd` is the CLI's running
    total for its session (cumulative across resumed turns), not this turn's
    increment; `tokens` are this result's own."""

    cost_usd: float = 0.0
    tokens: Tokens = msgspec.field(default_factory=Tokens)


Event = Union[
    UserPrompted,
    CliSessionBound,
    TextSaid,
    TextDelta,
    TurnStatus,
    ToolCalled,
    ToolReturned,
    ResultReported,
    TurnFailed,
    TurnCancelled,
    TurnInterrupted,
    TurnEnded,
    VerbProgressed,
    ApprovalRequested,
    ApprovalEscalated,
    UsageReported,
    AlertReceived,
    DiagnosisReady,
    ObserverAudited,
]

EVENT_TYPES: tuple[type[Envelope], ...] = Event.__args__  # type: ignore[attr-defined]

#: Kinds that are never written to the events stream (live subject only).
EPHEMERAL_KINDS = frozenset({"delta", "status"})


def kind_of(event_type: type[Envelope]) -> str:
    return event_type.__struct_config__.tag  # type: ignore[return-value]


KINDS: tuple[str, ...] = tuple(kind_of(t) for t in EVENT_TYPES)
