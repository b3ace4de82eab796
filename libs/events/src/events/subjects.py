"""Every NATS subject of the system, as functions.

Services never format subject strings themselves: a typo becomes an import
error, and ids are checked before they become part of a subject.

    breakglass.events.session.<session>   a session's events (events stream)
    breakglass.events.audit.<name>        audit facts outside sessions (events stream)
    breakglass.live.<session>             ephemeral live frames (core NATS, not stored)
    breakglass.cmd.prompt                 StartTurn (commands work-queue stream)
    breakglass.cmd.verb                   RunVerb (commands work-queue stream)
    breakglass.ctl.cancel.<session>       CancelTurn request -> CancelReply (core)
    breakglass.ctl.approval.<session>     AnswerApproval request -> ApprovalReply (core)
    breakglass.reply.verb.<request>       VerbResult for one verb request (core)
"""

from __future__ import annotations

from .types import is_uuid

ROOT = "breakglass"
EVENTS_ALL = f"{ROOT}.events.>"
SESSION_EVENTS_ALL = f"{ROOT}.events.session.*"
AUDIT_ALL = f"{ROOT}.events.audit.*"
LIVE_ALL = f"{ROOT}.live.*"
COMMANDS_ALL = f"{ROOT}.cmd.>"
PROMPT = f"{ROOT}.cmd.prompt"
VERB = f"{ROOT}.cmd.verb"
CANCEL_ALL = f"{ROOT}.ctl.cancel.*"
APPROVAL_ALL = f"{ROOT}.ctl.approval.*"
VERB_REPLY_ALL = f"{ROOT}.reply.verb.*"

AUDIT_NAMES = frozenset({"verb"})


def _id(value: str, what: str) -> str:
    if not is_uuid(value):
        raise ValueError(f"{what} must be a lower-case UUID, got {value!r}")
    return value


def session_events(session_id: str) -> str:
    return f"{ROOT}.events.session.{_id(session_id, 'session id')}"


def session_filter(session_id: str) -> str:
    """The filter that matches every stored event of one session (what a
    reader of the session uses; today the session has one subject)."""
    return session_events(session_id)


def audit(name: str) -> str:
    if name not in AUDIT_NAMES:
        raise ValueError(f"unknown audit subject {name!r}")
    return f"{ROOT}.events.audit.{name}"


def live(session_id: str) -> str:
    return f"{ROOT}.live.{_id(session_id, 'session id')}"


def cancel(session_id: str) -> str:
    return f"{ROOT}.ctl.cancel.{_id(session_id, 'session id')}"


def approval(session_id: str) -> str:
    return f"{ROOT}.ctl.approval.{_id(session_id, 'session id')}"


def verb_reply(request_id: str) -> str:
    return f"{ROOT}.reply.verb.{_id(request_id, 'request id')}"


def session_of(subject: str) -> str | None:
    """The session id inside a session-scoped subject, or None."""
    last = subject.rsplit(".", 1)[-1]
    return last if is_uuid(last) else None
