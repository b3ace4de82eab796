"""Sessions: a new session archives the old one; history lists it; any past
session replays read-only. And the gateway restarting mid-turn."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.fakeapi import text
from tests.pwa.conftest import axe, open_app, send, shot


def test_new_session_history_and_read_only_replay(stack, page):
    stack.api.script(text("Memory is fine: 2 GiB free."), text("Second session answer."))
    open_app(page)
    send(page, "how is memory?")
    expect(page.locator("article.turn .foot")).to_contain_text("Done", timeout=30_000)
    old = page.evaluate("() => localStorage.getItem('breakglass.session_id')")

    page.get_by_role("button", name="Sessions").click()
    page.get_by_role("dialog", name="Sessions").get_by_role("button", name="New session").click()
    expect(page.get_by_role("heading", name="What is wrong with the devvm?")).to_be_visible()
    new = page.evaluate("() => localStorage.getItem('breakglass.session_id')")
    assert new != old
    send(page, "second session")
    expect(page.locator("article.turn .foot")).to_contain_text("Done", timeout=30_000)

    page.get_by_role("button", name="Sessions").click()
    sheet = page.get_by_role("dialog", name="Sessions")
    row = sheet.locator(f"[data-session='{old}']")
    expect(row).to_contain_text("how is memory?")
    expect(sheet.locator(f"[data-session='{new}']")).to_contain_text("current")
    shot(page, "13-sessions")
    assert axe(page, "sessions") == []
    sheet.get_by_role("searchbox").fill("memory")
    sheet.get_by_role("button", name="Search", exact=True).click()
    expect(sheet.get_by_role("status")).to_contain_text(re.compile(r"Searched \d+ of \d+ sessions"))
    expect(sheet.locator(f"[data-session='{new}']")).to_have_count(0)  # "second session" does not match
    row.click()

    expect(page.get_by_role("region", name="Replay", exact=True)).to_contain_text("Read-only replay")
    expect(page.locator("[data-state=replay]")).to_be_visible()
    replayed = page.get_by_role("region", name="Replayed transcript")
    expect(replayed.locator("article.turn")).to_have_count(1)
    expect(replayed).to_contain_text("Memory is fine: 2 GiB free.")
    expect(page.get_by_label("Message to the agent")).to_have_count(0)  # read-only
    shot(page, "14-replay")
    assert axe(page, "replay") == []

    page.get_by_role("button", name="Back to live").click()
    expect(page.locator("article.turn")).to_contain_text("Second session answer.")


def test_the_page_reconnects_when_the_gateway_restarts_mid_turn(stack, page):
    words = [f"w{i} " for i in range(40)]
    stack.api.script(text(*words, delay=0.2))
    open_app(page)
    send(page, "keep talking")
    turn = page.locator("article.turn")
    expect(turn.locator(".prose.live")).to_contain_text("w2", timeout=30_000)
    stack.restart_gateway(down_seconds=0.5)
    expect(page.locator("[data-state=live]")).to_be_visible(timeout=30_000)
    shot(page, "15-after-gateway-restart")
    expect(turn.locator(".foot")).to_contain_text("Done", timeout=40_000)
    expect(turn).to_have_count(1)
    prose = turn.locator(".prose:not(.live)").all_text_contents()
    assert prose == ["".join(words).strip()] or prose == ["".join(words)], prose
    assert page.locator("article.turn .user").count() == 1
