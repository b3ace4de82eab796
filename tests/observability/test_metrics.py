"""Every service's metrics over a real turn and real verbs (issue #10).

One scrape of each service before, one after: an agent's turn that asks for
a `reset` (approved by the operator through the gateway, run by the real
pve-executor over sshd), and an operator's `status` pressed over HTTP. The
counters must have moved by exactly what happened; no label may carry an
id; no configured secret may appear anywhere in any scrape.
"""

from __future__ import annotations

import re

import httpx
import nats

from events import subjects
from tests.e2e.test_agent_verbs import answer_approval, has_approval, of, pve, start, turn_ended
from tests.fakeapi import text
from tests.sse import collect

from .scrape import Scrape, eventually, scrape

ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


async def scrape_all(observed, headers) -> list[Scrape]:  # type: ignore[no-untyped-def]
    return [await scrape(observed.gateway, headers), await scrape(observed.runner), await scrape(observed.executor)]


async def test_a_turn_and_verbs_move_every_services_counters(stack, client, observed):
    stack.api.script(pve("reset"), text("Reset done."))
    gateway0, runner0, executor0 = await scrape_all(observed, stack.headers)

    sid = await start(client, "the VM is wedged, reset it")
    async with client.stream("GET", f"/api/session/{sid}/stream") as attached:
        assert attached.status_code == 200
        await eventually(observed.gateway, lambda s: s.value("breakglass_sse_clients") >= 1, headers=stack.headers)
        frames = await collect(client, f"/api/session/{sid}/stream", until=has_approval, timeout=60)
        approval = of(frames, "approval")[0]
        assert await answer_approval(client, sid, approval["approval_id"], True) == {"accepted": True}
        frames = await collect(client, f"/api/session/{sid}/stream", until=turn_ended, timeout=60)
    assert of(frames, "turn_end")[0]["outcome"] == "ok"
    pressed = await client.post("/api/pve/status")
    assert pressed.status_code == 200, pressed.text

    runner = await eventually(observed.runner, lambda s: s.delta(runner0, "breakglass_turns_ended_total", outcome="ok"))
    executor = await eventually(
        observed.executor, lambda s: s.delta(executor0, "breakglass_verbs_total", verb="status", outcome="ok"),
    )
    requests = "breakglass_http_requests_total"
    streams = {"method": "GET", "route": "/api/session/{session_id}/stream", "status": "200"}
    gateway = await eventually(  # a stream is counted once it has ended
        observed.gateway, lambda s: s.value("breakglass_sse_clients") == 0 and s.delta(gateway0, requests, **streams) == 3,
        headers=stack.headers,
    )
    assert gateway.delta(gateway0, requests, method="POST", route="/api/session", status="200") == 1
    assert gateway.delta(gateway0, requests, method="POST", route="/api/session/{session_id}/prompt", status="202") == 1
    route = "/api/session/{session_id}/approval/{approval_id}"
    assert gateway.delta(gateway0, requests, method="POST", route=route, status="200") == 1
    assert gateway.delta(gateway0, requests, method="POST", route="/api/pve/{verb}", status="200") == 1
    assert gateway.delta(gateway0, "breakglass_replay_duration_seconds_count") == 3
    assert gateway.delta(gateway0, "breakglass_replay_events_sum") > 0
    assert gateway.delta(gateway0, "breakglass_replay_size_bytes_sum") > 0
    assert gateway.value("breakglass_nats_connected") == 1

    assert runner.delta(runner0, "breakglass_turns_started_total") == 1
    assert runner.delta(runner0, "breakglass_turns_ended_total", outcome="ok") == 1
    assert runner.delta(runner0, "breakglass_turn_duration_seconds_count", outcome="ok") == 1
    # The turn ran on the session's warm CLI (started when the session was
    # opened), or on a CLI started for it that then exited 0.
    warm = runner.delta(runner0, "breakglass_turn_cli_starts_total", start="warm")
    cold = runner.delta(runner0, "breakglass_turn_cli_starts_total", start="cold")
    assert warm + cold == 1
    assert runner.delta(runner0, "breakglass_cli_exits_total", code="0") == cold
    assert runner.delta(runner0, "breakglass_cli_line_to_append_seconds_count") >= 3  # init, tool, result...
    assert runner.delta(runner0, "breakglass_approvals_total", outcome="approved") == 1
    assert runner.value("breakglass_turns_running") == 0 and runner.value("breakglass_turn_oldest_running_seconds") == 0
    assert runner.value("breakglass_turn_timeout_seconds") == 1800
    assert runner.value("breakglass_nats_connected") == 1

    assert executor.delta(executor0, "breakglass_verbs_total", verb="reset", outcome="ok") == 1
    assert executor.delta(executor0, "breakglass_verbs_total", verb="status", outcome="ok") == 1
    assert executor.delta(executor0, "breakglass_verb_duration_seconds_count", verb="reset", outcome="ok") == 1
    assert executor.value("breakglass_nats_connected") == 1

    ids = {sid, approval["approval_id"], approval["request_id"], approval["turn_id"]}
    for service in (gateway0, runner0, executor0, gateway, runner, executor):
        assert not [v for v in service.label_values() if ID.search(v)], "an id as a label value"
        assert not [i for i in ids if i in service.text]
        assert_no_secret(service.text, observed.secrets)


async def test_poison_commands_are_counted_as_terminated(observed, nats_url):
    before = await scrape(observed.executor)
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().publish(subjects.VERB, b"{not a command")
    finally:
        await nc.close()
    after = await eventually(
        observed.executor,
        lambda s: s.delta(before, "breakglass_commands_terminated_total", consumer="pve-executor") == 1,
    )
    assert after.delta(before, "breakglass_commands_redelivered_total", consumer="pve-executor") == 0
    assert_no_secret(after.text, observed.secrets)


async def test_the_gateways_metrics_need_a_caller_like_the_api(stack, observed):
    async with httpx.AsyncClient(timeout=10) as c:
        assert (await c.get(observed.gateway)).status_code == 401
        assert (await c.get(observed.gateway, headers={"Authorization": "Bearer wrong"})).status_code == 401
        assert (await c.get(observed.gateway, headers=stack.headers)).status_code == 200


def assert_no_secret(text: str, secrets: list[str]) -> None:
    """Neither a secret nor any long line of one (a key's base64 body)."""
    for secret in secrets:
        pieces = [secret, *(line.strip() for line in secret.splitlines() if len(line.strip()) >= 16)]
        assert not [p for p in pieces if p and p in text], "a configured secret is in a scrape"
