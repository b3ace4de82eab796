"""A failed priming (agent_runner.warm_turn) puts the session's transcript
back as it was before the priming prompt, so a later `--resume` never
sees that prompt."""

from __future__ import annotations

from types import SimpleNamespace

from agent_runner.warm import transcript_path
from agent_runner.warm_turn import _restore_transcript, _transcript_size


def _ws(tmp_path):  # type: ignore[no-untyped-def]
    return SimpleNamespace(home=tmp_path / "home", root=tmp_path / "sessions" / "s-1")


def test_a_transcript_made_by_the_priming_is_removed(tmp_path):
    ws = _ws(tmp_path)
    before = _transcript_size(ws)
    made = ws.home / ".claude" / "projects" / "-work" / "s-1.jsonl"
    made.parent.mkdir(parents=True)
    made.write_bytes(b'{"type":"user","message":{"content":"."}}\n')
    assert transcript_path(ws) == made
    _restore_transcript(ws, before)
    assert before is None and not made.exists()


def test_a_resumed_transcript_is_cut_back_to_its_real_turns(tmp_path):
    ws = _ws(tmp_path)
    path = ws.home / ".claude" / "projects" / "-work" / "s-1.jsonl"
    path.parent.mkdir(parents=True)
    real = b'{"type":"user","message":{"content":"pick a colour"}}\n'
    path.write_bytes(real)
    before = _transcript_size(ws)
    with open(path, "ab") as f:
        f.write(b'{"type":"user","message":{"content":"."}}\n')
    _restore_transcript(ws, before)
    assert path.read_bytes() == real
