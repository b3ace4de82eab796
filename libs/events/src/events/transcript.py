"""Human-readable transcripts, for the terminal (`breakglass replay`) and the
Markdown export: one function per kind, who and when on every line."""

from __future__ import annotations

from .codec import decode_event_lenient
from .kinds import (
    AlertReceived,
    ApprovalRequested,
    CliSessionBound,
    DiagnosisReady,
    Envelope,
    ResultReported,
    TextSaid,
    ToolCalled,
    ToolReturned,
    TurnCancelled,
    TurnEnded,
    TurnFailed,
    TurnInterrupted,
    UsageReported,
    UserPrompted,
    VerbProgressed,
)

OUTPUT_LINES = 20


def _clip(text: str, lines: int = OUTPUT_LINES) -> str:
    parts = text.splitlines()
    if len(parts) <= lines:
        return text
    return "\n".join(parts[:lines]) + f"\n… ({len(parts) - lines} more lines)"


def describe(event: Envelope) -> str:
    """One event as Markdown (no header line)."""
    match event:
        case UserPrompted():
            return f"**{event.by}** asks:\n\n> " + event.text.replace("\n", "\n> ")
        case TextSaid():
            return event.text
        case ToolCalled(name="Bash"):
            return f"`$ {event.input.get('command', '')}`"
        case ToolCalled():
            return f"tool `{event.name}` {event.input}"
        case ToolReturned():
            mark = " (error)" if event.is_error else ""
            cut = " (truncated)" if event.truncated else ""
            return f"output{mark}{cut}:\n\n```\n{_clip(event.output)}\n```"
        case ResultReported():
            return f"result{' (error)' if event.is_error else ''} after {event.duration_ms / 1000:.1f} s"
        case UsageReported():
            return f"cost so far ${event.cost_usd:.4f}, {event.tokens.input} in / {event.tokens.output} out tokens"
        case TurnFailed():
            return f"**error**: {event.error}"
        case TurnCancelled():
            return f"**stopped** by {event.by}"
        case TurnInterrupted():
            return f"**interrupted**: {event.reason}"
        case TurnEnded():
            return f"— turn ended ({event.outcome.value if event.outcome else 'ok'}) —"
        case VerbProgressed():
            detail = f" exit {event.exit_code}" if event.exit_code is not None else ""
            return f"power verb `{event.verb.value}` {event.phase.value}{detail} (by {event.by})" + (
                f"\n\n```\n{_clip((event.stdout or '') + (event.stderr or ''))}\n```" if event.stdout or event.stderr else ""
            )
        case ApprovalRequested():
            return f"**approval requested** for `{event.verb.value}`: {event.reason}"
        case AlertReceived():
            notes = "".join(f"\n> {k}: {v}" for k, v in sorted(event.annotations.items()))
            return f"**alert {event.alertname} {event.status.value}** on {event.vm}{notes}"
        case DiagnosisReady():
            return f"**diagnosis of {event.alertname}**: {event.summary}"
        case CliSessionBound():
            return f"CLI session {event.cli_session_id} ({event.model})"
    return f"({type(event).__struct_config__.tag})"


def markdown(session_id: str, stored: list[tuple[int, bytes]]) -> str:
    """A whole session as Markdown; unknown kinds (newer writers) are skipped."""
    out = [f"# breakglass session {session_id}\n"]
    for seq, data in stored:
        event = decode_event_lenient(data)
        if event is None:
            continue
        stamp = event.ts.strftime("%Y-%m-%d %H:%M:%S UTC")
        out.append(f"### {event.by} · {stamp} · #{seq}\n\n{describe(event)}\n")
    return "\n".join(out)
