"""A read-only turn (an alert's triage) waits for a human before any
mutating verb, whatever the configured policy; other turns keep it."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_runner.settings import APPROVE_MUTATING, AUTONOMOUS, Settings
from agent_runner.turns import turn_policy
from events.commands import StartTurn
from events.types import new_id


@pytest.mark.parametrize("configured", [AUTONOMOUS, APPROVE_MUTATING])
def test_read_only_turns_always_approve_mutating(configured):
    settings = Settings(nats_url="nats://x", data_dir=Path("/tmp"), verb_policy=configured)
    command = StartTurn(by="triage", session_id=new_id(), turn_id=new_id(), prompt="p", model="sonnet", read_only=True)
    assert turn_policy(command, settings) == APPROVE_MUTATING
    assert turn_policy(StartTurn(**{**{f: getattr(command, f) for f in command.__struct_fields__}, "read_only": False}),
                       settings) == configured
