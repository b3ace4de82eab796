"""Web Push into the real PWA: the gateway's encrypted push reaches a push
service on this machine (tests/push/service.py: VAPID verified, payload
decrypted with the subscription's keys), which hands it to Chromium's
service worker through CDP (`ServiceWorker.deliverPushMessage`, what a
browser's push service connection does). The service worker shows the
notification with Approve/Deny; Approve posts the push's grant and the
agent's `cycle` runs once on the real sshd + fake qm host; the same action
again is refused.

What is not real here: headless Chromium has no push service of its own,
so `pushManager.subscribe` fails (the page says so) and the subscription
is posted with keys this test made (it then decrypts, as the browser would);
and no person taps the notification: the test calls the service worker's
own `notificationclick` handler with the notification the worker showed
(`registration.getNotifications()`), since CDP has no "click a
notification" command.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.cli.proc import wait_for
from tests.fakeapi import text, tool_use
from tests.pve_executor.test_verbs import EXPECTED_CALLS
from events.verbs import Verb
from tests.push.service import push_service

from .conftest import shot

pytestmark = pytest.mark.usefixtures("stack")


def events_of(stack, sid: str) -> list[dict]:
    return httpx.get(f"{stack.base}/api/session/{sid}/events", headers=stack.headers, timeout=10).json()["events"]


def test_approve_on_the_notification_runs_the_verb_once_and_a_replay_is_refused(stack, context_factory):
    if stack.pve is None:
        pytest.skip("no sshd here: the verb cannot run on the test host")
    stack.gateway_env["BREAKGLASS_PUSH_ALLOW_HTTP"] = "1"
    stack.restart_gateway()
    with push_service() as push:
        ctx = context_factory(service_workers="allow", permissions=["notifications"])
        page = ctx.new_page()
        cdp = ctx.new_cdp_session(page)
        registrations: dict[str, str] = {}
        cdp.on("ServiceWorker.workerRegistrationUpdated",
               lambda e: registrations.update({r["scopeURL"]: r["registrationId"] for r in e["registrations"]}))
        versions: list[dict] = []
        cdp.on("ServiceWorker.workerVersionUpdated", lambda e: versions.extend(e["versions"]))
        cdp.send("ServiceWorker.enable")
        page.goto("/")
        page.evaluate("navigator.serviceWorker.ready.then(() => true)")
        worker = wait_for(lambda: ctx.service_workers and ctx.service_workers[0], 20, "the service worker")
        registration = wait_for(lambda: registrations.get(f"{stack.base}/"), 20, "the registration id")

        # The page tried to subscribe (permission granted) and says why pushes are off here.
        page.get_by_role("button", name="Sessions").click()
        hint = page.locator("[data-push]")
        hint.wait_for()
        assert hint.get_attribute("data-push") == "unavailable"
        page.keyboard.press("Escape")

        push.application_key = httpx.get(f"{stack.base}/api/push/key", headers=stack.headers).json()["public_key"]
        browser = push.browser()
        answer = httpx.post(f"{stack.base}/api/push/subscription", json=browser.subscription(), headers=stack.headers)
        assert answer.status_code == 201, answer.text

        stack.api.script(tool_use("mcp__breakglass__pve", {"verb": "cycle"}), text("Cycled it."))
        sid = httpx.post(f"{stack.base}/api/session", headers=stack.headers).json()["session_id"]
        httpx.post(f"{stack.base}/api/session/{sid}/prompt", json={"prompt": "cycle the VM"}, headers=stack.headers)
        [got] = push.wait(1, timeout=60, kind="approval", session_id=sid)
        assert "grant" in got.payload and got.payload["verb"] == "cycle"

        # The page on that session: the approval waits; an escalation (what the
        # notifier records when nobody answers) shows where else it went.
        page.goto(f"/s/{sid}")
        card = page.locator(f"[data-approval='{got.payload['id']}']")
        card.wait_for()
        escalation = httpx.post(f"{stack.base}/api/session/{sid}/approval/{got.payload['id']}/escalation",
                                json={"channel": "ntfy at ntfy.example", "after_seconds": 120}, headers=stack.headers)
        assert escalation.status_code == 201, escalation.text
        card.locator("[data-escalated]").wait_for()
        assert card.locator("[data-escalated]").inner_text() == "Unanswered for 120 s: also sent to ntfy at ntfy.example"
        shot(page, "push-approval-escalated")

        cdp.send("ServiceWorker.deliverPushMessage",
                 {"origin": stack.base, "registrationId": registration, "data": json.dumps(got.payload)})
        shown = wait_for(lambda: worker.evaluate(
            """async () => (await self.registration.getNotifications()).map(n => (
                 {title: n.title, body: n.body, tag: n.tag, actions: n.actions.map(a => a.action), data: n.data}))"""
        ), 20, f"the notification (registrations {registrations}, workers {[w.url for w in ctx.service_workers]}, "
               f"versions {versions})")
        [note] = shown
        assert note["title"] == "breakglass: approve cycle?" and note["actions"] == ["approve", "deny"]
        assert note["tag"] == f"approval:{got.payload['id']}" and note["data"]["grant"] == got.payload["grant"]
        before = stack.pve.calls()  # the page's own `status` of the VM strip
        assert not any(c.startswith("stop") for c in before)  # nothing ran before the decision

        act = """async (action) => {
            const [n] = (await self.registration.getNotifications()).filter(n => n.data && n.data.grant);
            const data = n ? n.data : self.__lastDecided;
            self.__lastDecided = data;
            return self.onNotificationAction(n || {close() {}, data}, action);
        }"""
        first = worker.evaluate(act, "approve")
        assert first["status"] == 200, first
        wait_for(lambda: any(e["kind"] == "verb" and e["phase"] == "done" for e in events_of(stack, sid)), 60,
                 "the verb's result")
        verbs = [(e["phase"], e["by"]) for e in events_of(stack, sid) if e["kind"] == "verb"]
        assert ("approved", "operator") in verbs and verbs[-1][0] == "done"
        assert stack.pve.calls() == before + EXPECTED_CALLS[Verb.CYCLE]

        replay = worker.evaluate(act, "approve")
        assert replay["status"] == 409 and "already used" in replay["detail"], replay
        after = wait_for(lambda: worker.evaluate(
            "async () => (await self.registration.getNotifications()).map(n => [n.title, n.body])"), 10, "the answer")
        assert after == [["breakglass: cycle not decided", replay["detail"]]]
        time.sleep(1.0)
        assert stack.pve.calls() == before + EXPECTED_CALLS[Verb.CYCLE]  # once
        # The verb's result and the turn's end were pushed too; none carries transcript text.
        push.wait(1, timeout=30, kind="verb", session_id=sid)
        push.wait(1, timeout=30, kind="turn_end", session_id=sid)
        assert all("Cycled it" not in json.dumps(r.payload) for r in push.received)
        page.locator(f"[data-approval='{got.payload['id']}']").wait_for(state="detached")
        shot(page, "push-approved")
