"""`breakglass up` with its per-service NATS users, end to end: the real
services, the REAL Claude CLI (on the fake Messages API), the real
pve-executor over a real sshd to the shipped forced command. Every role does
its whole job under its own user and nothing is refused on the way, while
the agent's shell, which holds no credential, cannot even connect."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from breakglass import natsauth
from breakglass.natsd import free_port
from eventbus import access
from tests.cli.proc import Up, child_running, clean_env, environ_of, ready_up
from tests.fakeapi import FakeAnthropic, text, tool_use
from tests.fakeapi.cli import require_claude
from tests.pve_host.conftest import ssh_host as pve  # noqa: F401 - fixture
from tests.pve_host.conftest import sshd_server  # noqa: F401 - fixture
from tests.pve_host.host import VMID
from tests.sse import collect

REPO = Path(__file__).resolve().parents[2]
TOKEN = "secured-up-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
MODULES = {"gateway": "gateway", "agent-runner": "agent_runner", "pve-executor": "pve_executor"}

#: What the agent runs in its shell: a bare NATS handshake with no user, and
#: a look for any NATS URL in its environment.
PROBE = """python3 - <<'PY'
import os, socket
s = socket.create_connection(("127.0.0.1", PORT))
s.recv(4096)
s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\\r\\nPING\\r\\n')
print("NATS-SAYS", s.recv(4096).decode().strip())
print("ENV-HAS-NATS", any("nats" in v.lower() for v in os.environ.values()))
PY"""


@pytest.fixture
def api() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def up(tmp_path: Path, api: FakeAnthropic, sshd_server, pve) -> Iterator[Up]:  # noqa: F811
    claude = require_claude()
    port, nats_port = free_port(), free_port()
    env = clean_env(
        BREAKGLASS_DATA_DIR=str(tmp_path / "data"), BREAKGLASS_PORT=str(port), BREAKGLASS_NATS_PORT=str(nats_port),
        BREAKGLASS_API_TOKEN=TOKEN, BREAKGLASS_RUNNER_METRICS_PORT="0", BREAKGLASS_EXECUTOR_METRICS_PORT="0",
        BREAKGLASS_CLAUDE_BIN=str(claude), ANTHROPIC_BASE_URL=api.url, ANTHROPIC_API_KEY="test-key",
        CLAUDE_CODE_MAX_RETRIES="0",
        BREAKGLASS_PVE_HOST=sshd_server.host, BREAKGLASS_PVE_PORT=str(sshd_server.port),
        BREAKGLASS_PVE_USER=sshd_server.user, BREAKGLASS_PVE_KEY_FILE=str(sshd_server.client_key),
        BREAKGLASS_PVE_KNOWN_HOSTS=str(sshd_server.known_hosts_file), BREAKGLASS_PVE_VMID=VMID,
    )
    with ready_up(env, REPO) as running:
        yield running


def _frames_until(kind: str):  # type: ignore[no-untyped-def]
    return lambda frames: any(f.kind == kind for f in frames)


def _of(frames, kind: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return [f.json for f in frames if f.kind == kind]


async def test_every_service_does_its_job_under_its_own_user(up: Up, api: FakeAnthropic, pve, tmp_path: Path):  # noqa: F811
    data = Path(up.env["BREAKGLASS_DATA_DIR"])
    nats_port = up.env["BREAKGLASS_NATS_PORT"]

    # The credentials: the owner's only, and each service holds just its own.
    creds = natsauth.auth_dir(data) / natsauth.CREDENTIALS_FILE
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert stat.S_IMODE(creds.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((creds.parent / natsauth.CONFIG_FILE).stat().st_mode) == 0o600
    passwords = json.loads(creds.read_text())["users"]
    assert set(passwords) == set(access.ROLES) - {access.ADMIN}  # admin: one start's set-up only
    # ... and the server dropped it once the topology was set up: at run time no
    # user may create or change a stream (limits), and none may purge or delete.
    served = (creds.parent / natsauth.CONFIG_FILE).read_text()
    assert '"admin"' not in served and "STREAM.UPDATE" not in served and "STREAM.CREATE" not in served
    for role, module in MODULES.items():
        pid = child_running(up.proc.pid, module)
        assert pid is not None
        env = environ_of(pid)
        # Its own user, and its password as a 0600 file only: no password in any environment.
        assert env["BREAKGLASS_NATS_URL"] == natsauth.user_url(role, "127.0.0.1", int(nats_port))
        password_file = Path(env["BREAKGLASS_NATS_PASSWORD_FILE"])
        assert password_file.read_text().strip() == passwords[role]
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        leaked = [r for r in passwords if any(passwords[r] in v for v in env.values())]
        assert leaked == [], f"{role}'s environment holds the password of {leaked}"
    nats_pid = child_running(up.proc.pid, "nats-server")
    assert not any(p in " ".join(environ_of(nats_pid).values()) for p in passwords.values())  # config file only

    api.script(
        tool_use("Bash", {"command": PROBE.replace("PORT", nats_port)}),
        tool_use("mcp__breakglass__pve", {"verb": "reset"}),
        text("Reset after approval."),
    )
    async with httpx.AsyncClient(base_url=up.base, headers=HEADERS, timeout=60) as client:
        sid = (await client.post("/api/session")).json()["session_id"]
        answer = await client.post(f"/api/session/{sid}/prompt", json={"prompt": "the VM is wedged, reset it"})
        assert answer.status_code == 202, answer.text
        frames = await collect(client, f"/api/session/{sid}/stream", until=_frames_until("approval"), timeout=90)
        [approval] = _of(frames, "approval")
        decided = await client.post(f"/api/session/{sid}/approval/{approval['approval_id']}", json={"approve": True})
        assert decided.json() == {"accepted": True}  # the gateway's request, the runner's one answer
        frames = await collect(client, f"/api/session/{sid}/stream", until=_frames_until("turn_end"), timeout=90)

        # The agent's shell: no URL in its environment, and the server refuses it.
        shell = next(r for r in _of(frames, "tool_result") if "NATS-SAYS" in r["output"])["output"]
        assert "NATS-SAYS -ERR 'Authorization Violation'" in shell, shell
        assert "ENV-HAS-NATS False" in shell, shell
        # The agent's verb: runner -> executor (its own queue) -> sshd -> qm, the result back to the runner.
        phases = [(e["verb"], e["phase"]) for e in _of(frames, "verb")]
        assert ("reset", "approved") in phases and ("reset", "done") in phases, phases
        assert f"reset {VMID}" in pve.calls()
        assert _of(frames, "turn_end")[0]["outcome"] == "ok"

        # The operator's verb: gateway -> executor -> the gateway's reply subject.
        status = await client.post("/api/pve/status")
        assert status.status_code == 200 and status.json()["exit_code"] == 0, status.text
        # History: the gateway lists the KV bucket and reads the log.
        listed = (await client.get("/api/sessions")).json()
        assert sid in json.dumps(listed)

    # The auditor next to `up`: the reader's password from the data directory.
    env = clean_env(BREAKGLASS_DATA_DIR=str(data), BREAKGLASS_NATS_PORT=nats_port, NO_COLOR="1")
    sessions = subprocess.run([sys.executable, "-m", "breakglass", "sessions"], env=env, capture_output=True,
                              text=True, timeout=30)
    assert sessions.returncode == 0 and sid in sessions.stdout, sessions.stderr
    replay = subprocess.run([sys.executable, "-m", "breakglass", "replay", sid], env=env, capture_output=True,
                            text=True, timeout=30)
    assert replay.returncode == 0 and "power verb `reset`" in replay.stdout, replay.stderr
    # Every event the real services stored is its writer's to state, and the chain holds.
    exported = subprocess.run([sys.executable, "-m", "breakglass", "replay", sid, "--format", "jsonl"], env=env,
                              capture_output=True, text=True, timeout=30)
    writers = {json.loads(line).get("writer") for line in exported.stdout.splitlines()[1:]}
    assert writers == {"gateway", "agent-runner", "pve-executor"}, writers
    (tmp_path / "s.jsonl").write_text(exported.stdout)
    anchor = subprocess.run([sys.executable, "-m", "breakglass", "anchor", sid], env=env, capture_output=True,
                            text=True, timeout=30).stdout.strip()
    verified = subprocess.run([sys.executable, "-m", "breakglass", "verify", str(tmp_path / "s.jsonl"), "--anchor",
                               anchor], env=env, capture_output=True, text=True, timeout=30)
    assert verified.returncode == 0 and verified.stdout.startswith("OK"), verified.stdout + verified.stderr
    # ... and the URL an integrator (examples/notifier) runs with
    url = subprocess.run([sys.executable, "-m", "breakglass", "nats-url"], env=env, capture_output=True, text=True,
                         timeout=30)
    assert url.stdout.strip() == natsauth.url(access.READER, passwords[access.READER], "127.0.0.1", int(nats_port))

    os.killpg(up.proc.pid, signal.SIGINT)
    assert up.wait(30) == 0
    log = up.output()
    assert "violation" not in log.lower(), "a role was refused something its job needs"
    assert not any(p in log for p in passwords.values()), "a password reached the log"
