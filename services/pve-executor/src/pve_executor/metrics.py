"""pve-executor's Prometheus metrics: every verb it answered, by outcome.

`verb` is one of the six (anything else never gets this far as a label:
it is `invalid`), `outcome` one of OUTCOMES. Who pressed it and which
request it was are on the audit subject, never labels.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram

from events.commands import VerbResult
from eventbus.metrics import PREFIX
from events.verbs import ALL, Verb

from .ssh import EX_TIMEOUT

#: ok: exit 0. failed: it ran and exited non-zero. timeout: it was sent and
#: did not finish in time (the host may have acted). rejected: nothing ran
#: (refused, busy, expired, not configured, SSH failed before sending).
#: duplicate: a repeated idempotency key, answered with the first result.
#: lost: its executor died running it, and another ended it (verbs.sweep).
OUTCOMES = ("ok", "failed", "timeout", "rejected", "duplicate", "lost")
#: Seconds: `status` takes well under one; `cycle` waits for a shutdown.
BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

VERBS = Counter(f"{PREFIX}verbs", "Verbs answered, by verb and outcome.", ["verb", "outcome"])
VERB_DURATION = Histogram(
    f"{PREFIX}verb_duration_seconds", "From taking the command to answering it, by verb and outcome.",
    ["verb", "outcome"], buckets=BUCKETS,
)

for _verb in ALL:  # every series exported from the start, so the first failure is a change
    for _outcome in OUTCOMES:
        VERBS.labels(verb=_verb.value, outcome=_outcome)


def outcome_of(result: VerbResult) -> str:
    if result.lost:
        return "lost"
    if result.rejected:
        return "rejected"
    if result.exit_code == 0:
        return "ok"
    return "timeout" if result.exit_code == EX_TIMEOUT else "failed"


def answered(verb: Verb | str, outcome: str, started: float) -> None:
    """`started`: time.monotonic() when the command was taken."""
    label = Verb(verb).value if verb in ALL else "invalid"
    VERBS.labels(verb=label, outcome=outcome).inc()
    VERB_DURATION.labels(verb=label, outcome=outcome).observe(time.monotonic() - started)
