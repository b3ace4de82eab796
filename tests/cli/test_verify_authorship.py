"""`breakglass verify` catches forged authorship and a cut tail (issue 14,
part 4), against a real JetStream and the real command.

Each service appends under its own writer subject, which its NATS user
alone may publish to (tests/security/test_nats_permissions.py), so the
writer of a stored event is a fact. A leaked agent-runner credential can
still store events on agent-runner's subject: verify names every one that
is not agent-runner's to state. A cut export with its header rewritten
verifies on its own, but not against the chain head kept elsewhere."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from events.codec import encode
from events.commands import SessionRecord
from events.kinds import (
    ApprovalRequested, ObserverAction, ObserverAudited, Outcome, TextSaid, TurnEnded, UserPrompted, VerbPhase, VerbProgressed,
)
from eventbus.log import EventLog
from eventbus.topology import session_key
from events.types import new_id, utcnow
from tests.cli.test_audit import run


async def _session(js, topology, forged=None) -> str:  # type: ignore[no-untyped-def]
    sid, turn = new_id(), new_id()
    kv = await js.key_value(topology.kv_bucket)
    await kv.create(session_key(sid), encode(SessionRecord(session_id=sid, created_by="alice", created_at=utcnow())))
    gateway, runner = EventLog(js, topology, writer="gateway"), EventLog(js, topology, writer="agent-runner")
    executor = EventLog(js, topology, writer="pve-executor")
    await gateway.append(UserPrompted(session_id=sid, turn_id=turn, by="alice", text="the VM is stuck"))
    await runner.append(TextSaid(session_id=sid, turn_id=turn, by="agent", text="QEMU I/O stall."))
    await runner.append(VerbProgressed(session_id=sid, turn_id=turn, by="agent", verb="cycle",
                                       phase=VerbPhase.REQUESTED))
    await gateway.append(VerbProgressed(session_id=sid, turn_id=turn, by="alice", verb="cycle",
                                        phase=VerbPhase.APPROVED))
    await executor.append(VerbProgressed(session_id=sid, by="agent", verb="cycle", phase=VerbPhase.DONE, exit_code=0))
    if forged is not None:
        writer, event = forged
        await EventLog(js, topology, writer=writer).append(event(sid, turn))
    await runner.append(TurnEnded(session_id=sid, turn_id=turn, by="agent-runner", outcome=Outcome.OK))
    return sid


async def _export(nats_url: str, sid: str, path: Path) -> list[str]:
    out = await asyncio.to_thread(run, nats_url, "replay", sid, "--format", "jsonl")
    assert out.returncode == 0, out.stderr
    path.write_text(out.stdout)
    return out.stdout.splitlines(keepends=True)


async def test_an_honest_session_verifies_with_every_writer_named(nats_url, js, topology, tmp_path: Path):
    sid = await _session(js, topology)
    lines = await _export(nats_url, sid, tmp_path / "s.jsonl")
    writers = [json.loads(line)["writer"] for line in lines[1:]]
    assert writers == ["gateway", "agent-runner", "agent-runner", "gateway", "pve-executor", "agent-runner"]
    ok = await asyncio.to_thread(run, nats_url, "verify", str(tmp_path / "s.jsonl"))
    assert ok.returncode == 0 and ok.stdout.startswith("OK"), ok.stdout


FORGERIES = {
    "the runner approves for alice": ("agent-runner", lambda sid, turn: VerbProgressed(
        session_id=sid, turn_id=turn, by="alice", verb="cycle", phase=VerbPhase.APPROVED), "verb phase `approved`"),
    "the runner reports a verb's outcome": ("agent-runner", lambda sid, turn: VerbProgressed(
        session_id=sid, by="agent", verb="reset", phase=VerbPhase.DONE, exit_code=0), "verb phase `done`"),
    "the runner puts words in the operator's mouth": ("agent-runner", lambda sid, turn: UserPrompted(
        session_id=sid, turn_id=turn, by="alice", text="cycle it, no need to ask"), "`user` events"),
    "the runner asks for a verb as the operator": ("agent-runner", lambda sid, turn: VerbProgressed(
        session_id=sid, by="alice", verb="stop", phase=VerbPhase.REQUESTED), "requested by 'alice'"),
    "the gateway speaks for the agent": ("gateway", lambda sid, turn: TextSaid(
        session_id=sid, turn_id=turn, by="agent", text="all good"), "`text` events"),
    # issue 19: an operator's two-person press is the gateway's `approval`, the agent's ask the runner's
    "the runner asks as an operator's press": ("agent-runner", lambda sid, turn: ApprovalRequested(
        session_id=sid, by="alice", approval_id=new_id(), verb="cycle"), "asked for by 'alice'"),
    "the gateway asks as the agent": ("gateway", lambda sid, turn: ApprovalRequested(
        session_id=sid, by="agent", approval_id=new_id(), verb="cycle"), "asked for by 'agent'"),
    "the runner audits an observer": ("agent-runner", lambda sid, turn: ObserverAudited(
        session_id=sid, by="agent", action=ObserverAction.USED, observer_id="ab" * 32), "`observer` events"),
}


@pytest.mark.parametrize("case", FORGERIES, ids=list(FORGERIES))
async def test_a_forged_event_fails_verification(nats_url, js, topology, tmp_path: Path, case):
    writer, event, why = FORGERIES[case]
    sid = await _session(js, topology, forged=(writer, event))
    await _export(nats_url, sid, tmp_path / "s.jsonl")
    bad = await asyncio.to_thread(run, nats_url, "verify", str(tmp_path / "s.jsonl"))
    assert bad.returncode == 1 and "TAMPERED" in bad.stdout and "forged" in bad.stdout, bad.stdout
    assert "event 6" in bad.stdout and why in bad.stdout, bad.stdout


async def test_an_event_cannot_be_re_attributed_in_the_export(nats_url, js, topology, tmp_path: Path):
    sid = await _session(js, topology, forged=FORGERIES["the runner approves for alice"][:2])
    lines = await _export(nats_url, sid, tmp_path / "s.jsonl")
    relabelled = tmp_path / "relabelled.jsonl"
    lines[6] = lines[6].replace('"writer":"agent-runner"', '"writer":"gateway"')
    relabelled.write_text("".join(lines))
    bad = await asyncio.to_thread(run, nats_url, "verify", str(relabelled))
    assert bad.returncode == 1 and "event 6" in bad.stdout and "hash does not match" in bad.stdout, bad.stdout


async def test_a_cut_export_fails_against_the_anchor(nats_url, js, topology, tmp_path: Path):
    sid = await _session(js, topology)
    listed = await asyncio.to_thread(run, nats_url, "sessions")
    anchor = (await asyncio.to_thread(run, nats_url, "anchor", sid)).stdout.strip()
    seq, link = anchor.split(":")
    assert f"{seq}:{link[:16]}" in next(line for line in listed.stdout.splitlines() if sid in line)
    lines = await _export(nats_url, sid, tmp_path / "s.jsonl")

    # Cut the last two events (the approval's outcome, the turn's end) and
    # rewrite the header to match: on its own the file is self-consistent.
    header = json.loads(lines[0])
    kept = lines[1:-2]
    header.update(count=len(kept), last_link=json.loads(kept[-1])["link"])
    cut = tmp_path / "cut.jsonl"
    cut.write_text(json.dumps(header) + "\n" + "".join(kept))
    alone = await asyncio.to_thread(run, nats_url, "verify", str(cut))
    assert alone.returncode == 0, alone.stdout

    for given in (anchor, f"{seq}:{link[:16]}"):
        bad = await asyncio.to_thread(run, nats_url, "verify", str(cut), "--anchor", given)
        assert bad.returncode == 1 and "not in the export" in bad.stdout and "cut" in bad.stdout, bad.stdout
    whole = await asyncio.to_thread(run, nats_url, "verify", str(tmp_path / "s.jsonl"), "--anchor", anchor)
    assert whole.returncode == 0 and "holds 1 anchor" in whole.stdout, whole.stdout
    wrong = await asyncio.to_thread(run, nats_url, "verify", str(tmp_path / "s.jsonl"), "--anchor", f"{seq}:{'0' * 16}")
    assert wrong.returncode == 1 and "rewritten" in wrong.stdout
    junk = await asyncio.to_thread(run, nats_url, "verify", str(cut), "--anchor", "12:abc")
    assert junk.returncode == 2 and "SEQ:LINK" in junk.stderr
