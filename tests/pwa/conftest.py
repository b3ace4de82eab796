"""Browser tests of the PWA against the real stack.

Debian's Chromium (never `playwright install`) driven by Python Playwright at
390×844 with mobile emulation; the gateway serves the committed build; real
NATS, the agent-runner with the REAL Claude Code CLI against the fake
Messages API, and pve-executor behind a real sshd running the shipped forced
command over a fake `qm` (when sshd is available; otherwise unconfigured, so
verbs are refused but still travel the whole path).

Screenshots go to test-artifacts/pwa/.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import expect

from breakglass.natsd import free_port
from tests import sshd
from tests.fakeapi import FakeAnthropic
from tests.fakeapi.cli import require_claude
from tests.processes import REPO, Service, base_env, runner_env as make_runner_env, stop_and_show
from tests.pve_host.host import PveHost, make_host
from tests.servers import wait_ready

CHROMIUM = os.environ.get("BREAKGLASS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts" / "pwa"
AXE = REPO / "frontend" / "node_modules" / "axe-core" / "axe.min.js"
TOKEN = "pwa-token"
MOBILE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 3,
    "is_mobile": True,
    "has_touch": True,
    "user_agent": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1"
    ),
}


# ------------------------------------------------------------------ the stack


@dataclass
class Stack:
    base: str
    headers: dict[str, str]
    api: FakeAnthropic
    gateway: Service
    runner: Service
    executor: Service
    gateway_env: dict[str, str]
    pve: PveHost | None
    runner_env: dict[str, str] = field(default_factory=dict)
    #: More services a test started (e.g. a second runner that reaps), stopped at the end.
    extras: list[Service] = field(default_factory=list)

    def restart_gateway(self, down_seconds: float = 0.0) -> None:
        import time

        self.gateway.stop()
        time.sleep(down_seconds)
        self.gateway = Service("gateway", self.gateway_env, self.gateway.log_path).start()
        wait_ready(self.base, timeout=20)


@pytest.fixture(scope="module")
def sshd_server() -> Iterator[sshd.Sshd | None]:
    """One real sshd per module for pve-executor, or None where sshd is missing."""
    if sshd.unavailable():
        yield None
        return
    server = sshd.start("/bin/false")
    yield server
    server.stop()


@pytest.fixture
def pve(sshd_server) -> Iterator[PveHost | None]:
    if sshd_server is None:
        yield None
        return
    host = make_host(pwd.getpwnam(sshd_server.user).pw_uid)
    sshd_server.set_forced_command(host.forced_command)
    yield host
    sshd_server.set_forced_command("/bin/false")
    shutil.rmtree(host.dir, ignore_errors=True)


@pytest.fixture
def stack_env() -> dict[str, str]:
    """Extra environment for the runner (a test may set the verb policy)."""
    return {}


@pytest.fixture
def gateway_extra_env() -> dict[str, str]:
    """Extra environment for the gateway and pve-executor (e.g. step-up on)."""
    return {}


@pytest.fixture
def vms_env() -> dict[str, str]:
    """Settings every service gets (a test may list several VMs: BREAKGLASS_VMS)."""
    return {}


@pytest.fixture
def stack(nats_url, tmp_path, sshd_server, pve, stack_env, gateway_extra_env, vms_env) -> Iterator[Stack]:
    claude_bin = str(require_claude())
    port = free_port()
    with FakeAnthropic() as api:
        gateway_env = base_env(
            nats_url, tmp_path / "gw", BREAKGLASS_PORT=str(port), BREAKGLASS_API_TOKEN=TOKEN,
            BREAKGLASS_KEEPALIVE_SECONDS="2", BREAKGLASS_VERB_WAIT_SECONDS="30", **gateway_extra_env, **vms_env,
        )
        runner_env = make_runner_env(nats_url, tmp_path / "runner", claude_bin, api.url, **{**vms_env, **stack_env})
        executor_extra: dict[str, str] = {}
        if sshd_server is not None and pve is not None:
            executor_extra = dict(
                BREAKGLASS_PVE_HOST=sshd_server.host, BREAKGLASS_PVE_PORT=str(sshd_server.port),
                BREAKGLASS_PVE_USER=sshd_server.user, BREAKGLASS_PVE_KEY_FILE=str(sshd_server.client_key),
                BREAKGLASS_PVE_KNOWN_HOSTS=str(sshd_server.known_hosts_file), BREAKGLASS_PVE_VMID="102",
            )
        executor_env = base_env(nats_url, tmp_path / "pve", **executor_extra, **gateway_extra_env, **vms_env)
        runner = Service("agent_runner", runner_env, tmp_path / "runner.log").start()
        executor = Service("pve_executor", executor_env, tmp_path / "pve-executor.log").start()
        gateway = Service("gateway", gateway_env, tmp_path / "gateway.log").start()
        stack = Stack(
            f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}, api,
            gateway, runner, executor, gateway_env, pve, runner_env,
        )
        try:
            wait_ready(stack.base, timeout=20)
            yield stack
        finally:
            for extra in stack.extras:
                extra.stop()
            stop_and_show({"runner": stack.runner, "pve-executor": stack.executor, "gateway": stack.gateway})


# ------------------------------------------------------------------ the browser


@pytest.fixture(scope="session", autouse=True)
def fresh_artifacts() -> None:
    """Screenshots and the axe summary of THIS run only."""
    if ARTIFACTS.exists():
        for old in [*ARTIFACTS.glob("*.png"), ARTIFACTS / "axe-summary.json"]:
            old.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test-deps.sh does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (requirements.lock; run make test)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def context_factory(browser, stack):
    made = []

    def make(*, token: bool = True, service_workers: str = "block", **extra):
        headers = {**(stack.headers if token else {}), **extra.pop("extra_http_headers", {})}
        ctx = browser.new_context(
            **MOBILE, base_url=stack.base, extra_http_headers=headers, bypass_csp=True,
            service_workers=service_workers, **extra,
        )
        ctx.set_default_timeout(20_000)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.close()


@pytest.fixture
def page(context_factory, request):
    ctx = context_factory()
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        shot(pg, f"FAILED-{request.node.name}")
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


# ------------------------------------------------------------------ helpers

#: The connection pill once the page's stream is live.
LIVE = "[data-state=live]"


def open_app(page, path: str = "/"):  # type: ignore[no-untyped-def]
    """The app at `path` once its stream is live: a press before that
    would race the first replay."""
    page.goto(path)
    expect(page.locator(LIVE)).to_be_visible()
    return page


def send(page, prompt: str) -> None:  # type: ignore[no-untyped-def]
    """A prompt as the operator sends one: typed, then Send pressed."""
    page.get_by_label("Message to the agent").fill(prompt)
    page.get_by_role("button", name="Send").click()


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


AXE_SUMMARY = ARTIFACTS / "axe-summary.json"


def axe(page, name: str) -> list[dict]:
    """Run axe-core in the page; returns the serious/critical violations and
    records a summary line per run in test-artifacts/pwa/axe-summary.json."""
    if not AXE.exists():
        pytest.skip(f"{AXE} is missing: run `npm ci` in frontend/")
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        """async () => {
            const r = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']}});
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ' :: ' + (n.failureSummary || '').slice(0, 200))}));
        }"""
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    summary = json.loads(AXE_SUMMARY.read_text()) if AXE_SUMMARY.exists() else {}
    summary[name] = {
        "violations": len(result),
        "serious_or_critical": sum(v["impact"] in ("serious", "critical") for v in result),
        "ids": sorted({f"{v['id']} ({v['impact']})" for v in result}),
    }
    AXE_SUMMARY.write_text(json.dumps(summary, indent=2, sort_keys=True))
    return [v for v in result if v["impact"] in ("serious", "critical")]
