"""Step-up with a real browser passkey (issue 19): Chromium's virtual
authenticator (CDP `WebAuthn.*`, user verification on) registers a passkey
from Sessions → Security, then a confirmed `cycle` in the power sheet asks
the passkey (428 → navigator.credentials.get → the same press again) and
runs on the real sshd in front of the shipped forced command over a fake
`qm`. Assertions made in that browser for another request, replayed, or
after their challenge expired are refused with the reason."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.pwa.conftest import shot

#: Runs in the page: ask the gateway, let the authenticator sign, return the
#: assertion as JSON (the same conversion the PWA's lib/passkey.js does).
ASSERT_JS = """async ([path, body]) => {
  const b64 = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
  const raw = (t) => Uint8Array.from(atob(t.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((t.length + 3) % 4)), (c) => c.charCodeAt(0));
  const first = await fetch(path, {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
  const asked = await first.json();
  if (first.status !== 428) return {status: first.status, asked};
  const o = asked.step_up.public_key;
  const cred = await navigator.credentials.get({publicKey: {...o, challenge: raw(o.challenge),
    allowCredentials: o.allowCredentials.map((c) => ({...c, id: raw(c.id)}))}});
  return {status: 428, asked, proof: {id: cred.id, rawId: b64(cred.rawId), type: cred.type, clientExtensionResults: {},
    response: {clientDataJSON: b64(cred.response.clientDataJSON), authenticatorData: b64(cred.response.authenticatorData),
               signature: b64(cred.response.signature), userHandle: null}}};
}"""
SEND_JS = """async ([path, body]) => {
  const r = await fetch(path, {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
  return {status: r.status, body: await r.json()};
}"""


@pytest.fixture
def gateway_extra_env():
    return {"BREAKGLASS_STEP_UP": "1", "BREAKGLASS_STEP_UP_SECONDS": "5"}


def virtual_authenticator(page) -> tuple[object, str]:
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    made = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})
    return cdp, made["authenticatorId"]


def test_register_then_a_stepped_up_cycle_runs_and_bad_assertions_are_refused(stack, page):
    if stack.pve is None:
        pytest.skip("no sshd: the cycle needs the real host (tests/pve_host)")
    # WebAuthn wants a host name, not an IP: the same gateway as localhost
    origin = f"http://localhost:{urlsplit(stack.base).port}"
    cdp, authenticator = virtual_authenticator(page)
    page.goto(origin + "/")
    expect(page.locator("[data-state=live]")).to_be_visible()

    page.get_by_role("button", name="Sessions").click()
    sheet = page.get_by_role("dialog", name="Sessions")
    security = sheet.get_by_role("region", name="Security")
    expect(security).to_contain_text("No passkey registered for operator")
    security.get_by_role("button", name="Register a passkey").click()
    expect(security).to_contain_text("Passkey registered.")
    expect(security).to_contain_text("1 passkey registered for operator. Mutating verbs ask for it.")
    [credential] = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    shot(page, "19-passkey-registered")
    sheet.get_by_role("button", name="Close").click()

    page.get_by_role("button", name="Power").click()
    power = page.get_by_role("dialog", name="Devvm power")
    expect(power.locator(".glance .now")).to_contain_text("running", timeout=30_000)
    power.locator("[data-verb=cycle]").click()
    power.locator("[data-confirm=cycle]").click()
    result = power.get_by_role("region", name="Last verb output")
    expect(result.locator("h3")).to_contain_text("cycle", timeout=60_000)
    expect(result.locator("h3")).to_contain_text("ok")
    calls = stack.pve.calls()
    assert any(c.startswith("stop") for c in calls) and any(c.startswith("start") for c in calls), calls
    used = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert used[0]["signCount"] > credential["signCount"]  # the passkey signed the press
    shot(page, "20-stepped-up-cycle")

    # the same browser's passkey, used where it was not asked for
    sid = page.evaluate("() => localStorage.getItem('breakglass.session_id')")
    made = page.evaluate(ASSERT_JS, ["/api/pve/cycle", {"session_id": sid}])
    assert made["status"] == 428, made
    other = page.evaluate(SEND_JS, ["/api/pve/stop", {"session_id": sid, "step_up": made["proof"]}])
    assert other["status"] == 403 and "not for pressing `stop`" in other["body"]["detail"], other
    ran = page.evaluate(SEND_JS, ["/api/pve/cycle", {"session_id": sid, "step_up": made["proof"]}])
    assert ran["status"] == 200, ran
    replayed = page.evaluate(SEND_JS, ["/api/pve/cycle", {"session_id": sid, "step_up": made["proof"]}])
    assert replayed["status"] == 403 and "already used" in replayed["body"]["detail"], replayed
    stale = page.evaluate(ASSERT_JS, ["/api/pve/reset", {}])
    time.sleep(5.3)
    late = page.evaluate(SEND_JS, ["/api/pve/reset", {"step_up": stale["proof"]}])
    assert late["status"] == 403 and "expired" in late["body"]["detail"], late
    assert not any(c.startswith("reset") for c in stack.pve.calls())
