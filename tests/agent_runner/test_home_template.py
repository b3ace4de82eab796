"""The warm home template: a CLI's first-run state, allow-listed, laid in
every session's HOME after the clean-up (and nothing else from it)."""

from __future__ import annotations

import json
import stat
import uuid

from agent_runner import home_template
from agent_runner.workspace import Workspace

FIRST_RUN = {
    "firstStartTime": "2026-12-02T06:07:56.554Z", "firstStartVersion": "2.1.328", "migrationVersion": 15,
    "opusProMigrationComplete": True, "userID": "160621761ba980bad1",
}


def test_only_first_run_facts_of_the_right_type_are_kept(tmp_path):
    planted = {
        **FIRST_RUN,
        "mcpServers": {"planted": {"command": "sh"}},
        "projects": {"/work": {"allowedTools": ["*"], "mcpServers": {"x": {}}}},
        "migrationVersion": "15; touch /tmp/x",  # wrong type: dropped
        "machineID": "x" * 1000,  # oversized: dropped
    }
    (tmp_path / ".claude.json").write_text(json.dumps(planted))
    kept = home_template.read(tmp_path)
    assert kept == {k: v for k, v in FIRST_RUN.items() if k != "migrationVersion"}


def test_nothing_is_read_from_a_symlink_a_non_object_or_garbage(tmp_path):
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps(FIRST_RUN))
    home = tmp_path / "home"
    home.mkdir()
    (home / ".claude.json").symlink_to(target)
    assert home_template.read(home) is None
    (home / ".claude.json").unlink()
    for text in ("[1, 2]", "{not json", '{"unknown": 1}'):
        (home / ".claude.json").write_text(text)
        assert home_template.read(home) is None, text
    assert home_template.read(tmp_path / "missing") is None


def test_a_cleaned_home_gets_the_template_in_place_of_what_a_turn_left(tmp_path):
    sid = str(uuid.uuid4())
    ws = Workspace.for_session(tmp_path, sid).prepare()
    (ws.home / ".claude.json").write_text(json.dumps({"mcpServers": {"planted": {}}}))
    (ws.home / ".claude").mkdir()
    (ws.home / ".claude" / "settings.json").write_text("planted")

    ws.prepare(None, FIRST_RUN)

    laid = ws.home / ".claude.json"
    assert json.loads(laid.read_text()) == FIRST_RUN
    assert stat.S_IMODE(laid.stat().st_mode) == 0o600
    assert not (ws.home / ".claude" / "settings.json").exists()
