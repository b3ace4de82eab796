"""The forced-command contract through a real OpenSSH sshd.

The key in authorized_keys carries `command="breakglass-pve CONF",restrict`:
whatever the client sends arrives as one string in SSH_ORIGINAL_COMMAND (so
`reset; rm -rf /` is one refused request, not a reset and a deletion), the
script's exit code comes back to the client, and the host key is pinned on
the client side. The big refusal corpus runs without ssh in test_script.py.
"""

from __future__ import annotations

import subprocess
import time

import asyncssh
import pytest

from tests import sshd
from tests.pve_host.host import EX_REFUSED, FORENSICS, VMID, PveHost

EXPECTED = {
    "status": [f"status {VMID}"],
    "forensics": FORENSICS,
    "reset": FORENSICS + [f"reset {VMID}"],
    "stop": FORENSICS + [f"stop {VMID} --timeout 45"],
    "start": FORENSICS + [f"start {VMID}"],
    "cycle": FORENSICS + [f"stop {VMID} --timeout 45", f"status {VMID}", f"start {VMID}"],
}


def _through_sudo_if_not_root(server: sshd.Sshd, host: PveHost) -> None:
    if server.user == "root":
        assert host.sudo_calls() == []
    else:
        assert host.sudo_calls() == [f"-n {host.bin / 'qm'} {call}" for call in host.calls()]


@pytest.mark.parametrize("verb", list(EXPECTED))
def test_each_verb_over_ssh_calls_qm_with_exactly_the_expected_arguments(sshd_server, ssh_host: PveHost, verb):
    if verb == "start":
        ssh_host.knob("status", "stopped")
    res = sshd_server.run(verb)
    assert res.returncode == 0, (res, sshd_server.log()[-2000:])
    assert ssh_host.calls() == EXPECTED[verb]
    _through_sudo_if_not_root(sshd_server, ssh_host)
    assert ssh_host.syslog()[0] == f"-t breakglass-pve -p auth.notice request verb={verb} vm={VMID} from=127.0.0.1"
    if verb != "status":
        out = res.stdout.decode()
        assert out.startswith(f"### forensics vm {VMID}")
        assert verb == "forensics" or out.index("### end of forensics") < out.index(f"### {verb} vm {VMID}")


REFUSED_OVER_SSH = [
    "reset; rm -rf /",
    "status && reboot",
    "status | sh",
    "$(reboot)",
    "`reboot`",
    "status\nreset",
    "status\n",
    "status extra",
    "status 101",
    " status",
    "",
    "ѕtatus",
    "../../../../usr/sbin/qm status 102",
    "x" * 10240,
]


@pytest.mark.parametrize("command", REFUSED_OVER_SSH, ids=lambda c: repr(c)[:40])
def test_injections_over_ssh_are_refused_and_qm_is_never_called(sshd_server, ssh_host: PveHost, command):
    res = sshd_server.run(command)
    assert res.returncode == EX_REFUSED, (res, sshd_server.log()[-2000:])
    assert res.stderr.startswith(b"refused: ")
    assert res.stdout == b""
    assert ssh_host.calls() == [] and ssh_host.sudo_calls() == []


def test_the_whole_command_line_arrives_as_one_string(sshd_server, ssh_host: PveHost):
    res = sshd_server.run("reset; rm -rf /")
    assert res.returncode == EX_REFUSED
    assert res.stderr.decode().startswith('refused: "reset; rm -rf /" is not a verb')
    assert ssh_host.syslog() == ['-t breakglass-pve -p auth.warning refused from=127.0.0.1 request="reset; rm -rf /"']


def test_several_arguments_are_joined_by_the_client_and_still_refused(sshd_server, ssh_host: PveHost):
    res = subprocess.run(sshd_server.ssh_argv("status") + ["extra"], capture_output=True, timeout=60)
    assert res.returncode == EX_REFUSED and b'"status extra"' in res.stderr
    assert ssh_host.calls() == []


def test_a_login_without_a_command_is_refused(sshd_server, ssh_host: PveHost):
    res = sshd_server.run(None)
    assert res.returncode == EX_REFUSED
    assert res.stderr.startswith(b"refused: no command given; send exactly one of: status forensics")
    assert ssh_host.calls() == []


def test_a_failing_start_exit_code_comes_back_through_ssh(sshd_server, ssh_host: PveHost):
    ssh_host.knob("status", "stopped")
    ssh_host.knob("fail_start", 7)
    res = sshd_server.run("start")
    assert res.returncode == 7
    assert f"fake qm: start {VMID} failed".encode() in res.stderr
    assert ssh_host.calls()[-1] == f"start {VMID}"


def test_cycle_of_a_running_vm_with_a_slow_stop_stops_then_starts(sshd_server, ssh_host: PveHost):
    ssh_host.knob("delay_stop", 1)
    started = time.monotonic()
    res = sshd_server.run("cycle")
    assert res.returncode == 0, res
    assert time.monotonic() - started >= 1
    assert ssh_host.calls()[5:] == [f"stop {VMID} --timeout 45", f"status {VMID}", f"start {VMID}"]
    assert ssh_host.vm() == "running"


def test_a_cycle_finishes_even_when_the_client_goes_away_mid_way(sshd_server, ssh_host: PveHost):
    """An executor timeout or a dropped link must not leave the VM stopped."""
    ssh_host.knob("delay_stop", 2)
    client = subprocess.Popen(
        sshd_server.ssh_argv("cycle"), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        while f"stop {VMID} --timeout 45" not in ssh_host.calls():
            assert time.monotonic() < deadline, "the stop never started"
            time.sleep(0.05)
        client.kill()  # the client vanishes while qm stop is still running
        client.wait(10)
        while f"start {VMID}" not in ssh_host.calls():
            assert time.monotonic() < deadline, ("the cycle did not finish", ssh_host.calls())
            time.sleep(0.05)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(10)
    deadline = time.monotonic() + 10
    while ssh_host.vm() != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ssh_host.vm() == "running"


async def test_asyncssh_with_the_pinned_host_key_gets_output_and_exit_codes(sshd_server, ssh_host: PveHost):
    """What pve-executor does: asyncssh, its own key, the host key pinned."""
    async with asyncssh.connect(
        sshd_server.host,
        sshd_server.port,
        username=sshd_server.user,
        client_keys=[str(sshd_server.client_key)],
        known_hosts=asyncssh.import_known_hosts(sshd_server.known_hosts),
        agent_path=None,
        config=[],
    ) as conn:
        ok = await conn.run("status", check=False)
        assert (ok.exit_status, ok.stdout) == (0, "status: running\n")
        refused = await conn.run("reset; rm -rf /", check=False)
        assert refused.exit_status == EX_REFUSED and refused.stderr.startswith("refused: ")
    assert ssh_host.calls() == [f"status {VMID}"]


async def test_a_changed_host_key_is_refused_before_any_command_runs(sshd_server, ssh_host: PveHost):
    impostor = sshd.start(ssh_host.forced_command, client_key=sshd_server.client_key, user=sshd_server.user)
    try:
        pinned = sshd.known_hosts_line(impostor.host, impostor.port, sshd_server.host_key)
        with pytest.raises(asyncssh.HostKeyNotVerifiable):
            async with asyncssh.connect(
                impostor.host,
                impostor.port,
                username=impostor.user,
                client_keys=[str(impostor.client_key)],
                known_hosts=asyncssh.import_known_hosts(pinned),
                agent_path=None,
                config=[],
            ):
                pass
        impostor.known_hosts_file.write_text(pinned)
        res = impostor.run("status")
        assert res.returncode == 255 and b"Host key verification failed" in res.stderr
    finally:
        impostor.stop()
    assert ssh_host.calls() == []
