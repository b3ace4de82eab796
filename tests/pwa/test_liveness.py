"""Operator awareness in a real browser: the running turn's liveness from the
live-only `status` heartbeats ("working · last output N s ago", a warning
with Stop after a silence, "agent runner lost" when the heartbeats stop,
before `interrupted`), and system notifications while the page is hidden.

The runner here renews its lease every 0.5 s (lease 4 s), so heartbeats come
twice a second; `?silence=2` makes the silence warning come after 2 s.
Screenshots in test-artifacts/pwa/ (17-21)."""

from __future__ import annotations

import re
import signal
import time

from playwright.sync_api import expect

from tests.fakeapi import bash, text, tool_use
from tests.pwa.conftest import LIVE, axe, open_app, send, shot

TOOL = "mcp__breakglass__pve"


def seconds_in(label: str) -> int:
    m = re.search(r"last output (\d+) s ago", label)
    assert m, label
    return int(m.group(1))


def small_targets(page, selector: str) -> list[str]:
    return page.evaluate(
        """(sel) => [...document.querySelectorAll(sel + ' button')]
            .map(e => [e.textContent.trim(), e.getBoundingClientRect()])
            .filter(([, r]) => r.height < 44 || r.width < 44).map(([n, r]) => `${n}: ${r.width}x${r.height}`)""",
        selector,
    )


def test_a_running_turn_says_working_and_when_it_last_printed(stack, page):
    # the model takes 6 s before its first token: the CLI prints nothing meanwhile
    # one tool call prints first, then the model takes 6 s: nothing new is printed meanwhile
    stack.api.script(bash("echo started"), text("Load is fine.", first_delay=6))
    open_app(page)
    send(page, "take your time")
    pulse = page.locator("[data-liveness=working]")
    expect(pulse).to_contain_text(re.compile(r"working · last output \d+ s ago"), timeout=30_000)
    first = seconds_in(pulse.inner_text())
    # counted up between heartbeats (and by them): it grows while nothing is printed
    page.wait_for_function(
        """(n) => { const m = /last output (\\d+) s ago/.exec(document.querySelector('[data-liveness=working]')?.textContent || '');
                    return m && Number(m[1]) >= n; }""",
        arg=first + 2, timeout=10_000,
    )
    assert page.locator("[data-liveness=silent], [data-liveness=lost]").count() == 0  # default threshold: 3 min
    shot(page, "17-working")
    turn = page.locator("article.turn")
    expect(turn.locator(".foot")).to_contain_text("Done", timeout=40_000)
    expect(page.locator("[data-liveness]")).to_have_count(0)  # never after turn_end


def test_a_silent_turn_turns_into_a_warning_with_stop_at_hand(stack, page):
    stack.api.script(text("too late", first_delay=90))
    open_app(page, "/?silence=2")
    send(page, "this will go quiet")
    warning = page.locator("[data-liveness=silent]")
    expect(warning).to_be_visible(timeout=30_000)
    expect(warning).to_contain_text("The agent has gone quiet")
    expect(warning).to_contain_text(re.compile(r"no output yet after \d+ s"))  # nothing was ever printed
    stop = warning.get_by_role("button", name="Stop")
    expect(stop).to_be_visible()
    assert small_targets(page, "[data-liveness=silent]") == []
    # announced once to screen readers, not on every tick
    expect(page.get_by_role("status").filter(has_text="Warning: the agent has printed nothing")).to_have_count(1)
    shot(page, "18-silent-warning")
    assert axe(page, "silent-warning") == []
    stop.click()
    turn = page.locator("article.turn")
    expect(turn).to_contain_text("Stopped by operator", timeout=15_000)
    expect(turn.locator(".foot")).to_contain_text("Cancelled")
    expect(page.locator("[data-liveness]")).to_have_count(0)
    expect(page.get_by_role("button", name="Send")).to_be_visible()


def test_the_silence_threshold_is_a_setting(stack, page):
    open_app(page)
    page.get_by_role("button", name="Sessions").click()
    sheet = page.get_by_role("dialog", name="Sessions")
    select = sheet.get_by_label("Warn when the agent prints nothing for")
    expect(select).to_have_value("180")
    sheet.get_by_role("heading", name="Alerts").scroll_into_view_if_needed()
    shot(page, "21-alert-settings")
    assert axe(page, "alert-settings") == []
    select.select_option("300")
    assert page.evaluate("() => localStorage.getItem('breakglass.silence_seconds')") == "300"
    page.reload()
    expect(page.locator(LIVE)).to_be_visible()
    page.get_by_role("button", name="Sessions").click()
    expect(sheet.get_by_label("Warn when the agent prints nothing for")).to_have_value("300")
    # the address wins (and says so)
    open_app(page, "/?silence=2")
    page.get_by_role("button", name="Sessions").click()
    expect(sheet.get_by_label("Warn when the agent prints nothing for")).to_be_disabled()
    expect(sheet).to_contain_text("Set to 2 s by ?silence= in the address")


def test_a_frozen_runner_is_called_lost_before_its_turn_is_interrupted(stack, page):
    stack.api.script(text("never", first_delay=120))
    open_app(page)
    send(page, "hang on")
    expect(page.locator("[data-liveness=working]")).to_contain_text("no output yet", timeout=30_000)
    stack.runner.signal(signal.SIGSTOP)
    try:
        frozen = time.monotonic()
        lost = page.locator("[data-liveness=lost]")
        expect(lost).to_be_visible(timeout=20_000)
        noticed = time.monotonic() - frozen
        expect(lost).to_contain_text("agent runner lost")
        expect(lost).to_contain_text(re.compile(r"No heartbeat for \d+ s \(lease 4 s\)"))
        turn = page.locator("article.turn")
        assert turn.locator(".alert.warn").count() == 0, "interrupted already recorded"  # before `interrupted`
        assert turn.locator(".foot").count() == 0
        assert noticed < 15, noticed  # lease 4 s + a 2 s margin (+ a heartbeat interval and the tick)
        assert small_targets(page, "[data-liveness=lost]") == []
        shot(page, "19-runner-lost")
        assert axe(page, "runner-lost") == []
        # Stop is right there: the runner's lease has lapsed, so the gateway
        # ends the turn itself (`interrupted`, then turn_end) without waiting
        # for a reaper
        lost.get_by_role("button", name="Stop").click()
        expect(turn.locator(".alert.warn")).to_contain_text("Interrupted", timeout=15_000)
        expect(turn.locator(".foot")).to_contain_text("interrupted")
        expect(page.locator("[data-liveness]")).to_have_count(0)
        expect(page.get_by_role("button", name="Send")).to_be_visible()
        shot(page, "20-interrupted")
    finally:
        stack.runner.signal(signal.SIGCONT)


# ------------------------------------------------------------------ notifications

# Records every notification the page shows (the page's own Notification and the
# service worker registration's), lets the test say whether the page is hidden
# (window.__setHidden; sessionStorage `__hidden` carries it over a reload), and
# counts permission requests. PERM: null (the browser's answer) or a pretended one.
OBSERVE = """
(() => {
  window.__notes = [];
  window.__asked = 0;
  window.__perm = PERM;
  const Real = window.Notification;
  class Recorded {
    constructor(title, options = {}) {
      window.__notes.push({ via: 'page', title, body: options.body || '', tag: options.tag || '' });
      this.onclick = null;
    }
    close() {}
    static get permission() { return window.__perm || (Real ? Real.permission : 'default'); }
    static requestPermission() { window.__asked++; return Promise.resolve(Recorded.permission); }
  }
  window.Notification = Recorded;
  if (window.ServiceWorkerRegistration) {
    ServiceWorkerRegistration.prototype.showNotification = function (title, options = {}) {
      window.__notes.push({ via: 'sw', title, body: options.body || '', tag: options.tag || '' });
      return Promise.resolve();
    };
  }
  let hidden = sessionStorage.getItem('__hidden') === '1';
  Object.defineProperty(Document.prototype, 'hidden', { configurable: true, get: () => hidden });
  Object.defineProperty(Document.prototype, 'visibilityState', { configurable: true, get: () => (hidden ? 'hidden' : 'visible') });
  window.__setHidden = (h) => {
    hidden = h;
    sessionStorage.setItem('__hidden', h ? '1' : '0');
    document.dispatchEvent(new Event('visibilitychange'));
  };
})();
"""


def observe(page, perm: str | None = None) -> None:
    page.add_init_script(OBSERVE.replace("PERM", f"'{perm}'" if perm else "null"))


def notes(page) -> list[dict]:
    return page.evaluate("() => window.__notes")


def test_permission_is_asked_on_the_first_prompt_never_on_load(stack, context_factory):
    stack.api.script(text("One."), text("Two."))
    page = context_factory().new_page()
    observe(page, "default")  # not decided yet
    open_app(page)
    page.wait_for_timeout(500)
    assert page.evaluate("() => window.__asked") == 0
    send(page, "first")
    expect(page.locator("article.turn .foot")).to_contain_text("Done", timeout=30_000)
    assert page.evaluate("() => window.__asked") == 1
    send(page, "second")
    expect(page.locator("article.turn .foot").nth(1)).to_contain_text("Done", timeout=30_000)
    assert page.evaluate("() => window.__asked") == 1  # asked once; the Sessions sheet has the toggle
    page.get_by_role("button", name="Sessions").click()
    expect(page.get_by_role("dialog", name="Sessions").get_by_role("button", name="Notify me")).to_be_visible()


def test_a_hidden_page_is_notified_of_a_turn_end_and_an_approval_request(stack, context_factory):
    stack.api.script(
        text("Checked: all fine.", first_delay=3),
        tool_use(TOOL, {"verb": "cycle"}, delay=0.0, first_delay=2), text("Cycled; the VM is back."),
    )
    ctx = context_factory(permissions=["notifications"])
    page = ctx.new_page()
    observe(page)
    open_app(page)
    assert page.evaluate("() => Notification.permission") == "granted"
    send(page, "is the vm ok?")
    expect(page.locator("article.turn")).to_have_count(1)
    page.evaluate("() => window.__setHidden(true)")
    page.wait_for_function("() => window.__notes.some(n => n.title === 'breakglass: done')", timeout=30_000)
    done = next(n for n in notes(page) if n["title"] == "breakglass: done")
    assert "is the vm ok?" in done["body"]
    assert done["tag"].startswith("turn:")

    # visible: no notification for the next turn's end
    page.evaluate("() => window.__setHidden(false)")
    expect(page.locator("article.turn .foot")).to_contain_text("Done")
    before = len(notes(page))
    send(page, "the vm is wedged, fix it")
    expect(page.locator("article.turn")).to_have_count(2)
    page.evaluate("() => window.__setHidden(true)")
    page.wait_for_function("() => window.__notes.some(n => n.title === 'breakglass: approve cycle?')", timeout=40_000)
    approval = next(n for n in notes(page) if n["title"] == "breakglass: approve cycle?")
    assert approval["tag"].startswith("approval:")
    assert len(notes(page)) == before + 1
    page.evaluate("() => window.__setHidden(false)")
    page.locator("section.approval").get_by_role("button", name="Deny").click()
    expect(page.locator("article.turn").nth(1).locator(".foot")).to_be_visible(timeout=60_000)
    assert len(notes(page)) == before + 1  # the page was visible when that turn ended

    # a reload replays the history: nothing is notified for it
    page.evaluate("() => window.__setHidden(true)")
    page.reload()
    assert page.evaluate("() => document.hidden") is True
    expect(page.locator(LIVE)).to_be_visible()
    expect(page.locator("article.turn")).to_have_count(2)
    page.wait_for_timeout(1000)
    assert notes(page) == []


def test_with_a_service_worker_the_notification_is_the_workers(stack, context_factory):
    stack.api.script(text("Done quickly.", first_delay=2))
    page = context_factory(service_workers="allow", permissions=["notifications"]).new_page()
    observe(page)
    open_app(page)
    assert page.evaluate("() => navigator.serviceWorker.ready.then(() => true)") is True
    send(page, "quick check")
    expect(page.locator("article.turn")).to_have_count(1)
    page.evaluate("() => window.__setHidden(true)")
    page.wait_for_function("() => window.__notes.length > 0", timeout=30_000)
    assert [(n["via"], n["title"]) for n in notes(page)] == [("sw", "breakglass: done")]
