"""A REAL Alertmanager delivers alerts to the gateway, and the triage runs:
the session opens with the alert, `status` and `forensics` run on the
(test) Proxmox host, the real CLI's read-only turn runs, a mutating verb
the agent asks for waits for a human even under `autonomous`, and the
diagnosis ends the triage; the operator continues the same session; a
resolved alert is recorded in it; a storm makes one triage."""

from __future__ import annotations

import asyncio

from tests.alerts.conftest import (
    LINK_BASE, alert_sessions, diagnosis_notification, events, kinds, wait_for, wait_for_session,
)
from tests.alerts.rig import alert, alertmanager
from tests.fakeapi import text, tool_use
from tests.pve_executor.test_verbs import EXPECTED_CALLS
from events.verbs import Verb

CLOSING = "The root filesystem is full: /var/log filled it.\nForensics shows 100% use on /; free space, then reset if the guest stays hung."


def has_kind(kind: str):  # type: ignore[no-untyped-def]
    return lambda seen: any(e["kind"] == kind for e in seen)


async def test_an_alert_through_alertmanager_is_triaged_read_only_and_the_operator_continues(
    stack, pve_executor, pve, operator, notifier, tmp_path,
):
    # The scripted agent asks for a mutating verb first, then concludes.
    stack.api.script(tool_use("mcp__breakglass__pve", {"verb": "reset"}), text("Looked around.\n\n" + CLOSING))
    with alertmanager(tmp_path / "am", stack.base, stack.secret_file) as am:
        am.post(alert("DevVmDown", instance="devvm:9100"))
        sid = await wait_for_session(operator)
        seen = await wait_for(operator, sid, has_kind("approval"))

        first = seen[0]
        assert (first["kind"], first["by"], first["alertname"], first["status"]) == ("alert", "alertmanager", "DevVmDown", "firing")
        assert first["labels"]["instance"] == "devvm:9100" and first["annotations"]["summary"] == "DevVmDown on the dev VM"
        assert first["vm"] == "devvm"
        done = {(e["verb"], e["by"]) for e in kinds(seen, "verb") if e["phase"] == "done"}
        assert done == {("status", "triage"), ("forensics", "triage")}
        [prompt] = kinds(seen, "user")
        assert prompt["by"] == "triage" and "DevVmDown" in prompt["text"]
        # The agent asked for reset; under `autonomous` it would run at once.
        # A triage turn waits for a human instead: nothing mutating ran.
        [approval] = kinds(seen, "approval")
        assert approval["verb"] == "reset"
        await asyncio.sleep(1.0)
        assert sorted(pve.calls()) == sorted(EXPECTED_CALLS[Verb.STATUS] + EXPECTED_CALLS[Verb.FORENSICS])

        answer = await operator.post(f"/api/session/{sid}/approval/{approval['approval_id']}", json={"approve": False})
        assert answer.status_code == 200 and answer.json() == {"accepted": True}
        seen = await wait_for(operator, sid, has_kind("diagnosis"))
        [diagnosis] = kinds(seen, "diagnosis")
        assert diagnosis["by"] == "triage" and diagnosis["alertname"] == "DevVmDown"
        assert diagnosis["summary"] == CLOSING and diagnosis["outcome"] == "ok"
        assert [e["phase"] for e in kinds(seen, "verb") if e["verb"] == "reset"] == ["requested", "denied"]
        assert "reset" not in " ".join(pve.calls())

        # The operator is told, with a link to the session.
        told = await diagnosis_notification(notifier)
        assert told["message"] == "DevVmDown — diagnosis ready: The root filesystem is full: /var/log filled it."
        assert told["link"] == f"{LINK_BASE}#/session/{sid}"

        # The operator picks the same session up.
        stack.api.script(text("Continuing."))
        started = await operator.post(f"/api/session/{sid}/prompt", json={"prompt": "go on"})
        assert started.status_code == 202, started.text
        assert [s["title"] for s in await alert_sessions(operator)] == ["alert: DevVmDown on devvm"]

        # Resolved: recorded in the same session, no new triage.
        am.post(alert("DevVmDown", resolved=True, instance="devvm:9100"))
        seen = await wait_for(operator, sid, lambda s: any(e["kind"] == "alert" and e["status"] == "resolved" for e in s))
    assert len(kinds(seen, "diagnosis")) == 1 and len(await alert_sessions(operator)) == 1


async def test_a_storm_of_100_alerts_makes_one_session_and_one_triage(stack, pve_executor, pve, operator, tmp_path):
    stack.api.script(text("Too many alerts at once.\n\nOne cause: the VM is down."))
    with alertmanager(tmp_path / "am", stack.base, stack.secret_file) as am:
        am.post(*(alert(f"Storm{i:03d}") for i in range(100)))
        sid = await wait_for_session(operator)
        seen = await wait_for(operator, sid, lambda s: len(kinds(s, "alert")) == 100 and has_kind("diagnosis")(s), timeout=90)
        await asyncio.sleep(2.0)  # late groups would have triaged by now
        seen = await events(operator, sid)
    assert len(await alert_sessions(operator)) == 1
    assert len(kinds(seen, "user")) == 1 and len(kinds(seen, "diagnosis")) == 1
    assert len({e["alertname"] for e in kinds(seen, "alert")}) == 100
    assert pve.calls().count(EXPECTED_CALLS[Verb.STATUS][0]) == 1 + EXPECTED_CALLS[Verb.FORENSICS].count(EXPECTED_CALLS[Verb.STATUS][0])
