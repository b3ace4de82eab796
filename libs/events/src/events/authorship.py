"""Who may write what: each event kind's writers, as data.

The bus stores every event under its writer's own subject
(`subjects.session_writer`), and each service's NATS user may publish only
under its own name (eventbus.access), so the writer of an event is a fact of
the transport, not a claim of the payload. This table says which writer
may state which fact; `breakglass verify` holds every attributed event to
it, so a service whose credential leaked (agent-runner's is readable
wherever the agent runs) cannot put words in another's mouth: a "verb
cycle approved by alice" written by agent-runner is flagged, because only
the gateway records an operator's decision.

Events stored before per-writer subjects have no writer and are not
checked (schema evolution: old stores and exports still verify).
"""

from __future__ import annotations

from collections.abc import Mapping

from .kinds import (
    AlertReceived, ApprovalEscalated, ApprovalRequested, CliSessionBound, DiagnosisReady, Envelope, ObserverAudited, ResultReported,
    TextSaid, ToolCalled, ToolReturned, TurnCancelled,
    TurnEnded, TurnFailed, TurnInterrupted, UsageReported, UserPrompted, VerbPhase, VerbProgressed, kind_of,
)

GATEWAY, AGENT_RUNNER, PVE_EXECUTOR = "gateway", "agent-runner", "pve-executor"

_TURN_ENDINGS = (TurnFailed, TurnCancelled, TurnInterrupted, TurnEnded)

#: kind -> the writers that may store it (verbs: see VERB_PHASES).
KINDS: Mapping[str, frozenset[str]] = {
    # the operator's prompts, what the gateway's alert receiver records, an
    # approval's escalation (reported to the gateway by whoever sent it), and
    # observer links (the gateway's to grant and to audit)
    **{kind_of(k): frozenset({GATEWAY}) for k in (UserPrompted, AlertReceived, DiagnosisReady, ApprovalEscalated, ObserverAudited)},
    **{kind_of(k): frozenset({AGENT_RUNNER}) for k in (
        CliSessionBound, TextSaid, ToolCalled, ToolReturned, ResultReported, UsageReported)},
    # the agent's asks are agent-runner's; an operator's two-person press is the gateway's
    kind_of(ApprovalRequested): frozenset({AGENT_RUNNER, GATEWAY}),
    # a turn no runner started is ended by the gateway; a runner's, by it or its reaper
    **{kind_of(k): frozenset({GATEWAY, AGENT_RUNNER}) for k in _TURN_ENDINGS},
}

#: verb phase -> its writers: the operator's presses and decisions are the
#: gateway's, the agent's asks and automatic denials (timeout, turn over)
#: agent-runner's, running and outcomes pve-executor's alone.
VERB_PHASES: Mapping[VerbPhase, frozenset[str]] = {
    VerbPhase.REQUESTED: frozenset({GATEWAY, AGENT_RUNNER}),
    VerbPhase.APPROVED: frozenset({GATEWAY}),
    VerbPhase.DENIED: frozenset({GATEWAY, AGENT_RUNNER}),
    VerbPhase.RUNNING: frozenset({PVE_EXECUTOR}),
    VerbPhase.DONE: frozenset({PVE_EXECUTOR}),
}


def problem(writer: str, event: Envelope | None) -> str | None:
    """Why `writer` may not have stored `event`, or None when it may.
    An unknown (newer) kind, None, is not judged."""
    if event is None:
        return None
    if isinstance(event, VerbProgressed):
        allowed = VERB_PHASES.get(event.phase, frozenset())
        if writer not in allowed:
            return f"{writer} may not record verb phase `{event.phase.value}` (only {', '.join(sorted(allowed))})"
        if event.phase is VerbPhase.REQUESTED and (writer == AGENT_RUNNER) != (event.by == "agent"):
            return f"{writer} may not record a verb requested by {event.by!r}"
        return None
    if isinstance(event, ApprovalRequested) and writer in (GATEWAY, AGENT_RUNNER) \
            and (writer == AGENT_RUNNER) != (event.by == "agent"):
        return f"{writer} may not record an approval asked for by {event.by!r}"
    kind = kind_of(type(event))
    allowed = KINDS.get(kind)
    if allowed is None or writer not in allowed:
        return f"{writer} may not write `{kind}` events (only {', '.join(sorted(allowed or ()))})"
    return None
