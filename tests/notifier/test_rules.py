"""The notifier's pure parts: rules, request formats, backoff, settings."""

from __future__ import annotations

import base64
import email.header
import json
from datetime import datetime, timezone

import httpx
import pytest

from events import subjects
from events.config import ConfigError, Env
from events.kinds import (
    ApprovalRequested,
    DiagnosisReady,
    CliSessionBound,
    Outcome,
    ResultReported,
    TextSaid,
    ToolCalled,
    TurnCancelled,
    TurnEnded,
    TurnFailed,
    UsageReported,
    UserPrompted,
    VerbPhase,
    VerbProgressed,
)
from events.types import new_id
from events.verbs import Verb
from examples.notifier import deliver, rules  # importable: tests/notifier/rig.py puts the repo on sys.path
from examples.notifier.settings import Settings

SID = new_id()
SUBJECT = subjects.session_events(SID)
AUDIT = subjects.audit("verb")
BASE = "https://breakglass.example/"


def note(event, subject=SUBJECT, **kw):  # type: ignore[no-untyped-def]
    return rules.notification_for(event, subject, link_base=BASE, **kw)


def verb(v: Verb, phase: VerbPhase, session_id: str | None = SID, **kw) -> VerbProgressed:  # type: ignore[no-untyped-def]
    return VerbProgressed(session_id=session_id, by="alice", verb=v, phase=phase, **kw)


# --- rules -------------------------------------------------------------------------------


def test_a_diagnosis_tells_the_alert_and_the_first_line_with_a_link():
    ready = DiagnosisReady(session_id=SID, by="triage", alertname="DevVmDown", outcome=Outcome.OK,
                           summary="\nThe root filesystem is full.\nEvidence: df shows 100%.")
    got = note(ready)
    assert got is not None and got.kind == "diagnosis" and got.priority == rules.HIGH
    assert got.message == "DevVmDown — diagnosis ready: The root filesystem is full."
    assert got.link == f"{BASE}#/session/{SID}"


def test_a_sessions_first_prompt_notifies_and_later_prompts_do_not():
    prompt = UserPrompted(session_id=SID, by="alice", text="the VM is  stuck\nagain")
    first = note(prompt, opens_session=True)
    assert first is not None
    assert first.kind == "user" and first.priority == rules.DEFAULT
    assert first.title == "breakglass: session started"
    assert "alice" in first.message and "the VM is stuck again" in first.message
    assert first.session_id == SID and first.link == f"{BASE}#/session/{SID}"
    assert note(prompt, opens_session=False) is None


@pytest.mark.parametrize("v", [Verb.RESET, Verb.STOP, Verb.START, Verb.CYCLE])
def test_a_mutating_verb_that_ran_notifies_with_its_exit_code(v):
    ok = note(verb(v, VerbPhase.DONE, exit_code=0))
    assert ok is not None and ok.priority == rules.DEFAULT and ok.kind == "verb"
    assert f"VM {v.value} done" in ok.title and "exit 0" in ok.message
    failed = note(verb(v, VerbPhase.DONE, exit_code=3, stderr="qm: timeout"))
    assert failed is not None and failed.priority == rules.HIGH
    assert "failed" in failed.title and "exit 3" in failed.message and "qm: timeout" in failed.message
    denied = note(verb(v, VerbPhase.DENIED))
    assert denied is not None and "denied" in denied.title


def test_a_refused_verb_says_so():
    refused = note(verb(Verb.RESET, VerbPhase.DONE, exit_code=75, rejected=True, stderr="already running"))
    assert refused is not None and "refused" in refused.title and "already running" in refused.message


@pytest.mark.parametrize("phase", [VerbPhase.REQUESTED, VerbPhase.APPROVED, VerbPhase.RUNNING])
def test_other_verb_phases_do_not_notify(phase):
    assert note(verb(Verb.CYCLE, phase)) is None


@pytest.mark.parametrize("v", [Verb.STATUS, Verb.FORENSICS])
def test_read_only_verbs_do_not_notify(v):
    assert note(verb(v, VerbPhase.DONE, exit_code=0)) is None


def test_a_verb_is_notified_once_from_its_session_and_from_audit_only_outside_sessions():
    in_session = verb(Verb.RESET, VerbPhase.DONE, exit_code=0)
    assert note(in_session, AUDIT) is None  # the session's copy notifies
    outside = verb(Verb.RESET, VerbPhase.DONE, session_id=None, exit_code=0)
    n = note(outside, AUDIT)
    assert n is not None and n.session_id is None and n.link is None and "outside any session" in n.message


def test_an_approval_request_notifies_at_max_priority():
    n = note(ApprovalRequested(session_id=SID, by="agent", approval_id="a1", verb=Verb.CYCLE, reason="I/O stall"))
    assert n is not None and n.kind == "approval" and n.priority == rules.MAX
    assert "cycle" in n.title and "I/O stall" in n.message


@pytest.mark.parametrize(
    ("outcome", "priority"),
    [
        (Outcome.ERROR, rules.HIGH),
        (Outcome.TIMEOUT, rules.HIGH),
        (Outcome.INTERRUPTED, rules.HIGH),
        (Outcome.OK, rules.LOW),
        (Outcome.CANCELLED, rules.LOW),
        (None, rules.LOW),
    ],
)
def test_a_turn_end_notifies_failures_high_and_the_rest_low(outcome, priority):
    n = note(TurnEnded(session_id=SID, by="agent-runner", outcome=outcome))
    assert n is not None and n.kind == "turn_end" and n.priority == priority
    if outcome is not None and priority == rules.HIGH:
        assert outcome.value in n.title


def test_an_error_notifies_high():
    n = note(TurnFailed(session_id=SID, by="agent-runner", error="claude exited with 1"))
    assert n is not None and n.kind == "error" and n.priority == rules.HIGH and "claude exited" in n.message


@pytest.mark.parametrize(
    "event",
    [
        TextSaid(session_id=SID, by="agent", text="hello"),
        ToolCalled(session_id=SID, by="agent", name="Bash", input={"command": "df -h"}),
        ResultReported(session_id=SID, by="agent", is_error=False),
        CliSessionBound(session_id=SID, by="agent", cli_session_id="x"),
        UsageReported(session_id=SID, by="agent"),
        TurnCancelled(session_id=SID, by="alice"),
    ],
)
def test_other_kinds_do_not_notify(event):
    assert note(event) is None


@pytest.mark.parametrize(
    ("base", "link"),
    [
        ("https://breakglass.example/", f"https://breakglass.example/#/session/{SID}"),
        ("https://breakglass.example", f"https://breakglass.example/#/session/{SID}"),
        ("https://host/console/", f"https://host/console/#/session/{SID}"),
        ("https://host/console/#/old", f"https://host/console/#/session/{SID}"),
        (None, None),
    ],
)
def test_session_links(base, link):
    assert rules.session_link(base, SID) == link
    assert rules.session_link(base, None) is None


def test_clip_keeps_one_short_line():
    assert rules.clip("a\n\n b  c", 10) == "a b c"
    assert rules.clip("x" * 50, 10) == "x" * 9 + "…"


# --- request formats ---------------------------------------------------------------------


def sample() -> rules.Notification:
    return rules.Notification(
        kind="approval", title="breakglass: approve cycle?", message="Approve it — now", priority=5,
        tags=("question",), session_id=SID, link=f"{BASE}#/session/{SID}",
    )


def test_the_json_request_carries_the_notification_and_the_event():
    event = {"kind": "approval", "id": 7, "session_id": SID}
    r = deliver.json_request(sample(), event)
    assert r.headers["Content-Type"] == "application/json"
    assert json.loads(r.content) == {
        "title": "breakglass: approve cycle?", "message": "Approve it — now", "priority": 5, "session_id": SID,
        "kind": "approval", "link": f"{BASE}#/session/{SID}", "event": event,
    }


def test_the_ntfy_request_uses_ntfys_publish_headers():
    r = deliver.ntfy_request(sample())
    assert r.headers["Title"] == "breakglass: approve cycle?"
    assert r.headers["Priority"] == "5"
    assert r.headers["Tags"] == "question"
    assert r.headers["Click"] == f"{BASE}#/session/{SID}"
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.content.decode("utf-8") == "Approve it — now"


def test_ntfy_headers_are_omitted_when_empty():
    bare = rules.Notification(kind="error", title="t", message="m", priority=4)
    r = deliver.ntfy_request(bare)
    assert "Click" not in r.headers and "Tags" not in r.headers


def test_non_ascii_header_values_are_rfc2047_encoded_words():
    value = deliver.header_value("Müller: VM\r\nX-Injected: 1")
    assert value.isascii() and "\n" not in value and "\r" not in value
    assert value.startswith("=?UTF-8?B?") and value.endswith("?=")
    [(raw, charset)] = email.header.decode_header(value)
    assert raw.decode(charset) == "Müller: VM X-Injected: 1"
    assert base64.b64decode(value[10:-2]).decode() == "Müller: VM X-Injected: 1"
    assert deliver.header_value("plain\ntext") == "plain text"


# --- backoff and replies -----------------------------------------------------------------


def test_backoff_doubles_from_the_base_up_to_the_cap():
    assert [deliver.backoff(n, 1.0, 60.0) for n in range(1, 10)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert deliver.backoff(10_000, 1.0, 60.0) == 60.0
    assert deliver.backoff(0, 0.5, 60.0) == 0.5


def test_retry_after_is_read_as_seconds_or_a_date():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert deliver.parse_retry_after("30") == 30.0
    assert deliver.parse_retry_after("Thu, 01 Jan 2026 12:00:10 GMT", now) == 10.0
    assert deliver.parse_retry_after("soon") is None
    assert deliver.parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("status", "delivery"),
    [
        (200, deliver.Delivery.DELIVERED),
        (204, deliver.Delivery.DELIVERED),
        (500, deliver.Delivery.RETRY),
        (503, deliver.Delivery.RETRY),
        (429, deliver.Delivery.RETRY),
        (408, deliver.Delivery.RETRY),
        (400, deliver.Delivery.REJECTED),
        (401, deliver.Delivery.REJECTED),
        (404, deliver.Delivery.REJECTED),
        (301, deliver.Delivery.REJECTED),
    ],
)
def test_replies_are_classified(status, delivery):
    assert deliver.classify(httpx.Response(status)).delivery is delivery


# --- settings ----------------------------------------------------------------------------

GOOD = {"BREAKGLASS_NOTIFY_URL": "http://127.0.0.1:9/topic", "BREAKGLASS_NATS_URL": "nats://127.0.0.1:4222"}


def test_settings_defaults():
    s = Settings.from_env(Env(GOOD))
    assert (s.format, s.deliver, s.state_file, s.link_base, s.token) == (
        "json", "new", "notifier-state.json", None, None)
    assert (s.retry_base, s.retry_max, s.min_priority) == (1.0, 60.0, 1)
    assert s.stream == "BREAKGLASS_EVENTS"


def test_settings_read_every_variable():
    s = Settings.from_env(Env({
        **GOOD,
        "BREAKGLASS_NOTIFY_FORMAT": "ntfy",
        "BREAKGLASS_NOTIFY_LINK_BASE": "https://breakglass.example/",
        "BREAKGLASS_NOTIFY_TOKEN": "tk_secret",
        "BREAKGLASS_NOTIFY_DELIVER": "all",
        "BREAKGLASS_NOTIFY_STATE_FILE": "/var/lib/notifier/ntfy.json",
        "BREAKGLASS_NOTIFY_TIMEOUT_SECONDS": "5",
        "BREAKGLASS_NOTIFY_RETRY_SECONDS": "2",
        "BREAKGLASS_NOTIFY_RETRY_MAX_SECONDS": "30",
        "BREAKGLASS_NOTIFY_MIN_PRIORITY": "3",
        "BREAKGLASS_NOTIFY_CONCURRENCY": "4",
    }))
    assert (s.format, s.link_base, s.token, s.deliver, s.state_file) == (
        "ntfy", "https://breakglass.example/", "tk_secret", "all", "/var/lib/notifier/ntfy.json")
    assert (s.timeout, s.retry_base, s.retry_max, s.min_priority, s.concurrency) == (5.0, 2.0, 30.0, 3, 4)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"BREAKGLASS_NOTIFY_URL": ""}, "BREAKGLASS_NOTIFY_URL"),
        ({"BREAKGLASS_NOTIFY_URL": "ftp://x/"}, "BREAKGLASS_NOTIFY_URL"),
        ({"BREAKGLASS_NOTIFY_URL": "ntfy.sh/topic"}, "BREAKGLASS_NOTIFY_URL"),
        ({"BREAKGLASS_NOTIFY_FORMAT": "xml"}, "BREAKGLASS_NOTIFY_FORMAT"),
        ({"BREAKGLASS_NOTIFY_LINK_BASE": "breakglass.example"}, "BREAKGLASS_NOTIFY_LINK_BASE"),
        ({"BREAKGLASS_NOTIFY_DELIVER": "last"}, "BREAKGLASS_NOTIFY_DELIVER"),
        ({"BREAKGLASS_NOTIFY_MIN_PRIORITY": "9"}, "BREAKGLASS_NOTIFY_MIN_PRIORITY"),
        ({"BREAKGLASS_NOTIFY_RETRY_SECONDS": "5", "BREAKGLASS_NOTIFY_RETRY_MAX_SECONDS": "1"},
         "BREAKGLASS_NOTIFY_RETRY_MAX_SECONDS"),
        ({"BREAKGLASS_NATS_URL": ""}, "BREAKGLASS_NATS_URL"),
    ],
)
def test_bad_settings_name_the_variable(env, named):
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(Env({**GOOD, **env}))
