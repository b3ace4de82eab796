"""Several VMs in a real browser: the VM sheet chooses among them (the
console moves to a session bound to the chosen VM, and its verbs reach that
VM only, through pve-executor, a real sshd and the shipped forced command
with `VMIDS=102 103` over the fake `qm`); and the health view shows the
doctor's checks the gateway can run, one verdict and fix per line."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from tests.pwa.conftest import axe, shot

VMS = json.dumps([{"name": "web", "vmid": 102, "node": "pve1"}, {"name": "db", "vmid": 103, "node": "pve1"}])


@pytest.fixture
def vms_env() -> dict[str, str]:
    return {"BREAKGLASS_VMS": VMS}


@pytest.fixture
def two(pve):
    if pve is None:
        pytest.skip("no sshd: verbs cannot reach a host here")
    pve.knob("vmid", "102 103")
    pve.configure(VMIDS="102 103")
    return pve


def test_the_vm_sheet_chooses_the_vm_and_its_verbs_act_there(two, stack, page):
    page.goto("/")
    expect(page.locator("[data-state=live]")).to_be_visible()
    strip = page.get_by_role("status", name="VM state")
    expect(strip.locator("[data-vm-name]")).to_have_text("web")
    expect(page.get_by_role("heading", name="What is wrong with web?")).to_be_visible()
    first_session = page.evaluate("() => location.pathname")

    page.get_by_role("button", name="Power").click()
    sheet = page.get_by_role("dialog", name="VM power")
    expect(sheet.locator("[data-vm-choice=web]")).to_have_attribute("aria-pressed", "true")
    expect(sheet.locator(".glance .now")).to_contain_text("running", timeout=30_000)
    sheet.locator("[data-vm-choice=db]").click()
    expect(sheet.locator("[data-vm-choice=db]")).to_have_attribute("aria-pressed", "true")
    expect(strip.locator("[data-vm-name]")).to_have_text("db")
    shot(page, "30-choose-vm")
    assert axe(page, "choose-vm") == []

    sheet.locator("[data-verb=stop]").click()
    expect(sheet.get_by_role("heading", name="Stop VM db?")).to_be_visible()
    sheet.locator("[data-confirm=stop]").click()
    result = sheet.get_by_role("region", name="Last verb output")
    expect(result.locator("h3")).to_contain_text("ok", timeout=60_000)
    assert two.vm(103) == "stopped" and two.vm(102) == "running"
    assert "stop 103 --timeout 45" in two.calls() and not any(c.startswith("stop 102") for c in two.calls())
    expect(sheet.locator(".glance .now")).to_contain_text("stopped", timeout=30_000)
    sheet.get_by_role("button", name="Close").click()

    # the console moved to a session bound to db: the verb is in its transcript
    assert page.evaluate("() => location.pathname") != first_session
    expect(page.locator(".verb").filter(has_text="stop").first).to_be_visible(timeout=20_000)
    listing = page.request.get("/api/sessions", headers=stack.headers).json()["sessions"]
    current = page.evaluate("() => location.pathname").rsplit("/", 1)[-1]
    assert {s["session_id"]: s["vm"] for s in listing}[current] == "db"


def test_the_health_view_shows_each_check_with_its_fix(two, stack, page):
    two.configure(VMIDS="102")  # the node was installed for one VM only: db is refused there
    page.goto("/")
    expect(page.locator("[data-state=live]")).to_be_visible()
    page.get_by_role("button", name="Health").click()
    sheet = page.get_by_role("dialog", name="Health")
    checks = sheet.get_by_role("list", name="Checks")
    expect(checks.locator("[data-check=nats]")).to_have_attribute("data-status", "ok", timeout=60_000)
    expect(checks.locator('[data-check="vm:web"]')).to_have_attribute("data-status", "ok")
    expect(checks.locator('[data-check="vm:web"]')).to_contain_text("status: running")
    db = checks.locator('[data-check="vm:db"]')
    expect(db).to_have_attribute("data-status", "fail")
    expect(db).to_contain_text("VM 103 is not one this key may act on")
    expect(db.locator(".fix")).to_contain_text("VMIDS")
    expect(sheet.get_by_role("status")).to_contain_text("broken")
    body = sheet.inner_text()
    assert stack.gateway_env["BREAKGLASS_API_TOKEN"] not in body
    shot(page, "31-health")
    assert axe(page, "health") == []
