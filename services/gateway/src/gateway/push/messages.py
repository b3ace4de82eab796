"""Which events push, and what a push says.

A push carries no transcript: a title, the session, the verb and an id,
and for an approval the decision grant. Prompts, agent text, tool output
and error messages stay on the server (the page fetches them when it opens).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from events.kinds import (
    ApprovalRequested, Envelope, Outcome, TurnEnded, VerbPhase, VerbProgressed,
)
from events.verbs import is_mutating

OUTCOME_WORDS = {
    Outcome.OK: "done", Outcome.ERROR: "failed", Outcome.CANCELLED: "stopped",
    Outcome.TIMEOUT: "timed out", Outcome.INTERRUPTED: "interrupted",
}


@dataclass(frozen=True)
class Push:
    """One notification: `kind` says what happened, `id` what it was about
    (approval, turn or verb request); `claim` names it for the claim key."""

    kind: str
    title: str
    session_id: str
    id: str
    claim: str
    verb: str = ""
    #: For an approval: the request it gates (the grant is bound to it).
    request_id: str = ""
    #: Delivery urgency (RFC 8030 §5.3).
    urgency: str = "normal"
    extra: dict[str, Any] = field(default_factory=dict)

    def payload(self, **more: Any) -> dict[str, Any]:
        body = {"kind": self.kind, "title": self.title, "session_id": self.session_id, "id": self.id}
        if self.verb:
            body["verb"] = self.verb
        return {**body, **self.extra, **more}


def for_event(event: Envelope | None, seq: int) -> Push | None:
    """The push a stored event makes, or None."""
    sid = getattr(event, "session_id", None)
    if event is None or sid is None:
        return None
    if isinstance(event, ApprovalRequested):
        return Push("approval", f"breakglass: approve {event.verb.value}?", sid, event.approval_id,
                    f"approval:{event.approval_id}", verb=event.verb.value, request_id=event.request_id or "",
                    urgency="high")
    if isinstance(event, TurnEnded):
        word = OUTCOME_WORDS.get(event.outcome, "ended") if event.outcome else "ended"
        return Push("turn_end", f"breakglass: turn {word}", sid, event.turn_id or "", f"turn_end:{seq}",
                    extra={"outcome": event.outcome.value if event.outcome else ""})
    if isinstance(event, VerbProgressed) and event.phase is VerbPhase.DONE and is_mutating(event.verb):
        failed = event.rejected or event.exit_code not in (0, None) or event.lost
        word = "refused" if event.rejected else "failed" if failed else "done"
        return Push("verb", f"breakglass: VM {event.verb.value} {word}", sid, event.request_id or "",
                    f"verb:{seq}", verb=event.verb.value, urgency="high" if failed else "normal",
                    extra={"exit_code": event.exit_code})
    return None


def silent(session_id: str, turn_id: str, seconds: float) -> Push:
    return Push("silent", f"breakglass: no output for {int(seconds // 60)} min", session_id, turn_id,
                f"silent:{turn_id}", extra={"since_output_seconds": int(seconds)})


def lost(session_id: str, turn_id: str) -> Push:
    return Push("lost", "breakglass: agent runner lost", session_id, turn_id, f"lost:{turn_id}", urgency="high")
