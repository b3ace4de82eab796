"""The two-person rule in two browsers (issue 19): alice (behind the auth
proxy) presses `cycle`; it waits in her session, she cannot approve it
herself; bob, in his own browser, opens the session and approves, and the
cycle runs once on the real sshd in front of the shipped forced command
over a fake `qm`."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.pwa.conftest import shot

SECRET = "edge-secret-for-two-person-pwa"


@pytest.fixture
def gateway_extra_env(tmp_path):
    secret = tmp_path / "edge-secret"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    return {"BREAKGLASS_TWO_PERSON_VERBS": "cycle", "BREAKGLASS_TRUST_EDGE_HEADER": "1",
            "BREAKGLASS_EDGE_SECRET_FILE": str(secret)}


def operator(context_factory, name: str):
    ctx = context_factory(token=False, extra_http_headers={"X-authentik-username": name,
                                                           "X-Breakglass-Edge-Secret": SECRET})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page, errors


def test_a_press_waits_for_a_second_operator_in_another_browser(stack, context_factory):
    if stack.pve is None:
        pytest.skip("no sshd: the cycle needs the real host (tests/pve_host)")
    alice, alice_errors = operator(context_factory, "alice")
    alice.goto("/")
    expect(alice.locator("[data-state=live]")).to_be_visible()
    alice.get_by_role("button", name="Power").click()
    power = alice.get_by_role("dialog", name="Devvm power")
    power.locator("[data-verb=cycle]").click()
    power.locator("[data-confirm=cycle]").click()
    expect(power.get_by_role("status").filter(has_text="another operator")).to_be_visible(timeout=20_000)
    power.get_by_role("button", name="Close").click()
    card = alice.locator("section.approval")
    expect(card).to_contain_text("alice wants to cycle the VM")
    card.get_by_role("button", name="Approve cycle").click()
    expect(alice.get_by_role("alert")).to_contain_text("you pressed `cycle` yourself")
    shot(alice, "22-two-person-own-press")
    assert not any(c.startswith("stop") for c in stack.pve.calls())

    sid = alice.evaluate("() => localStorage.getItem('breakglass.session_id')")
    bob, bob_errors = operator(context_factory, "bob")
    bob.goto(f"/#/session/{sid}")
    theirs = bob.locator("section.approval")
    expect(theirs).to_contain_text("alice wants to cycle the VM", timeout=20_000)
    theirs.get_by_role("button", name="Approve cycle").click()
    expect(theirs).to_have_count(0)
    deadline = time.monotonic() + 60
    while not any(c.startswith("start") for c in stack.pve.calls()) and time.monotonic() < deadline:
        time.sleep(0.2)
    calls = stack.pve.calls()
    assert any(c.startswith("stop") for c in calls) and any(c.startswith("start") for c in calls), calls
    expect(alice.locator(".verb").filter(has_text="cycle").first).to_be_visible(timeout=20_000)
    expect(alice.locator("section.approval")).to_have_count(0, timeout=20_000)
    shot(bob, "23-two-person-approved-by-bob")
    assert not alice_errors and not bob_errors
