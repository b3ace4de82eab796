"""`python -m pve_executor`, configured from the environment only, as
`breakglass up` and compose run it: it answers, and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import time

from events.verbs import Verb
from tests.processes import Service, base_env
from tests.pve_executor.rig import request


def _start(nats_url, tmp_path, **extra):  # type: ignore[no-untyped-def]
    env = base_env(nats_url, tmp_path / "data", **extra)
    return Service("pve_executor", env, tmp_path / "pve-executor.log").start()


async def test_the_service_runs_verbs_with_settings_from_the_environment(nats_url, nc, js, topology, sshd_server,
                                                                         pve, tmp_path):
    service = _start(
        nats_url, tmp_path,
        BREAKGLASS_PVE_HOST=sshd_server.host, BREAKGLASS_PVE_PORT=str(sshd_server.port),
        BREAKGLASS_PVE_USER=sshd_server.user, BREAKGLASS_PVE_KEY_FILE=str(sshd_server.client_key),
        BREAKGLASS_PVE_KNOWN_HOSTS=str(sshd_server.known_hosts_file), BREAKGLASS_PVE_VMID="102",
    )
    try:
        answer = await request(nc, js, Verb.STATUS, timeout=20)
        assert (answer.result.exit_code, answer.result.stdout) == (0, "status: running\n"), service.log()
        assert pve.calls() == ["status 102"]
    finally:
        service.signal(signal.SIGTERM)
        started = time.monotonic()
        code = service.process.wait(10)  # type: ignore[union-attr]
    assert code == 0, service.log()
    assert time.monotonic() - started < 3
    assert "host key pinned by" in service.log()


async def test_unconfigured_the_service_starts_says_why_and_answers(nats_url, nc, js, topology, tmp_path):
    service = _start(nats_url, tmp_path)
    try:
        answer = await request(nc, js, Verb.CYCLE, timeout=20)
    finally:
        service.stop()
    assert (answer.result.exit_code, answer.result.rejected) == (78, True)
    assert "pve-executor is not configured: BREAKGLASS_PVE_HOST is unset" in service.log()


def test_a_bad_setting_stops_it_with_one_line(nats_url, tmp_path):
    service = _start(nats_url, tmp_path, BREAKGLASS_PVE_PORT="ssh")
    code = service.process.wait(10)  # type: ignore[union-attr]
    assert code == 2
    assert "BREAKGLASS_PVE_PORT must be a whole number" in service.log()
    assert "Traceback" not in service.log()
