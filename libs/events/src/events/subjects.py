"""Every NATS subject of the system, as functions.

Services never format subject strings themselves: a typo becomes an import
error, and ids are checked before they become part of a subject.

    breakglass.events.session.<session>.<writer>  a session's events, by the service that wrote
                                          them (events stream; each writer's NATS user may
                                          publish only under its own name: authorship)
    breakglass.events.audit.<name>.<writer>  audit facts outside sessions (events stream)
    breakglass.events.session.<session>   the same before per-writer subjects (read only:
    breakglass.events.audit.<name>        stores written by older versions; nobody writes them)
    breakglass.stored.<...>               every stored event again, after it is stored: the
                                          server republishes `breakglass.events.<...>` here
                                          with its stream sequence (core NATS; how a reader
                                          follows the log without a consumer, eventbus.follow)
    breakglass.live.<session>             ephemeral live frames (core NATS, not stored)
    breakglass.cmd.prompt                 StartTurn (commands work-queue stream)
    breakglass.cmd.verb.operator          RunVerb an operator pressed (only the gateway may publish)
    breakglass.cmd.verb.agent             RunVerb the agent asked for (only agent-runner may publish)
    breakglass.ctl.cancel.<session>       CancelTurn request -> CancelReply (core)
    breakglass.ctl.approval.<session>     AnswerApproval request -> ApprovalReply (core)
    breakglass.ctl.warm.<session>         WarmSession hint, no reply (core; a runner queue group)
    breakglass.reply.verb.<request>       VerbResult for one verb request (core)
"""

from __future__ import annotations

from .types import is_uuid

ROOT = "breakglass"
EVENTS_ALL = f"{ROOT}.events.>"
SESSION_EVENTS_ALL = f"{ROOT}.events.session.*"
AUDIT_ALL = f"{ROOT}.events.audit.*"
LIVE_ALL = f"{ROOT}.live.*"
#: Where the events stream republishes each event once stored (topology);
#: only the server publishes here, nobody may (eventbus.access).
STORED_ALL = f"{ROOT}.stored.>"
COMMANDS_ALL = f"{ROOT}.cmd.>"
PROMPT = f"{ROOT}.cmd.prompt"
#: Who asked for a verb is the subject it arrived on, never its body: NATS
#: permissions (eventbus.access) let only the gateway publish operator verbs
#: and only agent-runner publish agent verbs, and pve-executor takes the
#: origin from here (`verb_origin`).
VERB = f"{ROOT}.cmd.verb.operator"
AGENT_VERB = f"{ROOT}.cmd.verb.agent"
VERB_ALL = f"{ROOT}.cmd.verb.*"
VERB_ORIGINS = {VERB: "operator", AGENT_VERB: "agent"}
CANCEL_ALL = f"{ROOT}.ctl.cancel.*"
APPROVAL_ALL = f"{ROOT}.ctl.approval.*"
WARM_ALL = f"{ROOT}.ctl.warm.*"
#: The queue group runners take warm hints in: one runner warms a session, not all.
WARM_QUEUE = "agent-runners"
VERB_REPLY_ALL = f"{ROOT}.reply.verb.*"

AUDIT_NAMES = frozenset({"verb"})
#: The services that write events, each under its own subject token (the
#: NATS users of eventbus.access of the same names).
WRITERS: tuple[str, ...] = ("gateway", "agent-runner", "pve-executor")
#: Every session's events, old and per-writer subjects alike (for a stream
#: subjects filter; `session_of` names the session of each subject).
SESSION_EVENTS_EVERY = f"{ROOT}.events.session.>"


def _id(value: str, what: str) -> str:
    if not is_uuid(value):
        raise ValueError(f"{what} must be a lower-case UUID, got {value!r}")
    return value


def session_events(session_id: str) -> str:
    """The session's base subject: its events before per-writer subjects,
    and the prefix of every writer's subject (`session_writer`)."""
    return f"{ROOT}.events.session.{_id(session_id, 'session id')}"


def _writer(writer: str) -> str:
    if writer not in WRITERS:
        raise ValueError(f"unknown event writer {writer!r}")
    return writer


def session_writer(session_id: str, writer: str) -> str:
    """Where `writer` appends the session's events."""
    return f"{session_events(session_id)}.{_writer(writer)}"


def session_filters(session_id: str) -> tuple[str, str]:
    """Every subject holding the session's events: what a reader filters on
    (a consumer's `filter_subjects`; the newest of both is the chain head)."""
    base = session_events(session_id)
    return base, f"{base}.*"


def audit(name: str) -> str:
    """An audit subject's base (its events before per-writer subjects)."""
    if name not in AUDIT_NAMES:
        raise ValueError(f"unknown audit subject {name!r}")
    return f"{ROOT}.events.audit.{name}"


def audit_writer(name: str, writer: str) -> str:
    return f"{audit(name)}.{_writer(writer)}"


def audit_filters(name: str) -> tuple[str, str]:
    base = audit(name)
    return base, f"{base}.*"


def writer_of(subject: str) -> str | None:
    """The writer of an event from the subject it was stored on; None for
    the subjects written before per-writer subjects (unattributed)."""
    last = subject.rsplit(".", 1)[-1]
    return last if last in WRITERS and subject.startswith(f"{ROOT}.events.") else None


def writer_subjects(writer: str) -> tuple[str, ...]:
    """Everything `writer` may append to (its NATS permissions)."""
    return (f"{ROOT}.events.session.*.{_writer(writer)}", *(audit_writer(n, writer) for n in sorted(AUDIT_NAMES)))


def stored(subject: str) -> str:
    """Where the stored events of `subject` (wildcards allowed, under
    `breakglass.events.`) are republished: `breakglass.stored.<rest>`."""
    prefix = f"{ROOT}.events."
    if not subject.startswith(prefix) or len(subject) == len(prefix):
        raise ValueError(f"not an events subject: {subject!r}")
    return f"{ROOT}.stored.{subject[len(prefix):]}"


def unstored(subject: str) -> str:
    """The events subject a republished subject (`stored`) came from."""
    prefix = f"{ROOT}.stored."
    if not subject.startswith(prefix):
        raise ValueError(f"not a republished subject: {subject!r}")
    return f"{ROOT}.events.{subject[len(prefix):]}"


def live(session_id: str) -> str:
    return f"{ROOT}.live.{_id(session_id, 'session id')}"


def cancel(session_id: str) -> str:
    return f"{ROOT}.ctl.cancel.{_id(session_id, 'session id')}"


def approval(session_id: str) -> str:
    return f"{ROOT}.ctl.approval.{_id(session_id, 'session id')}"


def warm(session_id: str) -> str:
    return f"{ROOT}.ctl.warm.{_id(session_id, 'session id')}"


def verb_reply(request_id: str) -> str:
    return f"{ROOT}.reply.verb.{_id(request_id, 'request id')}"


def verb_command(origin: str) -> str:
    """The command subject of a verb asked for by `origin` (operator|agent)."""
    for subject, name in VERB_ORIGINS.items():
        if name == origin:
            return subject
    raise ValueError(f"unknown verb origin {origin!r}")


def verb_origin(subject: str) -> str | None:
    """`operator` or `agent` for a verb command subject, None for any other."""
    return VERB_ORIGINS.get(subject)


def session_of(subject: str) -> str | None:
    """The session id inside a session-scoped subject (with or without a
    writer token), or None."""
    tokens = subject.rsplit(".", 2)
    if is_uuid(tokens[-1]):
        return tokens[-1]
    if len(tokens) == 3 and tokens[-1] in WRITERS and is_uuid(tokens[-2]):
        return tokens[-2]
    return None
