"""The host's forced command, run directly (no ssh): fast, for the big corpus.

sshd hands the script the client's command as SSH_ORIGINAL_COMMAND and
nothing else of the client's; these tests do the same. The same contract
through a real sshd is in test_forced_command.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.pve_host.host import EX_CONFIG, EX_REFUSED, EX_TEMPFAIL, FORENSICS, REPO, VMID, PveHost, make_host

# Everything that must be refused before `qm` is ever called.
INJECTIONS: list[str | bytes | None] = [
    None,  # no command at all (a login shell was asked for)
    "",
    " ",
    "\t",
    "\n",
    "status ",
    " status",
    "status\n",
    "\nstatus",
    "status\r",
    "status\r\n",
    "STATUS",
    "Status",
    "status extra",
    "status  102",
    "status 0102",
    "status 102 ",
    "status 102 102",
    "status -102",
    "status +102",
    "status 1e3",
    "status 101",
    "status 1000000000",
    "reset 101",
    "stop --skiplock",
    "start --timeout 1",
    "status;reset",
    "status; rm -rf /",
    "reset; rm -rf /",
    "status && reboot",
    "status || reboot",
    "status | sh",
    "status & reboot",
    "status\nreset",
    "status\nrm -rf /",
    "$(reboot)",
    "status$(reboot)",
    "`reboot`",
    "status`reboot`",
    "${IFS}status",
    "status${IFS}extra",
    "'status'",
    '"status"',
    "stat\\us",
    "status\\",
    "*",
    "?",
    "st*",
    "[s]tatus",
    "statu?",
    "../status",
    "./status",
    "/usr/sbin/qm",
    "../../../../usr/sbin/qm status 102",
    "status/../reset",
    "qm status 102",
    "sh -c status",
    "-h",
    "--help",
    "help",
    "forensic",
    "forensicss",
    "cyc1e",
    "ѕtatus",  # Cyrillic dze
    "stаtus",  # Cyrillic a
    "ｓｔａｔｕｓ",  # fullwidth
    "status\u200b",  # zero-width space
    "re\u00adset",  # soft hyphen
    "\ufeffstatus",  # byte-order mark
    "status\u2028",  # line separator
    b"status\xff",  # not UTF-8
    b"\xc0\xafstatus",  # overlong slash
    "\x1b[2Jstatus",  # terminal escape
    "x" * 10240,
    "status" * 2000,
    "status " + "A" * 10240,
    "status;" + "B" * 10240,
]


def _id(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@pytest.mark.parametrize("command", INJECTIONS, ids=_id)
def test_anything_but_a_bare_verb_is_refused_and_qm_is_never_called(pve_host: PveHost, command):
    res = pve_host.run(command)
    assert res.returncode == EX_REFUSED, res
    assert res.stderr.startswith(b"refused: "), res.stderr
    assert len(res.stderr) < 400  # a 10 KB request is not echoed back
    assert res.stdout == b""
    assert pve_host.calls() == []
    assert pve_host.sudo_calls() == []
    [entry] = pve_host.syslog()
    assert entry.startswith("-t breakglass-pve -p auth.warning refused from=192.0.2.7 request=")
    assert entry.isprintable() and len(entry) < 300


def test_a_nul_byte_cannot_even_reach_the_script(pve_host: PveHost):
    with pytest.raises(ValueError):
        pve_host.run("status\x00reset")


def test_refused_before_config_is_read(pve_host: PveHost):
    """A refusal never depends on the host's config: even a broken one."""
    pve_host.conf.write_text("VMID=oops\n")
    res = pve_host.run("status; reboot")
    assert res.returncode == EX_REFUSED and pve_host.calls() == []


@pytest.mark.parametrize(
    ("verb", "initial", "expected", "final"),
    [
        ("status", "running", [f"status {VMID}"], "running"),
        ("forensics", "running", FORENSICS, "running"),
        ("reset", "running", FORENSICS + [f"reset {VMID}"], "running"),
        ("stop", "running", FORENSICS + [f"stop {VMID} --timeout 45"], "stopped"),
        ("start", "stopped", FORENSICS + [f"start {VMID}"], "running"),
        ("cycle", "running", FORENSICS + [f"stop {VMID} --timeout 45", f"status {VMID}", f"start {VMID}"], "running"),
    ],
)
def test_each_verb_calls_qm_with_exactly_these_arguments(pve_host: PveHost, verb, initial, expected, final):
    pve_host.knob("status", initial)
    res = pve_host.run(verb)
    assert res.returncode == 0, res
    assert pve_host.calls() == expected
    assert pve_host.vm() == final
    assert pve_host.sudo_calls() == []  # root calls qm directly
    assert pve_host.syslog() == [
        f"-t breakglass-pve -p auth.notice request verb={verb} vm={VMID} from=192.0.2.7",
        f"-t breakglass-pve -p auth.notice done verb={verb} vm={VMID} exit=0",
    ]


def test_status_prints_what_qm_prints(pve_host: PveHost):
    res = pve_host.run("status")
    assert res.stdout == b"status: running\n" and res.stderr == b""


@pytest.mark.parametrize("verb", ["reset", "stop", "start", "cycle"])
def test_forensics_are_printed_before_every_mutation(pve_host: PveHost, verb):
    if verb == "start":
        pve_host.knob("status", "stopped")
    res = pve_host.run(verb)
    assert res.returncode == 0, res
    out = res.stdout.decode()
    assert out.startswith(f"### forensics vm {VMID} on ")
    assert out.index("### end of forensics") < out.index(f"### {verb} vm {VMID}")
    for call in FORENSICS:
        assert f"--- qm {call}" in out
    assert "status: " in out and "memory: 8192" in out and "VM status: " in out
    agent = "VM 102 is not running" if verb == "start" else "QEMU guest agent is not running"
    assert f"ping\n{agent}\n[exit 255]\n" in out  # recorded, not fatal
    assert pve_host.monitor_input() == ["info status", "info block"]


def test_forensics_exit_code_is_that_of_qm_status(pve_host: PveHost):
    pve_host.knob("agent", "up")
    assert pve_host.run("forensics").returncode == 0
    pve_host.knob("fail_status", 3)
    res = pve_host.run("forensics")
    assert res.returncode == 3
    assert pve_host.calls()[-5:] == FORENSICS  # the other steps still ran


def test_a_failing_forensics_step_does_not_block_the_mutation(pve_host: PveHost):
    for sub in ("status", "config", "pending", "monitor", "guest"):
        pve_host.knob(f"fail_{sub}", 1)
    res = pve_host.run("reset")
    assert res.returncode == 0, res
    assert pve_host.calls() == FORENSICS + [f"reset {VMID}"]


def test_a_hung_forensics_step_is_cut_off_and_the_mutation_still_runs(pve_host: PveHost):
    pve_host.configure(FORENSICS_TIMEOUT=1)
    pve_host.knob("delay_monitor", 30)
    started = time.monotonic()
    res = pve_host.run("reset")
    assert time.monotonic() - started < 10
    assert res.returncode == 0, res
    assert b"[timed out after 1s]" in res.stdout
    assert pve_host.calls() == FORENSICS + [f"reset {VMID}"]


@pytest.mark.parametrize(
    ("verb", "knob", "initial"),
    [("start", "fail_start", "stopped"), ("reset", "fail_reset", "running"), ("stop", "fail_stop", "running")],
)
def test_a_failing_qm_exit_code_is_the_verbs_exit_code(pve_host: PveHost, verb, knob, initial):
    pve_host.knob("status", initial)
    pve_host.knob(knob, 7)
    res = pve_host.run(verb)
    assert res.returncode == 7
    assert f"fake qm: {verb} {VMID} failed".encode() in res.stderr
    assert pve_host.syslog()[-1] == f"-t breakglass-pve -p auth.warning failed verb={verb} vm={VMID} exit=7"


def test_qm_refusing_the_request_is_propagated(pve_host: PveHost):
    pve_host.knob("status", "stopped")
    res = pve_host.run("reset")
    assert res.returncode == 255 and b"VM 102 not running" in res.stderr


def test_cycle_waits_until_qm_reports_stopped(pve_host: PveHost):
    pve_host.knob("lag_stop", 1)  # `qm status` still says running once after the stop
    res = pve_host.run("cycle")
    assert res.returncode == 0, res
    assert pve_host.calls()[5:] == [f"stop {VMID} --timeout 45"] + [f"status {VMID}"] * 2 + [f"start {VMID}"]
    assert pve_host.vm() == "running"


def test_cycle_never_starts_a_vm_that_did_not_stop(pve_host: PveHost):
    pve_host.configure(STOP_WAIT=1)
    pve_host.knob("lag_stop", 100)
    res = pve_host.run("cycle")
    assert res.returncode == EX_TEMPFAIL
    assert b"still not stopped 1s after qm stop (exit 0); not starting it" in res.stderr
    assert f"start {VMID}" not in pve_host.calls()


def test_cycle_whose_stop_fails_reports_the_stop_exit_code(pve_host: PveHost):
    pve_host.configure(STOP_WAIT=1)
    pve_host.knob("fail_stop", 9)
    res = pve_host.run("cycle")
    assert res.returncode == 9
    assert f"start {VMID}" not in pve_host.calls()


def test_cycle_of_a_stopped_vm_starts_it(pve_host: PveHost):
    pve_host.knob("status", "stopped")
    res = pve_host.run("cycle")
    assert res.returncode == 0, res
    assert pve_host.calls()[5:] == [f"stop {VMID} --timeout 45", f"status {VMID}", f"start {VMID}"]


def test_cycle_with_a_failing_start_fails(pve_host: PveHost):
    pve_host.knob("fail_start", 4)
    res = pve_host.run("cycle")
    assert res.returncode == 4
    assert pve_host.calls()[-1] == f"start {VMID}"


def test_stop_timeout_comes_from_the_config(pve_host: PveHost):
    pve_host.configure(STOP_TIMEOUT=90)
    assert pve_host.run("stop").returncode == 0
    assert pve_host.calls()[-1] == f"stop {VMID} --timeout 90"


def test_the_vm_id_comes_from_the_config(pve_host: PveHost):
    pve_host.configure(VMID=4242)
    pve_host.knob("vmid", 4242)
    assert pve_host.run("status").returncode == 0
    assert pve_host.calls() == ["status 4242"]


def test_a_listed_vm_id_after_the_verb_picks_the_vm(pve_host: PveHost):
    """Many VMs: "VERB VMID" for any id of VMIDS; the bare verb is VMID's."""
    pve_host.configure(VMIDS="102 103")
    pve_host.knob("vmid", "102 103")
    assert pve_host.run("stop 103").returncode == 0
    assert pve_host.run("status").returncode == 0
    assert pve_host.run("status 102").returncode == 0
    assert pve_host.calls()[-3:] == ["stop 103 --timeout 45", "status 102", "status 102"]
    assert pve_host.vm(103) == "stopped" and pve_host.vm(102) == "running"
    assert "request verb=stop vm=103 from=192.0.2.7" in pve_host.syslog()[0]


def test_vmids_alone_makes_its_first_id_the_default(pve_host: PveHost):
    pve_host.configure(VMID=None, VMIDS="103 102")
    pve_host.knob("vmid", "102 103")
    assert pve_host.run("status").returncode == 0 and pve_host.calls() == ["status 103"]


@pytest.mark.parametrize("request_", ["status 104", "cycle 101", "reset 999999999", "stop 100"])
def test_a_vm_id_outside_vmids_is_refused_and_qm_is_never_called(pve_host: PveHost, request_: str):
    """The host's own allow-list: the last hop refuses what the first two let through."""
    pve_host.configure(VMIDS="102 103")
    pve_host.knob("vmid", "102 103 104 101 999999999 100")  # qm itself would act on them
    res = pve_host.run(request_)
    assert res.returncode == EX_REFUSED, res
    vmid = request_.split()[1]
    assert res.stderr.startswith(f"refused: VM {vmid} is not one this key may act on".encode()), res.stderr
    assert pve_host.calls() == [] and pve_host.sudo_calls() == []
    [entry] = pve_host.syslog()
    assert entry.startswith("-t breakglass-pve -p auth.warning refused from=192.0.2.7 request=")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"VMID": None}, "VMID is not set"),
        ({"VMID": ""}, "VMID is not set"),
        ({"VMID": "102; reboot"}, "VMID must be a number"),
        ({"VMID": "$(reboot)"}, "VMID must be a number"),
        ({"VMID": "0102"}, "VMID must be a number"),
        ({"VMID": "10"}, "VMID must be between"),
        ({"VMID": "1000000000"}, "VMID must be between"),
        ({"VMID": " 102"}, "VMID must be a number"),
        ({"QM": "qm"}, "QM must be an absolute path"),
        ({"QM": "/nonexistent/qm"}, "is not executable"),
        ({"STOP_TIMEOUT": "45s"}, "STOP_TIMEOUT must be"),
        ({"STOP_WAIT": "0"}, "STOP_WAIT must be"),
        ({"FORENSICS_TIMEOUT": "99999"}, "FORENSICS_TIMEOUT must be"),
        ({"LOGGER": "logger"}, "LOGGER must be"),
        ({"VMID ": "102"}, "unknown key"),
        ({"NOPE": "1"}, "unknown key"),
        ({"VMIDS": "103 104"}, "VMID=102 is not in VMIDS"),
        ({"VMIDS": "102 *"}, "VMIDS must be a number"),
        ({"VMIDS": "102 0103"}, "VMIDS must be a number"),
        ({"VMIDS": "102 10"}, "VMIDS must be between"),
        ({"VMIDS": "102,103"}, "VMIDS must be a number"),
        ({"VMIDS": "102 $(reboot)"}, "VMIDS must be a number"),
    ],
)
def test_a_broken_config_fails_closed(pve_host: PveHost, settings, message):
    pve_host.configure(**settings)
    res = pve_host.run("status")
    assert res.returncode == EX_CONFIG, res
    assert res.stderr.startswith(b"breakglass-pve: configuration error: ")
    assert message.encode() in res.stderr
    assert pve_host.calls() == []


def test_a_config_line_without_equals_fails_closed(pve_host: PveHost):
    pve_host.conf.write_text(f"VMID={VMID}\nQM={pve_host.bin / 'qm'}\nexport PATH\n")
    res = pve_host.run("status")
    assert res.returncode == EX_CONFIG and b":3: expected KEY=value" in res.stderr
    assert pve_host.calls() == []


def test_a_config_is_parsed_never_executed(pve_host: PveHost, tmp_path: Path):
    marker = tmp_path / "pwned"
    pve_host.conf.write_text(f"VMID=102\nQM={pve_host.bin / 'qm'}\nSTOP_WAIT=$(touch {marker})\n")
    res = pve_host.run("status")
    assert res.returncode == EX_CONFIG and not marker.exists()


def test_a_writable_config_is_not_trusted(pve_host: PveHost):
    pve_host.conf.chmod(0o666)
    res = pve_host.run("status")
    assert res.returncode == EX_CONFIG and b"group- or world-writable" in res.stderr
    assert pve_host.calls() == []


def test_a_missing_config_fails_closed(pve_host: PveHost):
    res = pve_host.run("status", args=[str(pve_host.dir / "missing.conf")])
    assert res.returncode == EX_CONFIG and b"cannot read config file" in res.stderr


def test_extra_arguments_in_the_forced_command_fail_closed(pve_host: PveHost):
    res = pve_host.run("status", args=[str(pve_host.conf), "extra"])
    assert res.returncode == EX_CONFIG and b"usage:" in res.stderr
    assert pve_host.calls() == []


def test_the_config_path_is_not_taken_from_the_environment(pve_host: PveHost):
    """Only the forced command's argument names the config, never a variable a client could send."""
    text = (REPO / "deploy" / "pve-host" / "breakglass-pve").read_text()
    assert "BREAKGLASS_PVE_CONF" not in text
    assert re.search(r"^\s*eval\b", text, re.M) is None
    assert re.search(r"^\s*\.\s", text, re.M) is None  # never sources a file


def test_a_missing_logger_does_not_fail_the_verb(pve_host: PveHost):
    pve_host.configure(LOGGER="/nonexistent/logger")
    assert pve_host.run("status").returncode == 0
    pve_host.configure(LOGGER="")
    assert pve_host.run("status").returncode == 0
    assert pve_host.syslog() == []


def test_the_script_uses_its_own_path_not_the_callers(pve_host: PveHost, tmp_path: Path):
    """A PATH (or IFS) in the environment does not change which tools run."""
    marker = tmp_path / "hijacked"
    trap = tmp_path / "bin"
    trap.mkdir()
    for tool in ("tr", "cut", "find", "id", "timeout", "uname", "date", "sleep", "logger", "sudo", "qm"):
        (trap / tool).write_text(f"#!/bin/sh\necho {tool} >> {marker}\n")
        (trap / tool).chmod(0o755)
    env = {"PATH": str(trap), "IFS": "s", "LC_ALL": "tr_TR.UTF-8", "ENV": str(trap / "qm")}
    assert pve_host.run("cycle", env=env).returncode == 0
    assert pve_host.run("status; x", env=env).returncode == EX_REFUSED
    assert not marker.exists()


@pytest.fixture
def nobody_host():
    if os.geteuid() != 0:
        pytest.skip("needs root to run the script as another account")
    host = make_host(65534)
    yield host
    shutil.rmtree(host.dir, ignore_errors=True)


def test_not_root_every_qm_call_goes_through_sudo_n(nobody_host: PveHost):
    """The recommended install: a dedicated account with sudo rights on exactly these qm calls."""
    res = nobody_host.run("cycle", user=65534)
    assert res.returncode == 0, res
    qm = nobody_host.bin / "qm"
    assert nobody_host.sudo_calls() == [f"-n {qm} {call}" for call in nobody_host.calls()]
    assert nobody_host.calls() == FORENSICS + [f"stop {VMID} --timeout 45", f"status {VMID}", f"start {VMID}"]


def test_not_root_without_sudo_fails_closed(nobody_host: PveHost):
    nobody_host.configure(SUDO="/nonexistent/sudo")
    res = nobody_host.run("status", user=65534)
    assert res.returncode == EX_CONFIG and b"SUDO=/nonexistent/sudo is not executable" in res.stderr
    assert nobody_host.calls() == []


SUDOERS = REPO / "deploy" / "pve-host" / "sudoers"


def _sudoers_commands() -> list[str]:
    text = "\n".join(line for line in SUDOERS.read_text().splitlines() if not line.lstrip().startswith("#"))
    return re.findall(r"/usr/sbin/qm ([a-z][a-z0-9 -]*?)\s*(?:,|\\|$)", text, re.M)


def test_the_shipped_sudoers_allows_exactly_the_calls_the_script_makes(pve_host: PveHost):
    allowed = _sudoers_commands()
    assert len(allowed) == len(set(allowed)) == 8
    for verb in ("status", "forensics", "reset", "stop", "start", "cycle"):
        assert pve_host.run(verb).returncode == 0
    assert set(pve_host.calls()) == set(allowed)


def test_the_shipped_sudoers_parses():
    visudo = shutil.which("visudo") or ("/usr/sbin/visudo" if os.path.exists("/usr/sbin/visudo") else None)
    if visudo is None:
        pytest.skip("visudo is not installed (package sudo)")
    res = subprocess.run([visudo, "-c", "-f", str(SUDOERS)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_shipped_example_config_and_authorized_keys_line_are_well_formed():
    deploy = REPO / "deploy" / "pve-host"
    conf = (deploy / "breakglass-pve.conf").read_text()
    keys = dict(line.split("=", 1) for line in conf.splitlines() if line and not line.startswith("#"))
    assert keys["VMID"] == VMID and keys["QM"] == "/usr/sbin/qm"
    line = (deploy / "authorized_keys").read_text().strip().splitlines()[-1]
    assert re.fullmatch(
        r'from="[^"]+",command="/usr/local/sbin/breakglass-pve /etc/breakglass-pve\.conf",restrict ssh-ed25519 \S+ \S+',
        line,
    ), line
