"""A clean agent every turn: only what `--resume` reads survives a turn."""

from __future__ import annotations

import uuid

from agent_runner.workspace import Workspace


def test_prepare_keeps_only_the_transcripts_of_home(tmp_path):
    sid = str(uuid.uuid4())
    ws = Workspace.for_session(tmp_path, sid).prepare()
    project = ws.home / ".claude" / "projects" / "-work"
    project.mkdir(parents=True)
    (project / f"{sid}.jsonl").write_text('{"transcript": 1}\n')
    planted = [
        ws.home / ".claude" / "settings.json", ws.home / ".claude" / "CLAUDE.md", ws.home / ".claude.json",
        project / "settings.json", ws.work / "CLAUDE.md", ws.work / ".mcp.json", ws.work / ".claude" / "settings.json",
        ws.tmp / "x",
    ]
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("planted")
    (ws.home / "link").symlink_to(tmp_path)

    ws.prepare("Host devvm\n")

    assert (project / f"{sid}.jsonl").read_text() == '{"transcript": 1}\n' and ws.started
    assert not [p for p in planted if p.exists()]
    assert not (ws.home / "link").is_symlink() and tmp_path.is_dir()
    assert sorted(p.name for p in ws.work.iterdir()) == [] and sorted(p.name for p in ws.tmp.iterdir()) == []
    assert (ws.home / ".ssh" / "config").read_text() == "Host devvm\n"
