"""agent-runner's label values come from small fixed sets, whatever happens."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from agent_runner import metrics


def count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(("code", "label"), [(0, "0"), (1, "1"), (-9, "-9"), (255, "255"), (70000, "other"),
                                             (-1000, "other")])
def test_cli_exit_codes_are_bounded(code, label):
    before = count("breakglass_cli_exits_total", code=label)
    metrics.cli_exited(code)
    assert count("breakglass_cli_exits_total", code=label) == before + 1


@pytest.mark.parametrize(("approved", "by", "why", "outcome"), [
    (True, "alice", "", "approved"),
    (False, "alice", "", "denied"),
    (False, "timeout", "no answer within 300 s: denied", "timed_out"),
    (False, "agent-runner", "the turn ended before the operator answered", "turn_ended"),
])
def test_approval_outcomes_never_name_who_answered(approved, by, why, outcome):
    before = count("breakglass_approvals_total", outcome=outcome)
    metrics.approval_decided(approved, by, why)
    assert count("breakglass_approvals_total", outcome=outcome) == before + 1
    assert outcome in metrics.APPROVAL_OUTCOMES
