"""Issue 17 (5): a page that slept catches up when it comes back.

The page is frozen with CDP `Page.setWebLifecycleState` (what a phone does to
a background tab) or cut off by an offline/online cycle while a turn's events
are appended; when it is active again, the stream (not provably live: no
frame within the keepalive interval + margin) is replaced at once, resuming
after the last applied id, and the pill says "Caught up". Every missed event
shows, none twice. The time from "visible again" to "everything shown" is
printed as a figure (FIGURE lines), not asserted."""

from __future__ import annotations

import time

import httpx
from playwright.sync_api import expect

from tests.fakeapi import text
from tests.pwa.conftest import LIVE
from tests.pwa.stall import StallingProxy


def lines_of(page) -> list[str]:
    return page.eval_on_selector_all(
        "article.turn .user .text, article.turn .prose:not(.live), article.turn .foot .outcome",
        "els => els.map(e => e.textContent.trim())",
    )


def run_turn_meanwhile(stack, sid: str, prompt: str) -> None:
    r = httpx.post(f"{stack.base}/api/session/{sid}/prompt", json={"prompt": prompt}, headers=stack.headers)
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        events = httpx.get(f"{stack.base}/api/session/{sid}/events?after=0&limit=1000", headers=stack.headers).json()["events"]
        if sum(e["kind"] == "turn_end" for e in events) >= 1 and any(e.get("text") == prompt for e in events):
            ends = [e for e in events if e["kind"] == "turn_end"]
            users = [e for e in events if e["kind"] == "user"]
            if len(ends) == len(users):
                return
        time.sleep(0.2)
    raise AssertionError("the turn did not end")


def wait_all_shown(page, answer: str, start: float) -> float:
    """Seconds from `start` (the page made active / online again) to everything shown."""
    expect(page.locator("article.turn").last.locator(".prose:not(.live)")).to_have_text(answer, timeout=20_000)
    expect(page.locator("article.turn").last.locator(".foot")).to_contain_text("Done")
    return time.monotonic() - start


def test_a_frozen_page_with_a_silently_dead_stream_catches_up_at_once(stack, context_factory):
    """Frozen (CDP) while its stream silently died (stalled, no error): on
    waking, the stream is not provably live, so it is replaced at once."""
    answers = ["First answer while frozen.", "Second answer while frozen."]
    stack.api.script(*[text(a) for a in answers])
    proxy = StallingProxy(int(stack.base.rsplit(":", 1)[1]))
    try:
        page = context_factory().new_page()
        page.goto(proxy.base + "/")
        expect(page.locator(LIVE)).to_be_visible()
        sid = page.evaluate("() => localStorage.getItem('breakglass.session_id')")
        cdp = page.context.new_cdp_session(page)
        figures = []
        for n, answer in enumerate(answers, 1):
            time.sleep(3)  # a keepalive (every 2 s) has told the page the interval
            assert proxy.stall_streams() == 1
            cdp.send("Page.setWebLifecycleState", {"state": "frozen"})
            run_turn_meanwhile(stack, sid, f"while frozen {n}")
            time.sleep(5)  # longer than the keepalive (2 s) + margin
            start = time.monotonic()
            cdp.send("Page.setWebLifecycleState", {"state": "active"})
            page.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")
            figures.append(wait_all_shown(page, answer, start))
            expect(page.locator("[data-caught-up]")).to_have_text("Caught up", timeout=5_000)
        got = lines_of(page)
        texts = [x for x in got if x != "Done"]
        assert got.count("Done") == 2 and len(texts) == len(set(texts)), got
        expect(page.locator("article.turn")).to_have_count(2)
        print(f"FIGURE pwa frozen + stalled stream -> active: every missed event shown in "
              f"{', '.join(f'{f:.2f} s' for f in figures)} (target <= 2 s)")
    finally:
        proxy.close()


def test_a_frozen_page_whose_stream_kept_its_frames_shows_them_without_duplicates(stack, context_factory):
    """Frozen (CDP) with the connection intact: the frames queued meanwhile
    are delivered on waking; nothing twice, no stuck label."""
    stack.api.script(text("Answer while frozen."))
    page = context_factory().new_page()
    page.goto("/")
    expect(page.locator(LIVE)).to_be_visible()
    sid = page.evaluate("() => localStorage.getItem('breakglass.session_id')")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Page.setWebLifecycleState", {"state": "frozen"})
    run_turn_meanwhile(stack, sid, "while frozen")
    time.sleep(5)
    start = time.monotonic()
    cdp.send("Page.setWebLifecycleState", {"state": "active"})
    page.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")
    shown = wait_all_shown(page, "Answer while frozen.", start)
    expect(page.locator(LIVE)).to_be_visible()
    got = lines_of(page)
    assert len(got) == len(set(got)), got
    print(f"FIGURE pwa frozen -> active: every missed event shown in {shown:.2f} s (target <= 2 s)")


def test_an_offline_online_cycle_catches_up_without_duplicates(stack, context_factory):
    stack.api.script(text("Answer while offline."))
    ctx = context_factory()
    page = ctx.new_page()
    page.goto("/")
    expect(page.locator(LIVE)).to_be_visible()
    sid = page.evaluate("() => localStorage.getItem('breakglass.session_id')")
    ctx.set_offline(True)
    run_turn_meanwhile(stack, sid, "while offline")
    time.sleep(5)
    start = time.monotonic()
    ctx.set_offline(False)
    shown = wait_all_shown(page, "Answer while offline.", start)
    expect(page.locator(LIVE)).to_be_visible()
    expect(page.locator("article.turn")).to_have_count(1)
    got = lines_of(page)
    assert len(got) == len(set(got)), got
    print(f"FIGURE pwa offline->online: every missed event shown in {shown:.2f} s (target <= 2 s)")
