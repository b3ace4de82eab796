"""pve-executor's verb outcomes, and labels that stay one of the six verbs."""

from __future__ import annotations

import time

import pytest
from prometheus_client import REGISTRY

from events.commands import VerbResult
from events.verbs import Verb
from pve_executor import metrics
from pve_executor.ssh import EX_TIMEOUT


@pytest.mark.parametrize(("result", "outcome"), [
    (VerbResult(verb=Verb.STATUS, exit_code=0), "ok"),
    (VerbResult(verb=Verb.RESET, exit_code=2), "failed"),
    (VerbResult(verb=Verb.CYCLE, exit_code=EX_TIMEOUT), "timeout"),
    (VerbResult(verb=Verb.STOP, exit_code=75, rejected=True), "rejected"),
    (VerbResult(verb=Verb.START, exit_code=0, rejected=True), "rejected"),
])
def test_outcomes(result, outcome):
    assert metrics.outcome_of(result) == outcome


def test_every_verb_and_outcome_is_exported_from_the_start_and_free_text_is_invalid():
    for verb in Verb:
        for outcome in metrics.OUTCOMES:
            assert REGISTRY.get_sample_value("breakglass_verbs_total", {"verb": verb.value, "outcome": outcome}) is not None
    metrics.answered("reset; rm -rf /", "rejected", time.monotonic())
    assert REGISTRY.get_sample_value("breakglass_verbs_total", {"verb": "invalid", "outcome": "rejected"}) >= 1
    assert REGISTRY.get_sample_value("breakglass_verbs_total", {"verb": "reset; rm -rf /", "outcome": "rejected"}) is None
