"""agent-runner's Prometheus metrics: turns, the CLI, approvals.

Labels are outcomes, exit codes and approval outcomes: small fixed sets.
Which session a turn belonged to is in the event log, never a label.

Two gauges exist for the "turn past its timeout" alert: the age of the
oldest running turn and the configured timeout. The runner enforces the
timeout itself, so the alert firing means that enforcement is stuck (a CLI
that will not die, a wedged event loop), which is exactly when to page.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from prometheus_client import Counter, Gauge, Histogram

from events.kinds import EPHEMERAL_KINDS, Envelope, Outcome, kind_of
from eventbus.metrics import PREFIX

#: Seconds, up to past the default 30 min timeout.
TURN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600)
#: Seconds from a CLI line read to its event stored: milliseconds normally,
#: seconds while NATS reconnects (appends are retried).
APPEND_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

TURNS_STARTED = Counter(f"{PREFIX}turns_started", "Turns this runner claimed and started.")
TURNS_ENDED = Counter(f"{PREFIX}turns_ended", "Turns this runner ended (wrote `turn_end`), by outcome.", ["outcome"])
TURN_DURATION = Histogram(
    f"{PREFIX}turn_duration_seconds", "A turn's time from claim to end, by outcome.", ["outcome"], buckets=TURN_BUCKETS
)
TURNS_RUNNING = Gauge(f"{PREFIX}turns_running", "Turns running in this runner now.")
OLDEST_TURN = Gauge(f"{PREFIX}turn_oldest_running_seconds", "Age of the oldest turn running in this runner (0: none).")
TURN_TIMEOUT = Gauge(f"{PREFIX}turn_timeout_seconds", "The configured turn time limit (BREAKGLASS_TURN_TIMEOUT_SECONDS).")
TURN_STARTS = Counter(
    f"{PREFIX}turn_cli_starts", "How each turn got its CLI: `warm` (a CLI already running for the session) or "
    "`cold` (a CLI started for the turn, resuming the conversation).", ["start"]
)
CLI_EXITS = Counter(f"{PREFIX}cli_exits", "Claude CLI processes that ended, by exit code.", ["code"])
LINE_TO_APPEND = Histogram(
    f"{PREFIX}cli_line_to_append_seconds",
    "From a CLI output line read to the event it became stored in the log.",
    buckets=APPEND_BUCKETS,
)
APPROVALS = Counter(
    f"{PREFIX}approvals", "Approvals of mutating verbs the agent asked for, by how they ended.", ["outcome"]
)

APPROVAL_OUTCOMES = ("approved", "denied", "timed_out", "turn_ended")


def watch(timeout_seconds: float, started: Callable[[], Collection[float]]) -> None:
    """Gauges read at scrape time from `started` (the monotonic start times
    of the turns running now, which the runner owns), and the zeros of every
    known label value (so the first increment is a visible change)."""
    TURN_TIMEOUT.set(timeout_seconds)
    TURNS_RUNNING.set_function(lambda: len(started()))

    def oldest() -> float:
        times = started()
        return time.monotonic() - min(times) if times else 0.0

    OLDEST_TURN.set_function(oldest)
    for outcome in Outcome:
        TURNS_ENDED.labels(outcome=outcome.value)
    for approval in APPROVAL_OUTCOMES:
        APPROVALS.labels(outcome=approval)
    for start in ("warm", "cold"):
        TURN_STARTS.labels(start=start)


def turn_ended(outcome: Outcome, started: float) -> None:
    TURNS_ENDED.labels(outcome=outcome.value).inc()
    TURN_DURATION.labels(outcome=outcome.value).observe(time.monotonic() - started)


def cli_exited(code: int) -> None:
    """Exit codes are 0-255, or minus a signal number; anything else is `other`."""
    CLI_EXITS.labels(code=str(code) if -64 <= code <= 255 else "other").inc()


def line_recorded(event: Envelope, read_at: float) -> None:
    """For stored events only: live-only ones (deltas) are never appended."""
    if kind_of(type(event)) not in EPHEMERAL_KINDS:
        LINE_TO_APPEND.observe(time.monotonic() - read_at)


def approval_decided(approved: bool, by: str, why: str) -> None:
    """`why` is set only when no operator answered (verb_tool.Decision)."""
    if approved:
        outcome = "approved"
    elif not why:
        outcome = "denied"
    else:
        outcome = "timed_out" if by == "timeout" else "turn_ended"
    APPROVALS.labels(outcome=outcome).inc()
