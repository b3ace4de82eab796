"""An alert's automatic triage: the read-only verbs, then a read-only agent
turn with a fixed prompt, then one paragraph for the operator.

Read-only by construction, at three places:
- the verbs run here are the fixed tuple `READ_ONLY` (`status`,
  `forensics`), asked through the same helper as an operator's press;
- the agent turn is published with `StartTurn.read_only`, so agent-runner
  holds every mutating verb the agent asks for until a human approves it,
  whatever `BREAKGLASS_VERB_POLICY` says (agent_runner.turns.turn_policy);
- pve-executor's own rules for agent verbs apply as to any turn.

The triage ends with exactly one `diagnosis` event, whatever happened
(turn failed, timed out, a turn already running, NATS errors), so the
operator is always told, and the group is freed for the next triage.
"""

from __future__ import annotations

import asyncio
import logging
import re

from eventbus import trace
from events.codec import decode_event_lenient
from events.commands import VerbResult
from events.kinds import AlertReceived, DiagnosisReady, Outcome, ResultReported, TextSaid, TurnEnded
from events.types import MAX_PROMPT_BYTES, new_id
from events.vms import Vm
from events.verbs import Verb, is_mutating

from .. import sessions, verbs
from ..bus import Bus
from ..settings import Settings
from .receive import release_group

log = logging.getLogger("gateway.triage")

TRIAGE = "triage"
READ_ONLY: tuple[Verb, ...] = (Verb.STATUS, Verb.FORENSICS)
assert not any(is_mutating(v) for v in READ_ONLY)
#: Each verb's output in the prompt is cut to this many characters.
OUTPUT_IN_PROMPT = 6000
SUMMARY_CHARS = 1500

PROMPT = """\
An alert fired and no operator is at the console yet. Triage it, read-only:
find out what is wrong with the VM and why, and change NOTHING (no restarts,
no writes, no kill, no mutating power verb; any mutating verb you ask for
waits for a human's approval anyway).

Alert: {alertname} ({status}) on VM {vm}
Labels: {labels}
Annotations: {annotations}

The power verbs already ran; their output:

`status` (exit {status_code}):
{status_output}

`forensics` (exit {forensics_code}):
{forensics_output}

End your reply with ONE paragraph for the operator, and nothing after it:
its first line names the most likely cause, then the evidence, then the
recovery step you recommend."""


def triage_prompt(alert: AlertReceived, results: dict[Verb, VerbResult]) -> str:
    def output(verb: Verb) -> str:
        result = results[verb]
        text = (result.stdout + ("\n" + result.stderr if result.stderr else "")).strip() or "(no output)"
        return text if len(text) <= OUTPUT_IN_PROMPT else text[:OUTPUT_IN_PROMPT] + "\n… (cut)"

    def pairs(mapping: dict[str, str]) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(mapping.items()))[:2000] or "(none)"

    prompt = PROMPT.format(
        alertname=alert.alertname, status=alert.status.value, vm=alert.vm,
        labels=pairs(alert.labels), annotations=pairs(alert.annotations),
        status_code=results[Verb.STATUS].exit_code, status_output=output(Verb.STATUS),
        forensics_code=results[Verb.FORENSICS].exit_code, forensics_output=output(Verb.FORENSICS),
    )
    return prompt.encode()[:MAX_PROMPT_BYTES].decode(errors="ignore")


_BLANK = re.compile(r"\n\s*\n")


def paragraph(text: str) -> str:
    """The agent's closing paragraph (the prompt asks for it last), cut short."""
    parts = [p.strip() for p in _BLANK.split(text) if p.strip()]
    last = parts[-1] if parts else ""
    return last if len(last) <= SUMMARY_CHARS else last[: SUMMARY_CHARS - 1].rstrip() + "…"


async def run(bus: Bus, settings: Settings, session_id: str, vm: str, alert: AlertReceived, group_key: str) -> None:
    trace.bind(session_id=session_id, by=TRIAGE)
    log.info("triage started for %s on %s", alert.alertname, vm)
    outcome: Outcome | None = None
    try:
        target = settings.vms.named(vm) or settings.vms.default  # the session's VM (receive binds it)
        results = dict(zip(READ_ONLY, await asyncio.gather(*(_verb(bus, settings, session_id, v, target)
                                                             for v in READ_ONLY))))
        after = await bus.log.last_seq(session_id)
        try:
            turn_id = await sessions.start_turn(
                bus, session_id, triage_prompt(alert, results), settings.model, TRIAGE, read_only=True)
        except sessions.TurnBusy:
            summary = ("A turn was already running in this session, so no triage turn started; "
                       "the `status` and `forensics` output are above.")
        else:
            outcome, text = await _turn_end(bus, session_id, turn_id, after, settings.triage_timeout_seconds)
            summary = paragraph(text) or _no_text(outcome)
    except Exception as exc:  # the operator is told whatever broke
        log.exception("triage failed")
        summary = f"The triage could not finish ({type(exc).__name__}); look at the session and run `status`."
    try:
        await bus.log.append(DiagnosisReady(
            session_id=session_id, by=TRIAGE, alertname=alert.alertname, summary=summary, outcome=outcome))
    finally:
        await release_group(bus, group_key, session_id)
    log.info("triage done (%s)", outcome.value if outcome else "no turn")


async def _verb(bus: Bus, settings: Settings, session_id: str, verb: Verb, vm: Vm) -> VerbResult:
    with trace.bound(request_id=new_id()):  # each verb its own request id (its Nats-Msg-Id)
        return await verbs.request_verb(
            bus, verb, by=TRIAGE, wait_seconds=settings.verb_wait_seconds, session_id=session_id, vm=vm,
            vms=settings.vms)


async def _turn_end(bus: Bus, session_id: str, turn_id: str, after: int, timeout: float) -> tuple[Outcome | None, str]:
    """Wait for the turn's `turn_end`; its outcome and the agent's last words."""
    ended: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
    said: list[str] = []

    def deliver(_seq: int, data: bytes) -> None:
        event = decode_event_lenient(data)
        if event is None or event.turn_id != turn_id:
            return
        if isinstance(event, TextSaid) and event.text.strip():
            said.append(event.text)
        elif isinstance(event, ResultReported) and event.result.strip() and not said:
            said.append(event.result)
        elif isinstance(event, TurnEnded) and not ended.done():
            ended.set_result(event.outcome)

    tail = await bus.log.follow(session_id, after, deliver)
    try:
        outcome = await asyncio.wait_for(ended, timeout)
    except TimeoutError:
        return None, ""
    finally:
        await tail.stop()
    return outcome, said[-1] if said else ""


def _no_text(outcome: Outcome | None) -> str:
    if outcome is None:
        return "The triage turn did not end in time; it may still be waiting for an approval. Open the session."
    return f"The triage turn ended ({outcome.value}) without a summary; the `status` and `forensics` output are above."


class Triages:
    """The triages this gateway runs in the background (the receiver answers
    Alertmanager at once); cancelled when the gateway stops. A cancelled
    triage's group frees itself when its `triage_until` lapses."""

    def __init__(self, bus: Bus, settings: Settings) -> None:
        self._bus = bus
        self._settings = settings
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, session_id: str, vm: str, alert: AlertReceived, group_key: str) -> None:
        task = asyncio.create_task(run(self._bus, self._settings, session_id, vm, alert, group_key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
