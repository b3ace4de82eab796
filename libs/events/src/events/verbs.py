"""The six power verbs: the only words that may ever reach the hypervisor.

Every hop re-checks membership (gateway, bus decode, pve-executor, host
script) even though the last hop alone would be enough: a verb is an enum
value, never free text, so a bug in one hop cannot smuggle a command through.
"""

from __future__ import annotations

import enum
from typing import Literal, get_args

from .config import PREFIX, ConfigError, Env


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
Policy = Literal["autonomous", "approve-mutating"]
POLICIES: tuple[str, ...] = get_args(Policy)
AUTONOMOUS, APPROVE_MUTATING = POLICIES


def two_person_verbs(env: Env) -> frozenset[Verb]:
    """BREAKGLASS_TWO_PERSON_VERBS: the mutating verbs that need a second
    operator's Approve (empty: the rule is off). Read the same way by the
    gateway, which asks for the approval, and pve-executor, which runs such
    a verb only against a grant from someone other than who asked."""
    value = env.str("TWO_PERSON_VERBS")
    if value is None or value.strip().lower() in ("", "none", "off"):
        return frozenset()
    names = [item.strip() for item in value.split(",") if item.strip()]
    chosen = MUTATING if names == ["all"] else frozenset(Verb(n) for n in names if n in {v.value for v in MUTATING})
    wrong = [n for n in names if n != "all" and n not in {v.value for v in MUTATING}]
    if wrong:
        raise ConfigError(f"{PREFIX}TWO_PERSON_VERBS lists {', '.join(wrong)}: only mutating verbs "
                          f"({', '.join(sorted(v.value for v in MUTATING))}) or `all`")
    return frozenset(chosen)
