"""What an operator's walk-through in Chromium at 390×844 found (issue 22),
one test per finding, each against the real stack (gateway, the real CLI on
the fake Messages API, pve-executor behind a real sshd). Each failed on the
build before the fix. Screenshots in test-artifacts/pwa/ (30-).

Finding 6 (Proxmox not configured) needs an unconfigured executor:
tests/pwa/test_pve_unconfigured.py."""

from __future__ import annotations

import json
import re
import httpx
from playwright.sync_api import expect

from tests.fakeapi import bash, hang, text
from tests.pwa.conftest import LIVE, axe, open_app, send, shot

def session_of(page) -> str:
    return page.evaluate("() => localStorage.getItem('breakglass.session_id')")


def events_of(stack, sid: str) -> list[dict]:
    r = httpx.get(f"{stack.base}/api/session/{sid}/events?after=0&limit=1000", headers=stack.headers)
    assert r.status_code == 200, r.text
    return r.json()["events"]


# 1 -----------------------------------------------------------------------------


def test_1_stop_reads_as_cancelled_calmly_live_and_after_reload(stack, page):
    stack.api.script(hang(interval=0.1, seconds=60))
    open_app(page)
    send(page, "slow please")
    turn = page.locator("article.turn")
    expect(turn.locator(".prose.live")).to_contain_text("tick", timeout=30_000)
    page.get_by_role("button", name="Stop").click()
    expect(turn.locator(".foot")).to_contain_text("Cancelled", timeout=15_000)
    expect(page.get_by_role("button", name="Send")).to_be_visible()  # the composer is back for the next prompt
    for _ in range(2):
        expect(turn).to_contain_text("Stopped by operator")
        expect(turn.locator(".alert")).to_have_count(0)  # nothing red: no "reported an error"
        assert "[object Object]" not in turn.inner_text()
        page.reload()
        expect(page.locator(LIVE)).to_be_visible()
        expect(turn.locator(".foot")).to_contain_text("Cancelled")
    shot(page, "30-stopped-calmly")


# 2 -----------------------------------------------------------------------------


def test_2_the_connection_label_follows_the_stream_not_a_stale_offline_event(stack, page, context_factory):
    stack.api.script(text(*[f"w{i} " for i in range(60)], delay=0.15))
    open_app(page)
    send(page, "stream for a while")
    expect(page.locator("article.turn .prose.live")).to_contain_text("w3", timeout=30_000)
    # the browser says offline, but the stream keeps delivering (a flaky radio, a captive portal)
    # Frames keep coming every 0.15 s, so "offline" can last less than one
    # poll of expect(): record every state the label takes instead.
    page.evaluate("""() => {
      window.__states = [];
      const note = () => { const pill = document.querySelector('.pill[data-state]');
                           if (pill) window.__states.push(pill.dataset.state); };
      new MutationObserver(note).observe(document.body,
        {subtree: true, childList: true, attributes: true, attributeFilter: ['data-state']});
    }""")
    page.evaluate("() => window.dispatchEvent(new Event('offline'))")
    page.wait_for_function("() => window.__states.includes('offline')", timeout=5_000)
    # the next frame (text, or the 2 s keepalive) proves it live again
    expect(page.locator(LIVE)).to_be_visible(timeout=10_000)
    expect(page.locator("article.turn .foot")).to_contain_text("Done", timeout=40_000)
    # and after the turn, with only keepalives flowing
    page.evaluate("() => window.dispatchEvent(new Event('offline'))")
    expect(page.locator(LIVE)).to_be_visible(timeout=10_000)


# 3 -----------------------------------------------------------------------------


def test_3_large_output_shows_its_tail_and_states_the_real_size(stack, page):
    stack.api.script(
        bash("seq 1 3000"),
        bash("seq 1 400000 | sed 's/$/ some log line text/'"),
        text("Looked at both."),
    )
    open_app(page)
    send(page, "show me the logs")
    turn = page.locator("article.turn")
    expect(turn.locator(".foot")).to_contain_text("Done", timeout=90_000)
    chips = turn.locator(".tool .chip")
    expect(chips).to_have_count(2)
    chips.nth(0).click()
    first = turn.locator(".tool").nth(0)
    pre = first.locator("pre")
    # the tail first: the last line is there, the first is not
    assert pre.inner_text().rstrip().endswith("3000")
    assert not pre.inner_text().startswith("1\n")
    expect(first.locator("[data-cut=tail]")).to_contain_text("last 200 of 3,000 lines")
    assert pre.evaluate("e => e.scrollTop + e.clientHeight >= e.scrollHeight - 2")  # scrolled to the end
    first.get_by_role("button", name="Show all").click()
    assert pre.inner_text().startswith("1\n")
    expect(first.get_by_role("button", name="Copy")).to_be_visible()
    with page.expect_download() as dl:
        first.get_by_role("button", name="Download").click()
    assert open(dl.value.path()).read().splitlines()[-1] == "3000"

    chips.nth(1).click()
    second = turn.locator(".tool").nth(1)
    body = second.locator("pre").inner_text()
    # the CLI's notice and its server file path are not output; the footer states the real size
    assert "<persisted-output>" not in body and "Full output saved to" not in body, body[:300]
    note = second.locator("[data-cut=source]")
    expect(note).to_contain_text(re.compile(r"MB|kB"))
    shot(page, "31-large-output")


# 4 -----------------------------------------------------------------------------


def test_4_reload_mid_turn_keeps_the_text_already_streamed(stack, page):
    words = [f"word{i} " for i in range(50)]
    stack.api.script(text(*words, delay=0.2))
    open_app(page)
    send(page, "go slowly")
    live = page.locator("article.turn .prose.live")
    expect(live).to_contain_text("word12", timeout=30_000)
    page.reload()
    expect(page.locator(LIVE)).to_be_visible()
    # before the turn ends, the beginning of the answer is back
    expect(live).to_contain_text("word0 word1 word2")
    assert "Done" not in page.locator("article.turn").inner_text()
    shot(page, "32-reloaded-keeps-text")
    expect(page.locator("article.turn .foot")).to_contain_text("Done", timeout=40_000)
    expect(page.locator("article.turn .prose")).to_have_count(1)
    expect(page.locator("article.turn .prose")).to_have_text("".join(words).strip())


# 5 -----------------------------------------------------------------------------


def test_5_opening_the_app_offline_shows_the_session_and_keeps_an_offline_prompt(stack, context_factory):
    stack.api.script(text("Disk is 99% full on /var."), text("Cleared the journal."))
    ctx = context_factory(service_workers="allow")
    page = ctx.new_page()
    open_app(page)
    page.wait_for_function("() => navigator.serviceWorker.controller !== null || navigator.serviceWorker.ready.then(() => true)")
    send(page, "is the disk full?")
    expect(page.locator("article.turn .foot")).to_contain_text("Done", timeout=30_000)
    page.reload()  # now the service worker controls the page
    expect(page.locator(LIVE)).to_be_visible()
    page.wait_for_function("() => navigator.serviceWorker.controller !== null")

    ctx.set_offline(True)
    page.reload()
    expect(page.locator("[data-state=offline]")).to_be_visible(timeout=20_000)
    expect(page.locator("article.turn")).to_contain_text("Disk is 99% full on /var.")
    expect(page.get_by_role("heading", name="What is wrong with the devvm?")).to_have_count(0)
    shot(page, "33-offline-open")

    send(page, "clean the journal please")
    expect(page.locator("[role=alert]")).to_contain_text("offline")
    ctx.set_offline(False)
    ask = page.get_by_role("alertdialog", name="Message typed offline")
    expect(ask).to_be_visible(timeout=20_000)
    expect(ask).to_contain_text("clean the journal please")
    ask.get_by_role("button", name="Send it").click()
    expect(page.locator("article.turn")).to_have_count(2, timeout=20_000)
    expect(page.locator("article.turn").nth(1).locator(".foot")).to_contain_text("Done", timeout=30_000)


# 7 -----------------------------------------------------------------------------


def test_7_the_keyboards_send_key_sends(stack, page):
    stack.api.script(text("Sent by the Send key."))
    open_app(page)
    box = page.get_by_label("Message to the agent")
    box.fill("check the load")
    box.press("Enter")  # a touch keyboard's Send key (enterkeyhint=send) is Enter
    expect(page.locator("article.turn .user")).to_contain_text("check the load")
    expect(box).to_have_value("")
    expect(page.locator("article.turn .foot")).to_contain_text("Done", timeout=30_000)


# 8 -----------------------------------------------------------------------------


def test_8_the_composer_shrinks_after_a_long_prompt_and_the_bubble_is_collapsed(stack, page):
    stack.api.script(text("Read it."))
    open_app(page)
    long = "\n".join(f"journal line {i}: kernel: task blocked for more than 120 seconds" for i in range(220))
    assert len(long) > 13_000
    box = page.get_by_label("Message to the agent")
    box.fill(long)
    box.dispatch_event("input")
    assert box.evaluate("e => e.getBoundingClientRect().height") > 100
    page.get_by_role("button", name="Send").click()
    expect(page.locator("article.turn .foot")).to_contain_text("Done", timeout=30_000)
    assert box.evaluate("e => e.getBoundingClientRect().height") < 60
    bubble = page.locator("article.turn .user")
    assert bubble.evaluate("e => e.getBoundingClientRect().height") < 400
    more = bubble.get_by_role("button", name=re.compile("Show more"))
    more.click()
    assert bubble.evaluate("e => e.getBoundingClientRect().height") > 1000
    shot(page, "34-long-prompt")


# 9 -----------------------------------------------------------------------------

ANSWER = """**Finding:** the OOM killer ran at 03:12.

- `postgres` was killed
- swap is *off*

| total | used | free |
|------:|-----:|-----:|
| 15907 | 15512 | 120 |

```
              total        used        free      shared  buff/cache   available
Mem:          15907       15512         120          12         274         102
```

State: degraded"""


def test_9_markdown_renders_safely_with_scrolling_tables_and_a_state_badge(stack, page):
    stack.api.script(text(ANSWER))
    open_app(page)
    send(page, "memory?")
    prose = page.locator("article.turn .prose.md")
    expect(prose).to_have_count(1, timeout=30_000)
    expect(prose.locator("strong").first).to_have_text("Finding:")
    expect(prose.locator("li")).to_have_count(2)
    expect(prose.locator("li code")).to_have_text("postgres")
    expect(prose.locator("table")).to_have_count(1)
    assert "**" not in prose.inner_text() and "| total" not in prose.inner_text()
    pre = prose.locator("pre")
    assert pre.evaluate("e => getComputedStyle(e).whiteSpace") == "pre"
    assert pre.evaluate("e => e.scrollWidth > e.clientWidth && getComputedStyle(e).overflowX === 'auto'")
    expect(page.locator("[data-state-badge=degraded]")).to_be_visible()
    assert "State: degraded" not in prose.inner_text()
    shot(page, "35-markdown")
    assert axe(page, "markdown") == []


XSS = [
    "<img src=x onerror=\"window.__xss='img'\">",
    "<script>window.__xss='script'</script>",
    "[click](javascript:window.__xss='link')",
    "![pixel](http://127.0.0.1:9/tracker.png)",
    "<a href=\"javascript:window.__xss='a'\">a</a>",
    "<svg onload=\"window.__xss='svg'\"></svg>",
    "[ok](https://example.org/docs)",
]


def test_9_an_xss_corpus_in_agent_text_and_tool_output_is_inert(stack, page):
    corpus = "\n\n".join(XSS)
    stack.api.script(bash("printf '%s\\n' " + " ".join(json.dumps(x) for x in XSS[:2])), text(corpus))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    open_app(page)
    send(page, "xss")
    turn = page.locator("article.turn")
    expect(turn.locator(".foot")).to_contain_text("Done", timeout=30_000)
    turn.locator(".tool .chip").click()
    expect(turn.get_by_label("output of Bash")).to_contain_text("<script>")
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.__xss") is None
    prose = turn.locator(".prose.md")
    assert prose.locator("img, script, svg, iframe").count() == 0
    hrefs = prose.locator("a").evaluate_all("as => as.map(a => a.getAttribute('href'))")
    # only http(s) links survive; an image is never loaded, only linked (its target shown)
    assert sorted(hrefs) == ["http://127.0.0.1:9/tracker.png", "https://example.org/docs"], hrefs
    expect(prose).to_contain_text("(https://example.org/docs)")  # a link shows its target
    expect(prose).to_contain_text("<img src=x")  # raw HTML is shown as text
    assert not any("tracker.png" in u for u in requests)


# 10 ----------------------------------------------------------------------------


def test_10_turn_times_are_wall_clock_and_no_output_is_not_called_output(stack, page):
    stack.api.script(bash("sleep 2"), text("Slept.", first_delay=4))
    open_app(page)
    send(page, "take a while")
    pulse = page.locator("[data-liveness=working]")
    expect(pulse).to_contain_text("no output yet", timeout=30_000)
    turn = page.locator("article.turn")
    expect(turn.locator(".foot")).to_contain_text("Done", timeout=60_000)
    events = events_of(stack, session_of(page))
    from datetime import datetime

    ts = {e["kind"]: datetime.fromisoformat(e["ts"].replace("Z", "+00:00")) for e in events if e["kind"] in ("user", "turn_end")}
    wall = (ts["turn_end"] - ts["user"]).total_seconds()
    shown = turn.locator(".foot").inner_text()
    m = re.search(r"(\d+(?:\.\d+)?) (ms|s)\b", shown)
    assert m, shown
    value = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    assert abs(value - wall) <= 0.1, (shown, wall)


# 11 ----------------------------------------------------------------------------


def boxes_overlap(a: dict, b: dict) -> bool:
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


def test_11_small_screens_links_export_and_notices(stack, context_factory):
    stack.api.script(text("Triage says fine."), text("Second session."))
    page = context_factory().new_page()
    open_app(page)
    # the list of checks is what it looks like: tappable
    page.locator("[data-check=triage]").click()
    expect(page.locator("article.turn .foot")).to_contain_text("Done", timeout=30_000)
    # every preset chip is on screen, none behind a sideways scroll
    chips = page.locator("[data-preset]")
    expect(chips).to_have_count(5)
    for chip in chips.all():
        box = chip.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    sid = session_of(page)
    # the session is addressable
    assert page.url.endswith(f"/s/{sid}"), page.url
    with page.expect_download() as dl:
        page.get_by_role("button", name="Export this session").click()
    assert dl.value.suggested_filename == f"breakglass-{sid}.md"

    # a new session's notice goes away by itself
    page.get_by_role("button", name="Sessions").click()
    page.get_by_role("button", name=re.compile("New session")).click()
    expect(page.locator("[role=alert]")).to_contain_text("New session started")
    expect(page.locator("[role=alert]")).to_have_count(0, timeout=15_000)
    assert session_of(page) != sid

    # a link opens that session
    other = context_factory().new_page()
    other.goto(f"/s/{sid}")
    expect(other.locator(LIVE)).to_be_visible()
    expect(other.locator("article.turn")).to_contain_text("Triage says fine.")

    # 320 px: nothing overlaps, the placeholder fits
    narrow = other
    narrow.set_viewport_size({"width": 320, "height": 640})
    pill = narrow.locator("[data-state]").first.bounding_box()
    for name in ("Sessions", "Power", "Export this session"):
        b = narrow.get_by_role("button", name=name, exact=True).bounding_box()
        assert b and not boxes_overlap(pill, b), (name, pill, b)
        assert b["x"] + b["width"] <= 320, (name, b)
    fits = narrow.get_by_label("Message to the agent").evaluate(
        """e => { const c = document.createElement('canvas').getContext('2d'); const s = getComputedStyle(e);
                 c.font = `${s.fontSize} ${s.fontFamily}`;
                 const room = e.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
                 return c.measureText(e.placeholder).width <= room; }"""
    )
    assert fits
    shot(narrow, "36-320px")
    assert axe(narrow, "320px") == []


def test_jump_to_latest_when_scrolled_up(stack, page):
    stack.api.script(bash("seq 1 50"), text(*[f"line {i}\n\n" for i in range(60)], delay=0.1))
    open_app(page)
    send(page, "a long answer")
    turn = page.locator("article.turn")
    expect(turn.locator(".prose.live")).to_contain_text("line 20", timeout=30_000)
    page.locator("section.transcript").evaluate("e => { e.scrollTop = 0; e.dispatchEvent(new Event('scroll')); }")
    jump = page.get_by_role("button", name="Jump to latest")
    expect(jump).to_be_visible()
    jump.click()
    page.wait_for_function(
        "() => { const e = document.querySelector('section.transcript'); return e.scrollHeight - e.scrollTop - e.clientHeight < 80; }"
    )
    expect(jump).to_have_count(0)
