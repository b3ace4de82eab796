"""The SSH hop against a real OpenSSH sshd: the pinned host key, the bare
verb, time limits, and whatever bytes the host sends back (SPEC §7, §9)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import time
from msgspec.structs import replace

import pytest

from events.verbs import Verb
from pve_executor.output import truncation_mark
from tests import sshd
from tests.pve_executor.rig import (
    audit_of, executor, other_known_hosts, request, script_dir, settings_for, write_script,
)

HOST_KEY_ERROR = ("host key verification failed for 127.0.0.1: the Proxmox host key does not match "
                  "BREAKGLASS_PVE_KNOWN_HOSTS")


async def test_a_changed_host_key_is_a_clear_error_and_nothing_runs(nats_url, nc, js, topology, sshd_server, pve):
    with script_dir() as d:
        known = other_known_hosts(d, sshd_server)
        async with executor(settings_for(nats_url, sshd_server, pve_known_hosts=str(known))):
            answers = [await request(nc, js, verb) for verb in (Verb.STATUS, Verb.CYCLE)]
    for answer in answers:
        assert (answer.result.exit_code, answer.result.rejected) == (255, True)
        assert answer.result.stderr.startswith(HOST_KEY_ERROR)
        assert answer.result.stdout == ""
        [done] = await audit_of(js, answer.command.request_id)  # `done` only: it never ran
        assert done.stderr.startswith(HOST_KEY_ERROR)
    assert pve.calls() == []
    assert pve.syslog() == []  # the forced command never ran


async def test_a_host_missing_from_known_hosts_is_not_trusted_either(nats_url, nc, js, topology, sshd_server, pve):
    """Pinned means listed: the right key under another host name does not count."""
    with script_dir() as d:
        empty = d / "known_hosts.empty"
        empty.write_text("# nobody\n")
        elsewhere = d / "known_hosts.elsewhere"
        elsewhere.write_text(f"pve.example.org {sshd.public_key(sshd_server.host_key)}\n")
        answers = []
        for known in (empty, elsewhere):
            async with executor(settings_for(nats_url, sshd_server, pve_known_hosts=str(known))):
                answers.append(await request(nc, js, Verb.STATUS))
    for answer in answers:
        assert (answer.result.exit_code, answer.result.rejected) == (255, True)
        assert answer.result.stderr.startswith(HOST_KEY_ERROR)
    assert pve.calls() == []


async def test_an_unreadable_known_hosts_file_refuses(nats_url, nc, js, topology, sshd_server, pve):
    async with executor(settings_for(nats_url, sshd_server, pve_known_hosts="/nonexistent/known_hosts")):
        answer = await request(nc, js, Verb.STATUS)
    assert (answer.result.exit_code, answer.result.rejected) == (78, True)
    assert answer.result.stderr.startswith("BREAKGLASS_PVE_KNOWN_HOSTS=/nonexistent/known_hosts cannot be read")
    assert pve.calls() == []


async def test_a_key_the_host_does_not_know_is_refused_clearly(nats_url, nc, js, topology, sshd_server, pve):
    with script_dir() as d:
        stranger = sshd.keypair(d / "stranger")
        async with executor(settings_for(nats_url, sshd_server, pve_key_file=str(stranger))):
            answer = await request(nc, js, Verb.STATUS)
    assert (answer.result.exit_code, answer.result.rejected) == (255, True)
    assert "refused the key" in answer.result.stderr
    assert pve.calls() == []


async def test_a_missing_key_file_is_a_configuration_error(nats_url, nc, js, topology, sshd_server, pve):
    async with executor(settings_for(nats_url, sshd_server, pve_key_file="/nonexistent/key")):
        answer = await request(nc, js, Verb.STATUS)
    assert (answer.result.exit_code, answer.result.rejected) == (78, True)
    assert answer.result.stderr.startswith("BREAKGLASS_PVE_KEY_FILE=/nonexistent/key cannot be used")


async def test_the_key_can_come_from_an_ssh_agent(nats_url, nc, js, topology, sshd_server, pve, tmp_path):
    agent_bin, add_bin = shutil.which("ssh-agent"), shutil.which("ssh-add")
    if not agent_bin or not add_bin:
        pytest.skip("ssh-agent is not installed")
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen([agent_bin, "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not sock.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        subprocess.run([add_bin, "-q", str(sshd_server.client_key)], env={"SSH_AUTH_SOCK": str(sock)},
                       check=True, capture_output=True)
        settings = settings_for(nats_url, sshd_server, pve_key_file=None, agent_socket=str(sock))
        async with executor(settings):
            answer = await request(nc, js, Verb.STATUS)
    finally:
        agent.terminate()
        agent.wait(5)
    assert (answer.result.exit_code, answer.result.stdout) == (0, "status: running\n")


async def test_a_slow_verb_times_out_with_124(nats_url, nc, js, topology, sshd_server, pve):
    pve.knob("delay_status", 4)
    async with executor(settings_for(nats_url, sshd_server, verb_timeout_seconds=1.0)):
        answer = await request(nc, js, Verb.STATUS)
    assert (answer.result.exit_code, answer.result.rejected) == (124, False)  # it did reach the host
    assert "timed out after 1 s" in answer.result.stderr
    assert 0.9 < answer.seconds < 3.0


async def test_a_host_that_never_answers_times_out_on_connect(nats_url, nc, js, topology, any_key):
    with socket.socket() as silent:  # accepts TCP, never speaks SSH
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        settings = replace(settings_for(nats_url), pve_host="127.0.0.1", pve_port=port, pve_known_hosts="/dev/null",
                           pve_key_file=str(any_key), connect_timeout_seconds=0.5)
        async with executor(settings):
            answer = await request(nc, js, Verb.STATUS)
    assert (answer.result.exit_code, answer.result.rejected) == (124, True)
    assert answer.result.stderr == f"could not connect to 127.0.0.1:{port}: timed out after 0.5 s"
    assert answer.seconds < 2.5


async def test_a_closed_port_is_a_clear_error(nats_url, nc, js, topology, any_key):
    port = sshd.free_port()
    settings = replace(settings_for(nats_url), pve_host="127.0.0.1", pve_port=port, pve_known_hosts="/dev/null",
                       pve_key_file=str(any_key))
    async with executor(settings):
        answer = await request(nc, js, Verb.STATUS)
    assert (answer.result.exit_code, answer.result.rejected) == (255, True)
    assert answer.result.stderr.startswith(f"could not connect to 127.0.0.1:{port}: ")


@pytest.fixture(scope="module")
def any_key():  # type: ignore[no-untyped-def]
    """A throwaway client key (for hosts that never get as far as auth)."""
    with script_dir() as d:
        yield sshd.keypair(d / "key")


# --- the forced command replaced by scripts that misbehave on purpose -------

ECHO = 'printf "%s" "$SSH_ORIGINAL_COMMAND"\n'


@pytest.mark.parametrize("verb", list(Verb))
async def test_the_command_sent_is_exactly_the_bare_verb(nats_url, nc, js, topology, sshd_server, verb):
    with script_dir() as d:
        sshd_server.set_forced_command(str(write_script(d, "echo", ECHO)))
        try:
            async with executor(settings_for(nats_url, sshd_server)):
                answer = await request(nc, js, verb)
        finally:
            sshd_server.set_forced_command("/bin/false")
    assert (answer.result.exit_code, answer.result.stdout, answer.result.stderr) == (0, verb.value, "")


async def test_huge_output_is_capped_and_marked(nats_url, nc, js, topology, sshd_server):
    body = ("head -c 3000000 /dev/zero | tr '\\000' 'x'\n"
            "head -c 500000 /dev/zero | tr '\\000' 'y' >&2\n"
            "exit 0\n")
    with script_dir() as d:
        sshd_server.set_forced_command(str(write_script(d, "huge", body)))
        try:
            async with executor(settings_for(nats_url, sshd_server, output_cap_bytes=65536)):
                answer = await request(nc, js, Verb.FORENSICS)
        finally:
            sshd_server.set_forced_command("/bin/false")
    r = answer.result
    assert r.exit_code == 0  # the host finished: it was drained, never blocked
    assert r.stdout == "x" * 65536 + truncation_mark(3_000_000 - 65536)
    assert r.stderr == "y" * 65536 + truncation_mark(500_000 - 65536)
    assert "[truncated: 2934464 bytes omitted]" in r.stdout
    [_, done] = await audit_of(js, answer.command.request_id)
    assert done.stdout == r.stdout and done.stderr == r.stderr


async def test_binary_and_non_utf8_output_is_decoded_with_replacements(nats_url, nc, js, topology, sshd_server):
    body = ("printf 'ok \\377\\376 caf\\303\\251 \\000nul \\033[31mred\\n'\n"
            "printf '\\200\\201 bad\\n' >&2\n"
            "head -c 300000 /dev/urandom\n"
            "exit 3\n")
    with script_dir() as d:
        sshd_server.set_forced_command(str(write_script(d, "binary", body)))
        try:
            async with executor(settings_for(nats_url, sshd_server, output_cap_bytes=4096)):
                answer = await request(nc, js, Verb.STATUS)
        finally:
            sshd_server.set_forced_command("/bin/false")
    r = answer.result
    assert (r.exit_code, r.rejected) == (3, False)
    assert r.stdout.startswith("ok \ufffd\ufffd café \x00nul \x1b[31mred\n")
    assert r.stdout.endswith(" bytes omitted]")
    assert r.stderr == "\ufffd\ufffd bad\n"
    [_, done] = await audit_of(js, answer.command.request_id)
    assert done.stdout == r.stdout  # stored and read back intact


async def test_a_command_killed_by_a_signal_is_not_success(nats_url, nc, js, topology, sshd_server):
    with script_dir() as d:
        # `exec`: the script itself is the session process, so sshd reports the signal
        sshd_server.set_forced_command("exec " + str(write_script(d, "killed", "echo partial\nkill -KILL $$\n")))
        try:
            async with executor(settings_for(nats_url, sshd_server)):
                answer = await request(nc, js, Verb.STATUS)
        finally:
            sshd_server.set_forced_command("/bin/false")
    r = answer.result
    assert r.exit_code != 0 and r.rejected is False
    assert r.stdout == "partial\n"
    assert r.exit_code == 128 + signal.SIGKILL
    assert r.stderr == "pve-executor: the command on the host was killed by signal SIGKILL"
