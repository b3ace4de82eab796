"""The six power verbs: the only words that may ever reach the hypervisor.

Every hop re-checks membership (gateway, bus decode, pve-executor, host
script) even though the last hop alone would be enough: a verb is an enum
value, never free text, so a bug in one hop cannot smuggle a command through.
"""

from __future__ import annotations

import enum


class Verb(str, enum.Enum):
    STATUS = "status"
    FORENSICS = "forensics"
    RESET = "reset"
    STOP = "stop"
    START = "start"
    CYCLE = "cycle"


#: Verbs that change the VM's state: confirmed in the PWA, serialised per VM,
#: run at most once per idempotency key, and gated by the approval policy.
MUTATING: frozenset[Verb] = frozenset({Verb.RESET, Verb.STOP, Verb.START, Verb.CYCLE})

ALL: tuple[Verb, ...] = tuple(Verb)


def is_mutating(verb: Verb) -> bool:
    return verb in MUTATING


#: Verb policies (BREAKGLASS_VERB_POLICY). Enforced by agent-runner when the
#: agent asks and again by pve-executor, where the key is.
AUTONOMOUS = "autonomous"
APPROVE_MUTATING = "approve-mutating"
POLICIES: tuple[str, ...] = (AUTONOMOUS, APPROVE_MUTATING)
