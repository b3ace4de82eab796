"""Which events deserve a notification, and what it says.

Pure functions: in go an event and the subject it was stored on, out comes
a `Notification` or None. No I/O happens here, so the rules are easy to
read, test and change. The one fact that needs the bus -- "is this prompt
the first of its session?" -- is looked up by the caller and passed in as
`opens_session`.

Triggers:

| event                                        | priority         |
|----------------------------------------------|------------------|
| the first `user` of a session (it started)   | default (3)      |
| `approval` (the agent waits for a yes/no)    | max (5)          |
| `verb` done, mutating verb, exit 0           | default (3)      |
| `verb` done, mutating verb, failed/refused   | high (4)         |
| `verb` denied (mutating verb)                | default (3)      |
| `turn_end` outcome error/timeout/interrupted | high (4)         |
| `turn_end` outcome ok/cancelled (or none)    | low (2)          |
| `error`                                      | high (4)         |
| `diagnosis` (an alert's triage is done)      | high (4)         |

Everything else (text, tool calls, usage, later prompts, read-only verbs,
verb phases other than done/denied) is not worth a buzz.

A verb run inside a session is recorded twice: on the session's subject and
on the audit subject (`breakglass.events.audit.verb`). Only the session copy
notifies; the audit copy notifies only for a verb pressed outside any
session (its `session_id` is None).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from events import subjects
from events.kinds import (
    ApprovalRequested,
    DiagnosisReady,
    Envelope,
    Outcome,
    TurnEnded,
    TurnFailed,
    UserPrompted,
    VerbPhase,
    VerbProgressed,
)
from events.verbs import is_mutating

#: ntfy's priority scale, used by both formats.
MIN, LOW, DEFAULT, HIGH, MAX = 1, 2, 3, 4, 5

FAILED_OUTCOMES = frozenset({Outcome.ERROR, Outcome.TIMEOUT, Outcome.INTERRUPTED})

_AUDIT_PREFIX = f"{subjects.ROOT}.events.audit."
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Notification:
    kind: str
    title: str
    message: str
    priority: int
    #: ntfy tags; names of emoji shortcodes show as emoji on the phone.
    tags: tuple[str, ...] = ()
    session_id: str | None = None
    #: Click-through to the session in the PWA; None without a link base.
    link: str | None = None


def session_link(link_base: str | None, session_id: str | None) -> str | None:
    """`<base>#/session/<id>`: the PWA's address of one session."""
    if not link_base or not session_id:
        return None
    base = link_base.split("#", 1)[0]
    if urlsplit(base).path == "":
        base += "/"
    return f"{base}#/session/{session_id}"


def clip(text: str, limit: int) -> str:
    """One line of at most `limit` characters (whitespace runs collapsed)."""
    line = _SPACE.sub(" ", text).strip()
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _short(session_id: str | None) -> str:
    return f"session {session_id[:8]}" if session_id else "outside any session"


def notification_for(
    event: Envelope,
    subject: str,
    *,
    opens_session: bool = False,
    link_base: str | None = None,
) -> Notification | None:
    """The notification `event` (stored on `subject`) deserves, or None."""
    session_id = event.session_id or subjects.session_of(subject)

    def note(title: str, message: str, priority: int, *tags: str) -> Notification:
        return Notification(
            kind=type(event).__struct_config__.tag,  # type: ignore[arg-type]
            title=f"breakglass: {title}",
            message=message,
            priority=priority,
            tags=tags,
            session_id=session_id,
            link=session_link(link_base, session_id),
        )

    match event:
        case UserPrompted(text=text, by=by):
            if not opens_session:
                return None
            return note("session started", f"{by} started a recovery session: {clip(text, 200)}", DEFAULT, "sos")

        case ApprovalRequested(verb=verb, reason=reason):
            why = clip(reason, 200) if reason else f"the agent asks to {verb.value} the VM"
            return note(
                f"approve {verb.value}?", f"{why}. Approve or deny in the console ({_short(session_id)}).",
                MAX, "question",
            )

        case VerbProgressed(verb=verb, phase=phase):
            if not is_mutating(verb):
                return None
            if subject.startswith(_AUDIT_PREFIX) and event.session_id is not None:
                return None  # the session's own copy of this fact notifies
            where = _short(session_id)
            if phase is VerbPhase.DENIED:
                return note(f"{verb.value} denied", f"{event.by} denied {verb.value} ({where}).", DEFAULT, "no_entry")
            if phase is not VerbPhase.DONE:
                return None
            code = event.exit_code
            if event.rejected:
                detail = clip(event.stderr or "", 200)
                message = f"{verb.value} was not run ({where})" + (f": {detail}" if detail else ".")
                return note(f"{verb.value} refused", message, HIGH, "warning")
            if code == 0:
                return note(f"VM {verb.value} done", f"{event.by} ran {verb.value}: exit 0 ({where}).", DEFAULT, "zap")
            shown = "no exit code" if code is None else f"exit {code}"
            detail = clip(event.stderr or "", 200)
            message = f"{event.by} ran {verb.value}: {shown} ({where})." + (f" {detail}" if detail else "")
            return note(f"VM {verb.value} failed", message, HIGH, "rotating_light")

        case TurnEnded(outcome=outcome):
            if outcome in FAILED_OUTCOMES:
                assert outcome is not None
                return note(
                    f"turn failed ({outcome.value})", f"The agent's turn ended: {outcome.value} ({_short(session_id)}).",
                    HIGH, "rotating_light",
                )
            if outcome is Outcome.CANCELLED:
                return note("turn cancelled", f"The turn was stopped ({_short(session_id)}).", LOW, "stop_sign")
            return note("turn finished", f"The agent finished its turn ({_short(session_id)}).", LOW, "white_check_mark")

        case DiagnosisReady(alertname=alertname, summary=summary):
            # "<alert> — diagnosis ready: <first line>": what the operator
            # reads on the lock screen before opening the session.
            first = next((line for line in summary.splitlines() if line.strip()), "see the session")
            return note(f"{alertname} diagnosed", f"{alertname} — diagnosis ready: {clip(first, 200)}", HIGH, "mag")

        case TurnFailed(error=error):
            return note("error", f"{clip(error, 300)} ({_short(session_id)})", HIGH, "x")

    return None
