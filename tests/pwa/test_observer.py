"""An observer link in the PWA (issue 19): the operator creates it from
Sessions → Security; a colleague's browser, with no token, opens it and
watches that session live, read-only (no composer, no Power, no Sessions),
and can export it; the gateway refuses anything else the page might try,
and every use is in the session's record."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

from tests.fakeapi import text
from tests.pwa.conftest import shot


def test_a_colleague_watches_through_a_read_only_link(stack, page, context_factory):
    stack.api.script(text("The disk is at 91%."))
    page.goto("/")
    expect(page.locator("[data-state=live]")).to_be_visible()
    page.get_by_label("Message to the agent").fill("why is the vm slow")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("article.turn .foot")).to_contain_text("Done", timeout=60_000)

    page.get_by_role("button", name="Sessions").click()
    security = page.get_by_role("dialog", name="Sessions").get_by_role("region", name="Security")
    security.get_by_role("button", name="Create a read-only link").click()
    link = security.get_by_label("Read-only link")
    expect(link).to_be_visible()
    url = link.input_value()
    sid, secret = url.split("#observe/")[1].split("/")

    colleague = context_factory(token=False).new_page()
    colleague.goto(url)
    expect(colleague.get_by_role("region", name="Observer")).to_contain_text("Read-only observer view")
    expect(colleague.locator("article.turn")).to_contain_text("The disk is at 91%.", timeout=20_000)
    expect(colleague.get_by_label("Message to the agent")).to_have_count(0)
    expect(colleague.get_by_role("button", name="Power")).to_have_count(0)
    expect(colleague.get_by_role("button", name="Sessions")).to_have_count(0)
    shot(colleague, "21-observer-view")
    with colleague.expect_download() as download:
        colleague.get_by_role("button", name="Export .jsonl (verifiable)").click()
    assert sid in download.value.suggested_filename
    tried = colleague.evaluate("""async ([sid, secret]) => {
        const r = await fetch(`/api/session/${sid}/prompt`, {method: 'POST', headers: {'X-Breakglass-Observer': secret,
            'Content-Type': 'application/json'}, body: JSON.stringify({prompt: 'rm -rf /'})});
        return r.status;
    }""", [sid, secret])
    assert tried == 403

    events = httpx.get(f"{stack.base}/api/session/{sid}/events", headers=stack.headers).json()["events"]
    audit = [(e["action"], e["route"]) for e in events if e["kind"] == "observer"]
    assert audit[0] == ("created", "") and ("used", "stream") in audit and ("used", "export") in audit, audit
    assert not [e for e in events if e["kind"] == "user" and "rm -rf" in e.get("prompt", "")]
