"""The VM sheet and the agent's approval requests, in a real browser, with
pve-executor behind a real sshd running the shipped forced command over a
fake `qm` (VM 102)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.fakeapi import text, tool_use
from tests.pwa.conftest import axe, open_app, shot

TOOL = "mcp__breakglass__pve"


def test_power_sheet_status_at_a_glance_and_a_confirm_gated_cycle(stack, page):
    open_app(page)
    page.get_by_role("button", name="Power").click()
    sheet = page.get_by_role("dialog", name="Devvm power")
    expect(sheet).to_be_visible()
    configured = stack.pve is not None
    # status runs by itself when the sheet opens
    if not configured:
        pytest.skip("no sshd: the unconfigured sheet is tests/pwa/test_pve_unconfigured.py")
    expect(sheet.locator(".glance .now")).to_contain_text("running", timeout=30_000)
    expect(sheet.get_by_text("a fresh QEMU process", exact=False).first).to_be_visible()
    shot(page, "08-power-sheet")
    assert axe(page, "power-sheet") == []

    # a mutating verb asks first; Cancel runs nothing
    sheet.locator("[data-verb=reset]").click()
    expect(sheet.get_by_role("heading", name="Reset the VM?")).to_be_visible()
    sheet.get_by_role("button", name="Cancel").click()
    if configured:
        assert not any(c.startswith("reset") for c in stack.pve.calls())

    sheet.locator("[data-verb=cycle]").click()
    expect(sheet.get_by_role("heading", name="Cycle the VM?")).to_be_visible()
    shot(page, "09-confirm-cycle")
    assert axe(page, "confirm-cycle") == []
    sheet.locator("[data-confirm=cycle]").click()
    result = sheet.get_by_role("region", name="Last verb output")
    expect(result.locator("h3")).to_contain_text("cycle", timeout=60_000)
    if configured:
        expect(result.locator("h3")).to_contain_text("ok")
        calls = stack.pve.calls()
        assert any(c.startswith("stop") for c in calls) and any(c.startswith("start") for c in calls), calls
    else:
        expect(result.locator("h3")).to_contain_text("refused")
    shot(page, "10-cycle-result")
    sheet.get_by_role("button", name="Close").click()
    # the verb was recorded in the session: it shows in the transcript too
    expect(page.locator(".verb").filter(has_text="cycle").first).to_be_visible(timeout=20_000)


def test_the_agents_approval_request_is_a_prominent_card(stack, page):
    stack.api.script(tool_use(TOOL, {"verb": "cycle"}), text("Cycled; the VM is back."))
    open_app(page)
    page.get_by_label("Message to the agent").fill("the vm is wedged, fix it")
    page.get_by_role("button", name="Send").click()
    card = page.locator("section.approval")
    expect(card).to_be_visible(timeout=40_000)
    expect(card).to_contain_text("cycle")
    shot(page, "11-approval-card")
    assert axe(page, "approval-card") == []
    card.get_by_role("button", name="Approve cycle").click()
    expect(card).to_have_count(0)
    turn = page.locator("article.turn")
    expect(turn.locator(".foot")).to_contain_text("Done", timeout=60_000)
    expect(turn).to_contain_text("approved")
    expect(turn.locator(".verb")).to_contain_text("cycle")
    shot(page, "12-approved-and-done")
