"""Subject names: stable strings, and ids checked before they become part of one."""

from __future__ import annotations

import pytest

from events import subjects

SID = "6cfaa6bb-d10d-4842-8572-2d78d3eeee8c"


def test_subject_names_are_the_documented_contract():
    assert subjects.session_events(SID) == f"breakglass.events.session.{SID}"
    assert subjects.live(SID) == f"breakglass.live.{SID}"
    assert subjects.cancel(SID) == f"breakglass.ctl.cancel.{SID}"
    assert subjects.approval(SID) == f"breakglass.ctl.approval.{SID}"
    assert subjects.verb_reply(SID) == f"breakglass.reply.verb.{SID}"
    assert subjects.audit("verb") == "breakglass.events.audit.verb"
    assert subjects.PROMPT == "breakglass.cmd.prompt"
    assert subjects.VERB == "breakglass.cmd.verb.operator"
    assert subjects.AGENT_VERB == "breakglass.cmd.verb.agent"


@pytest.mark.parametrize(
    "bad",
    ["", "*", ">", "a.b", "../x", SID.upper(), SID + ".x", SID + " ", "6cfaa6bb-d10d-4842-8572-2d78d3eeee8", "x" * 36],
)
@pytest.mark.parametrize("make", [subjects.session_events, subjects.live, subjects.cancel, subjects.approval, subjects.verb_reply])
def test_ids_that_could_escape_a_subject_are_refused(make, bad):
    with pytest.raises(ValueError):
        make(bad)


def test_unknown_audit_names_are_refused():
    with pytest.raises(ValueError):
        subjects.audit("anything")


def test_session_of_reads_the_id_back():
    assert subjects.session_of(subjects.session_events(SID)) == SID
    assert subjects.session_of(subjects.PROMPT) is None


def test_every_session_subject_is_inside_the_events_stream_filter():
    assert subjects.session_events(SID).startswith(subjects.EVENTS_ALL[:-1])
    assert subjects.audit("verb").startswith(subjects.EVENTS_ALL[:-1])
    assert subjects.PROMPT.startswith(subjects.COMMANDS_ALL[:-1])
    assert not subjects.live(SID).startswith(subjects.EVENTS_ALL[:-1])  # live frames are never stored
