"""Finding 6 of issue 22: with pve-executor not configured (no Proxmox host),
the PWA says so up front and the power verbs are disabled with the reason;
looking at the VM never adds a card to the transcript. The executor's own
answer to an off-the-record `status` (exit 78, EX_CONFIG) is the signal."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.pwa.conftest import axe, shot


@pytest.fixture(scope="module")
def sshd_server():
    """No Proxmox host: the executor starts unconfigured."""
    return None


def test_6_power_controls_say_proxmox_is_not_configured_before_anything_is_pressed(stack, page):
    page.goto("/")
    expect(page.locator("[data-state=live]")).to_be_visible()
    strip = page.get_by_role("status", name="VM state")
    expect(strip).to_have_attribute("data-vm", "unconfigured", timeout=30_000)
    expect(strip).to_contain_text("Proxmox not configured")
    for _ in range(2):  # each opening of the sheet used to add a "status refused" card
        page.get_by_role("button", name="Power").click()
        sheet = page.get_by_role("dialog", name="Devvm power")
        expect(sheet.locator(".glance .now")).to_contain_text("Proxmox not configured")
        expect(sheet.locator("#why-disabled")).to_contain_text("not configured")
        for verb in ("cycle", "reset", "stop", "start", "forensics"):
            expect(sheet.locator(f"[data-verb={verb}]")).to_be_disabled()
        sheet.get_by_role("button", name="Close").click()
    # read-only and power are separate groups, power in red
    page.get_by_role("button", name="Power").click()
    sheet = page.get_by_role("dialog", name="Devvm power")
    expect(sheet.get_by_role("region", name="Inspect read-only")).to_contain_text("forensics")
    power = sheet.get_by_role("region", name="Power affects the running VM")
    expect(power.locator("[data-verb=cycle]")).to_have_class(re.compile(r"\bdanger\b"))
    shot(page, "37-pve-unconfigured")
    assert axe(page, "pve-unconfigured") == []
    sheet.get_by_role("button", name="Close").click()
    page.wait_for_timeout(500)
    expect(page.locator(".verb")).to_have_count(0)
