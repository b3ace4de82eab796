"""Authority for a verb: who asked comes from the transport, and an agent's
mutating verb needs the operator's grant.

The command body is written by whoever published it, and agent-runner's
NATS credential is readable wherever the agent runs, so nothing in the body
is taken on trust:

- origin: the subject the command arrived on (`subjects.verb_origin`).
  NATS permissions let only the gateway publish operator verbs and only
  agent-runner publish agent verbs; an agent verb is recorded `by: agent`
  whatever its body claims.
- approval: under `approve-mutating`, an agent's mutating verb runs only
  against an `ApprovalGrant` in the KV bucket, which only the gateway's
  NATS user may write (the operator's Approve). The grant must name the
  same session, request and verb, must not have expired, and is redeemed
  once: pve-executor creates `spent.<approval_id>` (compare-and-set), so a
  replayed command finds it and is refused.
- two-person rule: a verb in BREAKGLASS_TWO_PERSON_VERBS runs, whoever
  asked, only against such a grant whose approver is an operator other
  than the one who asked (never the agent: agent-runner writes no grants,
  and a grant naming `agent` as approver is refused all the same). An
  operator's press of such a verb reaches here only after a second operator
  approved it in the gateway (gateway.presses).
"""

from __future__ import annotations

import logging

from msgspec.structs import replace
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from events import subjects
from events.codec import ContractError, decode, encode
from events.commands import ApprovalGrant, Command, RunVerb
from eventbus.topology import grant_key, spent_key
from events.types import utcnow
from events.verbs import APPROVE_MUTATING, Verb, is_mutating

logger = logging.getLogger("pve-executor.grants")

AGENT = "agent"


def from_transport(command: Command, subject: str) -> Command:
    """The command with its origin (and an agent's `by`) taken from the
    subject it arrived on. A verb on any other subject is refused
    (ContractError: the consumer terminates it)."""
    if not isinstance(command, RunVerb):
        return command
    origin = subjects.verb_origin(subject)
    if origin is None:
        raise ContractError(f"a verb command on {subject}, which names no origin")
    if origin == AGENT:
        if command.by != AGENT or command.origin != AGENT:
            logger.warning("an agent verb claimed by=%r origin=%r; recorded as the agent's", command.by, command.origin)
        return replace(command, by=AGENT, origin=AGENT)
    return replace(command, origin="operator")


def needs_grant(cmd: RunVerb, verb: Verb, policy: str, two_person: frozenset[Verb] = frozenset()) -> bool:
    return verb in two_person or (policy == APPROVE_MUTATING and cmd.origin == AGENT and is_mutating(verb))


class Grants:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def redeem(self, cmd: RunVerb, verb: Verb, *, two_person: bool = False) -> str | None:
        """None when `cmd` carries a valid, unspent grant (now spent), else
        why it may not run, in words. `two_person`: the approver must be an
        operator other than who asked."""
        if cmd.approval_id is None:
            if two_person:
                return f"`{verb.value}` needs a second operator's approval (two-person rule), and this one carries none"
            return "an agent's mutating verb needs the operator's approval, and this one carries none"
        try:
            entry = await self._kv.get(grant_key(cmd.approval_id))
            grant = decode(entry.value or b"", ApprovalGrant)
        except KeyNotFoundError:
            return f"no operator approval {cmd.approval_id} exists (only the gateway can grant one)"
        except ContractError as exc:
            return f"the approval {cmd.approval_id} is unreadable ({exc})"
        if grant.approval_id != cmd.approval_id:
            return f"the approval stored as {cmd.approval_id} names another approval"
        if grant.session_id != cmd.session_id or grant.request_id != cmd.request_id or grant.verb != verb:
            return (f"approval {cmd.approval_id} was given for `{grant.verb.value}` (request {grant.request_id}) "
                    "in another session or request, not for this one")
        if two_person and (grant.approved_by.casefold() in (cmd.by.casefold(), AGENT)
                           or grant.requested_by not in (None, cmd.by)):
            return (f"`{verb.value}` needs a second operator's approval (two-person rule): approval "
                    f"{cmd.approval_id} was given by {grant.approved_by!r} for a request by {cmd.by!r}")
        if utcnow() >= grant.expires_at:
            return f"approval {cmd.approval_id} expired at {grant.expires_at.isoformat()}"
        try:
            await self._kv.create(spent_key(cmd.approval_id), encode(cmd))
        except KeyWrongLastSequenceError:
            return f"approval {cmd.approval_id} was already used once; an approval runs one verb, once"
        logger.info("approval %s by %s redeemed for %s", cmd.approval_id, grant.approved_by, verb.value)
        return None
