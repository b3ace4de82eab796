"""pve-executor end to end: the real service, real JetStream, a real OpenSSH
sshd running the shipped forced command over a fake `qm`.

What a press must do: run exactly once, answer on its reply subject, and
leave `running` + `done` on the session (when there is one) and on the
audit subject, with who pressed it.
"""

from __future__ import annotations


import pytest

from events.kinds import VerbPhase
from events.types import new_id
from events.verbs import MUTATING, Verb
from tests.pve_host.host import FORENSICS, VMID, PveHost
from tests.pve_executor.rig import audit_of, executor, request, session_of, settings_for

EXPECTED_CALLS = {
    Verb.STATUS: [f"status {VMID}"],
    Verb.FORENSICS: FORENSICS,
    Verb.RESET: FORENSICS + [f"reset {VMID}"],
    Verb.STOP: FORENSICS + [f"stop {VMID} --timeout 45"],
    Verb.START: FORENSICS + [f"start {VMID}"],
    Verb.CYCLE: FORENSICS + [f"stop {VMID} --timeout 45", f"status {VMID}", f"start {VMID}"],
}


@pytest.mark.parametrize("verb", list(Verb))
async def test_each_verb_runs_once_and_is_answered_and_recorded(nats_url, nc, js, topology, sshd_server, pve: PveHost,
                                                                verb):
    if verb is Verb.START:
        pve.knob("status", "stopped")
    session_id = new_id()
    async with executor(settings_for(nats_url, sshd_server)):
        answer = await request(nc, js, verb, by="alice", session_id=session_id)

    result = answer.result
    assert (result.verb, result.exit_code, result.rejected) == (verb, 0, False), result
    assert pve.calls() == EXPECTED_CALLS[verb]
    if verb is Verb.STATUS:
        assert result.stdout == "status: running\n"
    else:
        assert result.stdout.startswith(f"### forensics vm {VMID}")
    if verb in MUTATING:
        assert f"### {verb.value} vm {VMID}" in result.stdout

    rid = answer.command.request_id
    for events in (await session_of(js, session_id), await audit_of(js, rid)):
        assert [e.phase for e in events] == [VerbPhase.RUNNING, VerbPhase.DONE]
        running, done = events
        assert all(e.verb == verb and e.by == "alice" and e.request_id == rid and e.session_id == session_id
                   for e in events)
        assert running.exit_code is None and running.stdout is None
        assert (done.exit_code, done.stdout, done.stderr, done.rejected) == (
            result.exit_code, result.stdout, result.stderr, result.rejected)


async def test_a_verb_outside_any_session_is_recorded_on_the_audit_subject_only(nats_url, nc, js, topology,
                                                                                sshd_server, pve):
    async with executor(settings_for(nats_url, sshd_server)):
        answer = await request(nc, js, Verb.STATUS, by="bob")
    events = await audit_of(js, answer.command.request_id)
    assert [(e.phase, e.session_id, e.by) for e in events] == [(VerbPhase.RUNNING, None, "bob"),
                                                               (VerbPhase.DONE, None, "bob")]
    info = await js.stream_info(topology.events_stream)
    assert info.state.messages == 2  # nothing went to any session subject


async def test_a_failing_qm_call_comes_back_with_its_exit_code_and_stderr(nats_url, nc, js, topology, sshd_server,
                                                                          pve):
    pve.knob("fail_reset", 2)
    async with executor(settings_for(nats_url, sshd_server)):
        answer = await request(nc, js, Verb.RESET)
    assert (answer.result.exit_code, answer.result.rejected) == (2, False)
    assert "fake qm: reset 102 failed" in answer.result.stderr


async def test_verbs_keep_flowing_one_after_another(nats_url, nc, js, topology, sshd_server, pve):
    async with executor(settings_for(nats_url, sshd_server)):
        answers = [await request(nc, js, verb) for verb in (Verb.STOP, Verb.STATUS, Verb.START, Verb.STATUS)]
    assert [a.result.exit_code for a in answers] == [0, 0, 0, 0]
    assert [answers[1].result.stdout, answers[3].result.stdout] == ["status: stopped\n", "status: running\n"]
    info = await js.consumer_info(topology.commands_stream, "pve-executor")
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_a_mutating_verb_that_waited_too_long_on_the_queue_is_not_run_late(nats_url, nc, js, topology,
                                                                                  sshd_server, pve):
    async with executor(settings_for(nats_url, sshd_server)):
        stale = await request(nc, js, Verb.CYCLE, age_seconds=300)
        late_status = await request(nc, js, Verb.STATUS, age_seconds=300)
    assert (stale.result.exit_code, stale.result.rejected) == (75, True)
    assert stale.result.stderr.startswith("expired: requested 300 s ago")
    assert late_status.result.exit_code == 0  # a read-only verb late is harmless
    assert pve.calls() == [f"status {VMID}"]
