"""An alert's triage session in the PWA: the notification's link opens it
live, the alert and the diagnosis render as cards, and the operator
continues the same session."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

from tests.alerts.rig import RECEIVER, webhook
from tests.fakeapi import text
from tests.pwa.conftest import axe, shot

SECRET = "pwa-alert-secret-0123456789"


def test_the_link_opens_the_triage_session_live_and_the_operator_continues(stack, page, tmp_path):
    secret = tmp_path / "alert-token"
    secret.write_text(SECRET)
    stack.gateway_env.update(BREAKGLASS_ALERT_TOKEN_FILE=str(secret))
    stack.restart_gateway()
    stack.api.script(text("Looked.\n\nThe root filesystem is full.\nFree /var/log, then reset."), text("On it."))
    answer = httpx.post(stack.base + RECEIVER, content=webhook(("DevVmDown", "aaaa1111", "firing")),
                        headers={"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 200, answer.text
    [sid] = answer.json()["triages"]

    page.goto(f"/#/session/{sid}")
    alert = page.get_by_role("region", name="alert DevVmDown firing")
    expect(alert).to_contain_text("DevVmDown fired")
    diagnosis = page.get_by_role("region", name="diagnosis of DevVmDown")
    expect(diagnosis).to_contain_text("The root filesystem is full.", timeout=60_000)
    expect(page.locator("article.turn .foot")).to_contain_text("Done")
    assert page.evaluate("() => localStorage.getItem('breakglass.session_id')") == sid
    shot(page, "20-alert-triage")
    assert axe(page, "alert-triage") == []

    page.get_by_label("Message to the agent").fill("go on")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("article.turn").last).to_contain_text("On it.", timeout=30_000)
