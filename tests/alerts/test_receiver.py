"""The receiver's own rules, posted straight to the gateway the way
Alertmanager posts: one triage per group at a time (repeats and new alerts
of a group under triage start none), a VM's window, resolved alerts
recorded, and bad payloads or credentials refused with nothing done."""

from __future__ import annotations

import json

import nats
import pytest

from eventbus.topology import Topology
from tests.alerts.conftest import TOKEN, alert_sessions, events, kinds, post_webhook, wait_for
from tests.alerts.rig import ALERT_SECRET, RECEIVER, webhook
from tests.fakeapi import text, tool_use

ASK_RESET = tool_use("mcp__breakglass__pve", {"verb": "reset"})


def has(kind: str):  # type: ignore[no-untyped-def]
    return lambda seen: any(e["kind"] == kind for e in seen)


@pytest.fixture
def window() -> str:
    return "0"  # no per-VM window: only the group rule holds triages back here


async def test_repeats_and_new_alerts_of_a_group_under_triage_start_no_second_triage(stack, pve_executor, operator):
    stack.api.script(ASK_RESET, text("Checked.\n\nThe VM is out of memory."))
    first = await post_webhook(stack, webhook(("DevVmDown", "aaaa1111", "firing")))
    assert first.status_code == 200, first.text
    [sid] = first.json()["triages"]
    await wait_for(operator, sid, has("approval"))  # the triage holds, waiting for a human

    again = await post_webhook(stack, webhook(("DevVmDown", "aaaa1111", "firing")))
    joined = await post_webhook(stack, webhook(("DevVmDown", "aaaa1111", "firing"), ("DevVmDown", "bbbb2222", "firing")))
    assert again.json() | {"sessions": None} == {"alerts": 1, "recorded": 0, "ignored": 0, "sessions": None, "triages": []}
    assert (joined.json()["recorded"], joined.json()["triages"], joined.json()["sessions"]) == (1, [], [sid])

    seen = await events(operator, sid)
    approval = kinds(seen, "approval")[0]
    await operator.post(f"/api/session/{sid}/approval/{approval['approval_id']}", json={"approve": False})
    seen = await wait_for(operator, sid, has("diagnosis"))
    assert [e["fingerprint"] for e in kinds(seen, "alert")] == ["aaaa1111", "bbbb2222"]
    assert len(kinds(seen, "user")) == 1 and kinds(seen, "diagnosis")[0]["summary"] == "The VM is out of memory."

    # Resolved: recorded once, in the same session; still no new triage.
    resolved = webhook(("DevVmDown", "aaaa1111", "resolved"), ("DevVmDown", "bbbb2222", "firing"))
    for _ in range(2):
        answer = await post_webhook(stack, resolved)
        assert answer.json()["triages"] == [] and answer.json()["sessions"] == [sid]
    seen = await events(operator, sid)
    assert [(e["fingerprint"], e["status"]) for e in kinds(seen, "alert")] == [
        ("aaaa1111", "firing"), ("bbbb2222", "firing"), ("aaaa1111", "resolved")]

    # The triage is over, so the group is free: a newly firing alert of it triages again, in its session.
    stack.api.script(text("Second look.\n\nMemory again."))
    again = await post_webhook(stack, webhook(("DevVmDown", "bbbb2222", "firing"), ("DevVmDown", "dddd4444", "firing")))
    assert again.json()["triages"] == [sid]
    await wait_for(operator, sid, lambda s: len(kinds(s, "diagnosis")) == 2)

    # Every alert resolved: the group closes; a retried resolution stays in its session.
    closed = webhook(*(("DevVmDown", fp, "resolved") for fp in ("aaaa1111", "bbbb2222", "dddd4444")))
    for _ in range(2):
        answer = await post_webhook(stack, closed)
        assert answer.json()["sessions"] == [sid] and answer.json()["triages"] == []
    assert len(kinds(await events(operator, sid), "alert")) == 6
    unknown = await post_webhook(stack, webhook(("Gone", "9999", "resolved"), group_key="never-seen"))
    assert unknown.json() | {"alerts": 0} == {"alerts": 0, "recorded": 0, "ignored": 1, "sessions": [], "triages": []}

    # A new firing after the group closed: a new incident, in a new session, triaged.
    stack.api.script(text("Again.\n\nStill out of memory."))
    later = await post_webhook(stack, webhook(("DevVmDown", "cccc3333", "firing")))
    [next_sid] = later.json()["triages"]
    assert next_sid != sid
    seen = await wait_for(operator, next_sid, has("diagnosis"))
    assert [(e["fingerprint"], e["status"]) for e in kinds(seen, "alert")] == [("cccc3333", "firing")]


@pytest.mark.parametrize("window", ["600"])
async def test_a_vms_window_holds_back_the_triage_of_another_group(stack, pve_executor, operator, window):
    stack.api.script(text("First.\n\nDisk full."))
    first = await post_webhook(stack, webhook(("DiskFull", "dddd4444", "firing"), group_key='{}:{alertname="DiskFull"}'))
    other = await post_webhook(stack, webhook(("Load", "eeee5555", "firing"), group_key='{}:{alertname="Load"}'))
    [sid] = first.json()["triages"]
    assert other.json()["triages"] == [] and other.json()["sessions"] == [sid]
    seen = await wait_for(operator, sid, has("diagnosis"))
    assert {e["alertname"] for e in kinds(seen, "alert")} == {"DiskFull", "Load"} and len(kinds(seen, "user")) == 1


BAD_BODIES = {
    "not json": b"{not json",
    "version 3": webhook(("X", "ffff", "firing"), version="3"),
    "no alerts": json.dumps({"version": "4", "groupKey": "g", "status": "firing", "alerts": []}).encode(),
    "bad status": webhook(("X", "ffff", "firing")).replace(b'"status": "firing"', b'"status": "burning"'),
    "naive time": webhook(("X", "ffff", "firing")).replace(b'0001-01-01T00:00:00Z', b'2026-01-01T00:00:00'),
    "bad fingerprint": webhook(("X", "../etc", "firing")),
    "a list": b"[]",
}


async def _nothing_happened(stack, operator, nats_url) -> None:  # type: ignore[no-untyped-def]
    assert await alert_sessions(operator) == []
    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().stream_info(Topology().events_stream)
        assert info.state.messages == 0
    finally:
        await nc.close()


async def test_malformed_payloads_get_a_clear_4xx_and_nothing_else(stack, operator, nats_url):
    for name, body in BAD_BODIES.items():
        answer = await post_webhook(stack, body)
        assert answer.status_code == 422, (name, answer.text)
        assert answer.json()["detail"], name
    huge = await post_webhook(stack, b"{" + b" " * (1024 * 1024 + 1) + b"}")
    assert huge.status_code == 413
    await _nothing_happened(stack, operator, nats_url)


async def test_only_the_alert_secret_opens_the_receiver_and_it_opens_nothing_else(stack, operator, nats_url):
    body = webhook(("DevVmDown", "aaaa1111", "firing"))
    for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": "Bearer wrong-secret-0123456789"},
                    {"Authorization": f"Basic {ALERT_SECRET}"}, {"X-authentik-username": "mallory"},
                    {"Cookie": f"breakglass_token={TOKEN}"}):
        answer = await post_webhook(stack, body, headers)
        assert answer.status_code == 401, (headers, answer.text)
    # Unauthenticated and malformed: 401 first, nothing about the body leaks.
    assert (await post_webhook(stack, b"{not json", {})).status_code == 401
    alert_auth = {"Authorization": f"Bearer {ALERT_SECRET}"}
    for method, path in (("GET", "/api/sessions"), ("POST", "/api/session"), ("POST", "/api/pve/status"), ("GET", "/metrics")):
        answer = await operator.request(method, path, headers=alert_auth)
        assert answer.status_code == 401, (path, answer.status_code)
    assert RECEIVER.startswith("/api/")
    await _nothing_happened(stack, operator, nats_url)
