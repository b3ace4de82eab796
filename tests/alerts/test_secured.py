"""The triage under NATS users and permissions (eventbus.access): each
service as its own user, so the gateway's alert state (KV `alerts.*`), the
verbs, the read-only turn and the diagnosis all pass the matrix."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.alerts.conftest import kinds, post_webhook, wait_for
from tests.alerts.rig import webhook
from tests.fakeapi import text
from tests.security.nats_rig import Secured, start_secured


@pytest.fixture
def secured_server(tmp_path) -> Iterator[Secured]:
    (tmp_path / "secured").mkdir()
    server = start_secured(tmp_path / "secured")
    try:
        yield server
    finally:
        server.server.stop()


@pytest.fixture
def urls(secured_server) -> Callable[[str], str]:
    return secured_server.url


async def test_a_triage_runs_with_each_service_as_its_own_user(stack, pve_executor, operator):
    stack.api.script(text("Checked.\n\nThe guest kernel panicked; cycle it."))
    answer = await post_webhook(stack, webhook(("DevVmDown", "abcd0001", "firing")))
    assert answer.status_code == 200, answer.text
    [sid] = answer.json()["triages"]
    seen = await wait_for(operator, sid, lambda s: any(e["kind"] == "diagnosis" for e in s))
    [diagnosis] = kinds(seen, "diagnosis")
    assert diagnosis["summary"] == "The guest kernel panicked; cycle it." and diagnosis["outcome"] == "ok"
    assert {(e["verb"], e["phase"]) for e in kinds(seen, "verb")} >= {("status", "done"), ("forensics", "done")}
    again = await post_webhook(stack, webhook(("DevVmDown", "abcd0001", "firing")))
    assert again.json()["recorded"] == 0 and again.json()["triages"] == []
