"""Bad input never reaches the host (SPEC §2, §9): a verb outside the enum
is terminated at the bus, refused again by the handler, and a service that
is not configured answers every verb with a sentence instead of crashing."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
from msgspec.structs import replace

from events import subjects
from events.codec import decode, encode
from events.commands import RunVerb, VerbResult
from events.kinds import VerbPhase
from eventbus.log import EventLog
from events.types import new_id
from events.verbs import Verb
from pve_executor.records import IdempotencyRecords, VmLocks
from pve_executor.ssh import Completed
from pve_executor.verbs import VerbHandler
from tests.pve_executor.rig import audit_of, executor, request, settings_for

NOT_VERBS = ["reboot", "status; reboot", "STATUS", "status ", "", "ѕtatus", 7, None]


async def test_a_verb_outside_the_enum_is_terminated_on_the_bus_and_nothing_runs(
        nats_url, nc, js, topology, sshd_server, pve, caplog):
    replies = await nc.subscribe(subjects.VERB_REPLY_ALL)
    for bad in NOT_VERBS:
        raw = {"type": "run_verb", "by": "mallory", "request_id": new_id(), "verb": bad}
        await js.publish(subjects.VERB, json.dumps(raw).encode())
    await js.publish(subjects.VERB, b"status")  # not even JSON
    with caplog.at_level(logging.WARNING, logger="pve-executor"):
        async with executor(settings_for(nats_url, sshd_server)):
            good = await request(nc, js, Verb.STATUS)  # published after the poison, answered after it
    assert good.result.exit_code == 0
    assert pve.calls() == ["status 102"]  # only the good one reached the host
    assert sum("terminated a poison message" in r.message for r in caplog.records) == len(NOT_VERBS) + 1
    got = []
    while True:
        try:
            got.append(await replies.next_msg(timeout=0.2))
        except Exception:
            break
    assert [m.subject for m in got] == [subjects.verb_reply(good.command.request_id)]
    info = await js.consumer_info(topology.commands_stream, "pve-executor")
    assert info.num_ack_pending == 0 and info.num_redelivered == 0 and info.num_pending == 0


class CountingRunner:
    def __init__(self) -> None:
        self.commands: list[str] = []

    async def run(self, command: str, timeout: float, before_send=None) -> Completed:  # type: ignore[no-untyped-def]
        if before_send is not None:
            await before_send()
        self.commands.append(command)
        return Completed(exit_code=0, stdout="ran", started=True)


@pytest.mark.parametrize("bad", ["reboot", "status; reboot", "", "cycle\n"])
async def test_a_non_verb_that_got_past_the_decoder_is_neither_run_nor_recorded(nats_url, js, topology, bad):
    kv = await js.key_value(topology.kv_bucket)
    runner = CountingRunner()
    sent: list[tuple[str, bytes]] = []

    async def publish(subject: str, data: bytes) -> None:
        sent.append((subject, data))

    settings = replace(settings_for(nats_url), pve_host="pve.invalid", pve_known_hosts="/dev/null",
                       pve_key_file="/dev/null")
    handler = VerbHandler(settings=settings, runner=runner, events=EventLog(js, topology),
                          records=IdempotencyRecords(kv), locks=VmLocks(kv, stale_after=60), publish=publish)
    command = RunVerb(by="mallory", request_id=new_id(), verb=bad, idempotency_key="k1")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await handler.handle(command)

    assert runner.commands == []
    assert sent == []
    assert await audit_of(js, command.request_id) == []  # free text is never written to the log
    with pytest.raises(Exception):
        await kv.get("verbs.k1")


async def test_the_handler_accepts_the_plain_string_of_a_verb(nats_url, js, topology):
    kv = await js.key_value(topology.kv_bucket)
    runner = CountingRunner()
    sent: list[bytes] = []

    async def publish(subject: str, data: bytes) -> None:
        sent.append(data)

    settings = replace(settings_for(nats_url), pve_host="pve.invalid", pve_known_hosts="/dev/null",
                       pve_key_file="/dev/null")
    handler = VerbHandler(settings=settings, runner=runner, events=EventLog(js, topology),
                          records=IdempotencyRecords(kv), locks=VmLocks(kv, stale_after=60), publish=publish)
    await handler.handle(RunVerb(by="ops", request_id=new_id(), verb="status"))  # type: ignore[arg-type]
    assert runner.commands == ["status"]
    assert decode(sent[0], VerbResult).exit_code == 0


@pytest.mark.parametrize("missing, message", [
    ("pve_host", "pve-executor is not configured: BREAKGLASS_PVE_HOST is unset"),
    ("pve_known_hosts", "pve-executor is not configured: BREAKGLASS_PVE_KNOWN_HOSTS is unset"),
    ("pve_key_file", "pve-executor is not configured: neither BREAKGLASS_PVE_KEY_FILE nor an ssh-agent"),
])
async def test_not_configured_answers_every_verb_with_a_clear_error(nats_url, nc, js, topology, sshd_server, pve,
                                                                     missing, message):
    settings = replace(settings_for(nats_url, sshd_server), **{missing: None})
    session_id = new_id()
    async with executor(settings):
        answers = [await request(nc, js, verb, session_id=session_id) for verb in (Verb.STATUS, Verb.CYCLE)]
    for answer in answers:
        assert (answer.result.exit_code, answer.result.rejected) == (78, True)
        assert answer.result.stderr.startswith(message)
        events = await audit_of(js, answer.command.request_id)
        assert [(e.phase, e.rejected, e.exit_code) for e in events] == [(VerbPhase.DONE, True, 78)]
    assert pve.calls() == []  # the host was reachable, yet nothing was sent: fail closed


async def test_not_configured_at_all_still_answers(nats_url, nc, js, topology):
    async with executor(settings_for(nats_url)):
        answer = await request(nc, js, Verb.RESET)
    assert answer.result == VerbResult(verb=Verb.RESET, exit_code=78, rejected=True,
                                       stderr="pve-executor is not configured: BREAKGLASS_PVE_HOST is unset")
    assert answer.seconds < 2


async def test_the_reply_is_the_contract_type(nats_url, nc, js, topology):
    """The gateway decodes the reply with the typed decoder: same bytes, same struct."""
    async with executor(settings_for(nats_url)):
        answer = await request(nc, js, Verb.STATUS)
    assert decode(encode(answer.result), VerbResult) == answer.result


async def test_a_verb_the_audit_log_cannot_record_is_not_run(nats_url, js, topology):
    """Nothing reaches the host unaudited: no `running` event, no SSH command."""
    kv = await js.key_value(topology.kv_bucket)
    runner = CountingRunner()
    sent: list[bytes] = []

    async def publish(subject: str, data: bytes) -> None:
        sent.append(data)

    settings = replace(settings_for(nats_url), pve_host="pve.invalid", pve_known_hosts="/dev/null",
                       pve_key_file="/dev/null")
    broken_log = EventLog(js, dataclasses.replace(topology, events_stream="NOT_THE_EVENTS_STREAM"))
    handler = VerbHandler(settings=settings, runner=runner, events=broken_log, records=IdempotencyRecords(kv),
                          locks=VmLocks(kv, stale_after=60), publish=publish, append_retry_seconds=0.5)
    await handler.handle(RunVerb(by="ops", request_id=new_id(), verb=Verb.CYCLE))
    assert runner.commands == []
    result = decode(sent[0], VerbResult)
    assert (result.exit_code, result.rejected) == (75, True)
    assert result.stderr.startswith("not run: the audit log cannot record it")
