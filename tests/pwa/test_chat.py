"""The chat in a real browser: prompt -> streamed answer, reload mid-turn,
a busy session, a session that vanished (Stop: test_walkthrough.py, 1).
Screenshots in test-artifacts/pwa/."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import expect

from tests.fakeapi import bash, hang, text
from tests.pwa.conftest import LIVE, axe, open_app, send, shot

def test_first_load_is_calm_and_accessible(stack, page):
    open_app(page)
    expect(page.get_by_role("heading", name="What is wrong with the devvm?")).to_be_visible()
    for label in ("Triage", "Memory / OOM", "Disk full", "Failed services", "QEMU wedged"):
        expect(page.get_by_role("button", name=label, exact=True)).to_be_visible()
    # the composer is 16 px (no iOS zoom on focus) and every control is a 44 px target
    assert page.eval_on_selector("#prompt", "e => getComputedStyle(e).fontSize") == "16px"
    small = page.evaluate(
        """() => [...document.querySelectorAll('button, textarea, input')]
            .filter(e => e.offsetParent !== null && !e.classList.contains('visually-hidden'))
            .map(e => [e.textContent.trim() || e.id || e.getAttribute('aria-label'), e.getBoundingClientRect()])
            .filter(([, r]) => r.height < 44 || r.width < 44).map(([n, r]) => `${n}: ${r.width}x${r.height}`)"""
    )
    assert small == [], small
    shot(page, "01-empty-session")
    assert axe(page, "empty-session") == []


def test_prompt_streams_an_answer_then_a_tool_round_trip(stack, page):
    stack.api.script(
        bash("uptime"),
        text("The load is ", "very high: ", "41 on 4 cores. ", "Something is spinning.", delay=0.25),
    )
    open_app(page)
    send(page, "why is the devvm slow?")
    turn = page.locator("article.turn")
    expect(turn).to_have_count(1)
    expect(turn.locator(".user")).to_contain_text("why is the devvm slow?")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    # live token text, before the stored block replaces it
    expect(turn.locator(".prose.live")).to_contain_text("The load is", timeout=30_000)
    shot(page, "02-streaming")
    expect(turn.locator(".foot")).to_contain_text("Done", timeout=30_000)
    expect(turn.locator(".prose.live")).to_have_count(0)
    expect(turn).to_contain_text("41 on 4 cores. Something is spinning.")
    chip = turn.locator(".tool .chip")
    expect(chip).to_have_count(1)
    expect(chip).to_contain_text("uptime")
    chip.click()
    expect(turn.locator(".tool pre")).to_contain_text("load average")
    expect(turn.locator(".foot")).to_contain_text("$")  # cost of the turn
    expect(turn.locator(".foot")).to_contain_text(" in ·")
    shot(page, "03-answered-with-tool")
    assert axe(page, "answered-turn") == []


def test_a_preset_sends_in_one_tap(stack, page):
    stack.api.script(text("Disk is 99% full on /var."))
    open_app(page)
    page.get_by_role("button", name="Disk full", exact=True).click()
    turn = page.locator("article.turn")
    expect(turn.locator(".user")).to_contain_text("df -h")
    expect(turn.locator(".foot")).to_contain_text("Done", timeout=30_000)
    prompt = stack.api.model_requests[-1].text_of()
    assert "df -h and df -i" in prompt


def lines_of(page) -> list[str]:
    return page.eval_on_selector_all(
        "article.turn .user .text, article.turn .prose:not(.live), article.turn .tool .cmd",
        "els => els.map(e => e.className.split(' ')[0] + ': ' + e.textContent.trim())",
    )


def test_reload_mid_turn_keeps_the_transcript_without_duplicates(stack, page):
    words = [f"word{i} " for i in range(30)]
    stack.api.script(bash("echo step-one"), text(*words, delay=0.2))
    open_app(page)
    send(page, "go slowly")
    turn = page.locator("article.turn")
    expect(turn.locator(".prose.live")).to_contain_text("word3", timeout=30_000)
    before = lines_of(page)
    page.reload()
    expect(page.locator("[data-state=live]")).to_be_visible()
    expect(turn).to_have_count(1)
    # the tool and the stored text are back, once; the turn is still running
    expect(turn.locator(".tool .chip")).to_have_count(1)
    assert lines_of(page)[:2] == before[:2], (before, lines_of(page))
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    shot(page, "04-reloaded-mid-turn")
    expect(turn.locator(".foot")).to_contain_text("Done", timeout=40_000)
    after = lines_of(page)
    assert len(after) == len(set(after)), after
    assert after.count("prose: " + "".join(words).strip()) == 1, after
    assert sum(line.startswith("cmd: echo step-one") for line in after) == 1, after
    assert sum(line.startswith("text: go slowly") for line in after) == 1, after
    # and a second reload after the turn shows exactly the same
    page.reload()
    expect(turn.locator(".foot")).to_contain_text("Done")
    assert lines_of(page) == after
    shot(page, "05-after-reload-done")


def test_a_busy_session_says_so(stack, page):
    stack.api.script(hang(interval=0.2, seconds=60))
    open_app(page)
    sid = page.evaluate("() => localStorage.getItem('breakglass.session_id')")
    # another device starts a turn first; this page has not seen it yet
    answer = httpx.post(f"{stack.base}/api/session/{sid}/prompt", json={"prompt": "from the laptop"}, headers=stack.headers)
    assert answer.status_code == 202
    page.evaluate("() => window.dispatchEvent(new Event('breakglass-test-noop'))")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    httpx.post(f"{stack.base}/api/session/{sid}/cancel", headers=stack.headers)
    expect(page.get_by_role("button", name="Send")).to_be_visible(timeout=15_000)


def test_a_prompt_into_a_busy_session_is_refused_with_a_clear_message(stack, page):
    stack.api.script(hang(interval=0.2, seconds=60))
    # this page's stream is cut, so it has not seen the turn another device started
    page.route("**/stream*", lambda route: route.abort())
    page.goto("/")
    expect(page.locator("[data-state=reconnecting], [data-state=offline]").first).to_be_visible()
    sid = page.evaluate("() => localStorage.getItem('breakglass.session_id')")
    assert httpx.post(f"{stack.base}/api/session/{sid}/prompt", json={"prompt": "first"}, headers=stack.headers).status_code == 202
    send(page, "second")
    expect(page.locator("[role=alert]")).to_contain_text("already running")
    expect(page.get_by_label("Message to the agent")).to_have_value("second")  # nothing lost
    shot(page, "06b-busy-409")
    httpx.post(f"{stack.base}/api/session/{sid}/cancel", headers=stack.headers)


def test_a_vanished_session_is_replaced(stack, page):
    stack.api.script(text("Fresh start."))
    page.goto("/")
    expect(page.locator(LIVE)).to_be_visible()  # the app's own first session is set up: nothing overwrites ours now
    page.evaluate("() => localStorage.setItem('breakglass.session_id', '00000000-0000-4000-8000-000000000000')")
    page.goto("/")  # not a reload: the address is /s/<the app's own session> now, and an address wins
    expect(page.locator("[role=alert]")).to_contain_text("no longer exists", timeout=20_000)
    expect(page.locator(LIVE)).to_be_visible()
    sid = page.evaluate("() => localStorage.getItem('breakglass.session_id')")
    assert sid != "00000000-0000-4000-8000-000000000000" and re.match(r"^[0-9a-f-]{36}$", sid)
    send(page, "hello")
    expect(page.locator("article.turn .foot")).to_contain_text("Done", timeout=30_000)


def test_without_identity_the_login_screen_takes_a_token(stack, context_factory):
    page = context_factory(token=False).new_page()
    page.goto("/")
    expect(page.get_by_label("Access token")).to_be_visible()
    shot(page, "07-login")
    assert axe(page, "login") == []
    page.get_by_label("Access token").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("[role=alert]")).to_contain_text("refused")
    page.get_by_label("Access token").fill(stack.headers["Authorization"].split(" ", 1)[1])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="What is wrong with the devvm?")).to_be_visible()
