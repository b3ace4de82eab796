"""Asking pve-executor for a verb: record the request, publish it, await the reply.

Two services ask for verbs: the gateway (an operator's press) and
agent-runner (the agent's narrow verb tool). Both do it the same way, so the
way lives in the contract package instead of being written twice:

- the `requested` phase is recorded in the session (when there is one) and
  on the audit subject, so every verb request is on the audit log whoever
  asked and whatever happens next;
- the reply subject is subscribed BEFORE the command is published, so a
  fast executor's answer cannot be missed;
- the command's `Nats-Msg-Id` is its idempotency key (or, without one, its
  request id): a republished command is dropped by JetStream as a duplicate.
  What a duplicate's caller gets instead is the caller's business
  (`on_duplicate`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.js import JetStreamContext

from events import subjects
from . import trace
from events.codec import ContractError, decode, encode
from events.commands import RunVerb, VerbResult
from events.kinds import VerbPhase, VerbProgressed
from .log import EventLog
from events.verbs import Verb

log = logging.getLogger("eventbus.verb_requests")


def no_answer(verb: Verb, seconds: float) -> VerbResult:
    """What the requester reports when pve-executor said nothing in time."""
    return VerbResult(
        verb=verb, exit_code=124,
        stderr=f"no answer from pve-executor within {seconds:g} s; check the verb's outcome with `status`",
    )


async def record_requested(events: EventLog, requested: VerbProgressed) -> None:
    """The `requested` phase, in its session (if any) and on the audit subject."""
    if requested.phase is not VerbPhase.REQUESTED or requested.request_id is None:
        raise ValueError("record_requested takes a `requested` verb event with its request id")
    if requested.session_id is not None:
        await events.append(requested, msg_id=f"{requested.request_id}:requested")
    await events.append_audit("verb", requested, msg_id=f"{requested.request_id}:requested:audit")


async def run_verb(
    nc: Client,
    js: JetStreamContext,
    command: RunVerb,
    *,
    wait_seconds: float,
    on_duplicate: Callable[[], Awaitable[VerbResult]] | None = None,
) -> VerbResult:
    """Publish `command` and return pve-executor's reply, or `no_answer`.

    NATS errors while subscribing or publishing propagate (nothing was
    published, or it is unknown whether it was); waiting never raises.

    pve-executor answers with a plain publish (no reply subject). A message
    that carries one was delivered by a JetStream consumer: a user allowed
    to create consumers on a stream can point one's deliver subject here
    (nats-server does not check it against the creator's permissions,
    nats-io/nats-server#8274), and a stored `verb` event would decode as a
    result. Such a message is ignored and the wait goes on.
    """
    reply = await nc.subscribe(subjects.verb_reply(command.request_id))
    try:
        msg_id = command.idempotency_key or command.request_id
        subject = subjects.verb_command(command.origin)
        ack = await js.publish(subject, encode(command), headers=trace.headers(**{"Nats-Msg-Id": msg_id}))
        if ack.duplicate and on_duplicate is not None:
            return await on_duplicate()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while True:
            try:
                msg = await reply.next_msg(timeout=max(deadline - loop.time(), 0.001))
            except Exception:  # nats' own TimeoutError, or the connection went away meanwhile
                return no_answer(command.verb, wait_seconds)
            if not msg.reply:
                break
            log.warning("ignored a message re-sent by a JetStream consumer on %s", msg.subject)
        try:
            return decode(msg.data, VerbResult)
        except ContractError as exc:
            log.error("pve-executor sent a malformed reply: %s", exc)
            return VerbResult(verb=command.verb, exit_code=1, stderr="pve-executor sent a malformed reply")
    finally:
        try:
            await reply.unsubscribe()
        except Exception:  # the connection may be gone; the subscription went with it
            pass
