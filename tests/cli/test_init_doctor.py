"""`breakglass init` then `breakglass doctor`, against real parts: a real sshd
in front of the forced command and the fake `qm` (the Proxmox node), a second
real sshd (the devvm), a real nats-server, the real Claude Code CLI binary
and the fake Messages API. Then each link is broken in turn and doctor must
name that link, say what is wrong and how to fix it."""

from __future__ import annotations

import json
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from events.config import ConfigError, Env, layered_environ
from tests import sshd
from tests.cli.proc import clean_env, command
from tests.fakeapi import FakeAnthropic
from tests.fakeapi.cli import require_claude
from tests.pve_host.host import PveHost, make_host

REPO = Path(__file__).resolve().parents[2]


def fingerprint(pub: Path) -> str:
    """What the operator reads on the host: ssh-keygen's own fingerprint."""
    return subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout.split()[1]


@pytest.fixture(scope="module")
def pve() -> Iterator[tuple[sshd.Sshd, PveHost]]:
    reason = sshd.unavailable()
    if reason:
        pytest.skip(reason)
    server = sshd.start("/bin/false")
    host = make_host(pwd.getpwnam(server.user).pw_uid)
    yield server, host
    server.stop()
    shutil.rmtree(host.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def devvm() -> Iterator[sshd.Sshd]:
    server = sshd.start("/bin/false")
    yield server
    server.stop()


@pytest.fixture
def api() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


def breakglass(*args: str, env: dict[str, str], input: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command(), *args], env=env, cwd=REPO, capture_output=True, text=True, input=input,
                          timeout=120)  # fmt: skip


def init_args(data: Path, pve: tuple[sshd.Sshd, PveHost], devvm: sshd.Sshd, *extra: str) -> list[str]:
    server, _ = pve
    return [
        "init", "--yes", "--data-dir", str(data),
        "--pve-host", server.host, "--pve-port", str(server.port), "--pve-user", server.user, "--pve-vmid", "102",
        "--devvm-host", devvm.host, "--devvm-port", str(devvm.port), "--devvm-user", devvm.user,
        "--devvm-fingerprint", fingerprint(devvm.host_key.with_suffix(".pub")), *extra,
    ]  # fmt: skip


@pytest.fixture
def ready(tmp_path: Path, pve: tuple[sshd.Sshd, PveHost], devvm: sshd.Sshd, nats_url: str,
          api: FakeAnthropic) -> tuple[Path, dict[str, str]]:  # fmt: skip
    """`init` run non-interactively, its keys installed the way its output
    says, the streams set up: the state in which doctor must be all green."""
    server, host = pve
    host.configure()
    data = tmp_path / "data"
    env = clean_env(BREAKGLASS_NATS_URL=nats_url, BREAKGLASS_CLAUDE_BIN=str(require_claude()),
                    ANTHROPIC_BASE_URL=api.url, ANTHROPIC_API_KEY="test", BREAKGLASS_DATA_DIR=str(data))  # fmt: skip
    res = breakglass(*init_args(data, pve, devvm, "--pve-fingerprint", fingerprint(server.host_key.with_suffix(".pub"))),
                     env=env)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "pve-host-install.sh --apply" in res.stdout
    # What the installer puts on the node, with the test host's paths.
    server.authorized_keys.write_text(sshd.authorized_keys_line(host.forced_command, data / "keys" / "pve_ed25519"))
    devvm_pub = (data / "keys" / "devvm_ed25519.pub").read_text().strip()
    assert devvm_pub in res.stdout  # the line the operator is told to append
    devvm.authorized_keys.write_text(f"restrict {devvm_pub}\n")
    assert breakglass("setup", env=env).returncode == 0
    return data, env


def doctor(env: dict[str, str]) -> tuple[int, dict[str, dict[str, str]]]:
    res = breakglass("doctor", "--json", env=env)
    assert not res.stderr, res.stderr
    report = json.loads(res.stdout)
    assert report["ok"] == (res.returncode == 0)
    return res.returncode, {c["check"]: c for c in report["checks"]}


def test_init_then_doctor_is_green(ready: tuple[Path, dict[str, str]], devvm: sshd.Sshd) -> None:
    data, env = ready
    assert (data / "keys").stat().st_mode & 0o777 == 0o700
    for private in ("pve_ed25519", "devvm_ed25519"):
        assert (data / "keys" / private).stat().st_mode & 0o777 == 0o600
    assert (data / "config.toml").stat().st_mode & 0o777 == 0o600
    # doctor reads the settings from the file init wrote, not from flags.
    assert "BREAKGLASS_PVE_HOST" not in env
    rc, checks = doctor(env)
    assert {name: c["status"] for name, c in checks.items()} == {
        "nats": "ok", "claude-cli": "ok", "model-api": "ok", "clock": "ok", "devvm-ssh": "ok",
        "pve-forced-command": "ok", "pve-status": "ok", "data-dir": "ok",
        "sandbox": checks["sandbox"]["status"] if shutil.which("bwrap") is None else "ok",
    }  # fmt: skip
    assert rc == 0
    assert checks["devvm-ssh"]["summary"].endswith(f"logged in as {devvm.user}")
    assert "status: running" in checks["pve-status"]["summary"]
    text = breakglass("doctor", env=env)
    assert text.returncode == 0 and "ok   pve-status" in text.stdout


def _wrong_host_key(data: Path, env: dict[str, str], server: sshd.Sshd, host: PveHost) -> None:
    other = sshd.keypair(data / "other_host_key")
    (data / "known_hosts" / "pve").write_text(sshd.known_hosts_line(server.host, server.port, other))


def _wrong_devvm_host_key(data: Path, env: dict[str, str], server: sshd.Sshd, host: PveHost) -> None:
    other = sshd.keypair(data / "other_host_key")
    line = (data / "known_hosts" / "devvm").read_text().split()[0]
    (data / "known_hosts" / "devvm").write_text(f"{line} {sshd.public_key(other)}\n")


def _no_forced_command(data: Path, env: dict[str, str], server: sshd.Sshd, host: PveHost) -> None:
    server.authorized_keys.write_text(f"restrict {sshd.public_key(data / 'keys' / 'pve_ed25519')}\n")


def _missing_qm(data: Path, env: dict[str, str], server: sshd.Sshd, host: PveHost) -> None:
    host.configure(QM=str(host.bin / "no-such-qm"))


def _wrong_vmid(data: Path, env: dict[str, str], server: sshd.Sshd, host: PveHost) -> None:
    host.configure(VMID=103)


def _unreachable_api(data: Path, env: dict[str, str], server: sshd.Sshd, host: PveHost) -> None:
    env["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{sshd.free_port()}"


def _unwritable_data_dir(data: Path, env: dict[str, str], server: sshd.Sshd, host: PveHost) -> None:
    # Root ignores modes, so make the directory impossible to create instead.
    blocker = data.parent / "a-file"
    blocker.write_text("")
    env["BREAKGLASS_CONFIG"] = str(data / "config.toml")
    env["BREAKGLASS_DATA_DIR"] = str(blocker / "data")


@pytest.mark.parametrize(
    ("breaks", "check", "says", "fix"),
    [
        (_wrong_host_key, "pve-ssh", "host key other than the pinned one", "verify the host's key ON the host"),
        (_wrong_devvm_host_key, "devvm-ssh", "host key other than the pinned one", "--devvm-host"),
        (
            _no_forced_command,
            "pve-forced-command",
            "not bound to the forced command",
            'command="/usr/local/sbin/breakglass-pve',
        ),
        (_missing_qm, "pve-status", "no-such-qm is not executable", "install qm"),
        (_wrong_vmid, "pve-status", "qm does not know the configured VM", "VMID= in /etc/breakglass-pve.conf"),
        (_unreachable_api, "model-api", "cannot reach http://127.0.0.1", "ANTHROPIC_BASE_URL"),
        (_unwritable_data_dir, "data-dir", "is not writable", "BREAKGLASS_DATA_DIR"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
def test_each_broken_link_has_its_own_verdict(
    ready: tuple[Path, dict[str, str]],
    pve: tuple[sshd.Sshd, PveHost],
    breaks,
    check: str,
    says: str,
    fix: str,  # type: ignore[no-untyped-def]
) -> None:
    data, env = ready
    server, host = pve
    breaks(data, env, server, host)
    rc, checks = doctor(env)
    assert rc == 1, checks
    failed = {name for name, c in checks.items() if c["status"] == "fail"}
    assert check in failed, checks
    assert says in checks[check]["summary"], checks[check]
    assert fix in checks[check]["fix"], checks[check]
    # Only this link (and what depends on it) is red.
    assert failed <= {check, "pve-status"}, checks


def test_init_never_pins_a_key_nobody_vouched_for(
    tmp_path: Path, pve: tuple[sshd.Sshd, PveHost], devvm: sshd.Sshd
) -> None:
    server, _ = pve
    data = tmp_path / "data"
    env = clean_env()
    seen = fingerprint(server.host_key.with_suffix(".pub"))
    res = breakglass(*init_args(data, pve, devvm), env=env)
    assert res.returncode == 2
    assert f"--pve-fingerprint {seen}" in res.stderr and "Traceback" not in res.stderr
    assert not (data / "known_hosts" / "pve").exists() and not (data / "config.toml").exists()

    res = breakglass(*init_args(data, pve, devvm, "--pve-fingerprint", "SHA256:" + "A" * 43), env=env)
    assert res.returncode == 2 and "not the expected SHA256:AAAA" in res.stderr and seen in res.stderr
    assert not (data / "known_hosts" / "pve").exists()

    res = breakglass(*init_args(data, pve, devvm, "--accept-pve-host-key"), env=env)
    assert res.returncode == 0, res.stderr
    assert seen in res.stdout  # what was accepted is shown, for the operator to check
    assert (data / "known_hosts" / "pve").read_text() == server.known_hosts


def test_interactive_init_asks_before_pinning(tmp_path: Path, pve: tuple[sshd.Sshd, PveHost], devvm: sshd.Sshd) -> None:
    """On a terminal init asks; answering no pins nothing. (stdin is a pipe
    here, so --yes is left out and the prompts are answered on stdin.)"""
    from breakglass import init

    server, _ = pve
    data = tmp_path / "data"
    import argparse
    import io

    parser = argparse.ArgumentParser()
    init.add_parser(parser.add_subparsers())
    args = parser.parse_args(["init", "--data-dir", str(data)])
    answers = iter([server.host, str(server.port), server.user, "102", "no"])
    out = io.StringIO()
    monkey = pytest.MonkeyPatch()
    monkey.setattr("builtins.input", lambda prompt="": next(answers))
    monkey.setattr("sys.stdin.isatty", lambda: True, raising=False)
    try:
        with pytest.raises(init.InitError, match="not confirmed"):
            init.run(args, out=out)
    finally:
        monkey.undo()
    assert fingerprint(server.host_key.with_suffix(".pub")) in out.getvalue()
    assert not (data / "known_hosts" / "pve").exists()

    # Confirmed this time; no devvm (an empty answer skips it).
    answers = iter([server.host, str(server.port), server.user, "4242", "yes", "", ""])  # no devvm, no more VMs
    monkey.setattr("builtins.input", lambda prompt="": next(answers))
    monkey.setattr("sys.stdin.isatty", lambda: True, raising=False)
    try:
        assert init.run(args, out=out) == 0
    finally:
        monkey.undo()
    assert (data / "known_hosts" / "pve").read_text() == server.known_hosts
    settings = Env(layered_environ({"BREAKGLASS_CONFIG": str(data / "config.toml")}))
    assert settings.int("PVE_VMID", 102) == 4242 and settings.str("DEVVM_HOST") is None


def test_installer_shows_then_applies_then_changes_nothing(tmp_path: Path, pve: tuple[sshd.Sshd, PveHost],
                                                          devvm: sshd.Sshd) -> None:  # fmt: skip
    data = tmp_path / "data"
    assert breakglass(*init_args(data, pve, devvm, "--accept-pve-host-key", "--pve-vmid", "4242"),
                      env=clean_env()).returncode == 0  # fmt: skip
    root = tmp_path / "node"
    env = {"PATH": "/usr/bin:/bin", "BREAKGLASS_PVE_DESTDIR": str(root)}
    script = str(data / "pve-host-install.sh")
    shown = subprocess.run(["sh", script], env=env, capture_output=True, text=True, check=True).stdout
    assert "create     /usr/local/sbin/breakglass-pve" in shown and "--apply" in shown
    assert not root.exists()  # showing changes nothing
    applied = subprocess.run(["sh", script, "--apply"], env=env, capture_output=True, text=True, check=True).stdout
    assert "done: 4 change(s)" in applied
    assert "VMID=4242\n" in (root / "etc/breakglass-pve.conf").read_text()
    assert "/usr/sbin/qm stop 4242 --timeout 45" in (root / "etc/sudoers.d/breakglass-pve").read_text()
    assert (root / "etc/sudoers.d/breakglass-pve").stat().st_mode & 0o777 == 0o440
    keys = (root / "home" / pve[0].user / ".ssh/authorized_keys").read_text()
    assert keys.startswith('command="/usr/local/sbin/breakglass-pve /etc/breakglass-pve.conf",restrict ssh-ed25519 ')
    again = subprocess.run(["sh", script], env=env, capture_output=True, text=True, check=True).stdout
    assert "nothing to change" in again


def test_settings_file_is_under_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('BREAKGLASS_PVE_HOST = "from-file"\nBREAKGLASS_PVE_VMID = 103\nBREAKGLASS_MODEL = "opus"\n')
    merged = layered_environ({"BREAKGLASS_DATA_DIR": str(tmp_path), "BREAKGLASS_PVE_HOST": "from-env"})
    env = Env(merged)
    assert env.str("PVE_HOST") == "from-env"
    assert env.int("PVE_VMID", 102) == 103
    assert (
        layered_environ({"BREAKGLASS_DATA_DIR": str(tmp_path), "BREAKGLASS_CONFIG": "none"}).get("BREAKGLASS_MODEL")
        is None
    )
    config.write_text("OTHER = 1\n")
    with pytest.raises(ConfigError, match="not a BREAKGLASS_"):
        layered_environ({"BREAKGLASS_DATA_DIR": str(tmp_path)})
    config.write_text("BREAKGLASS_X = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        layered_environ({"BREAKGLASS_DATA_DIR": str(tmp_path)})


def test_first_recovery_under_up(ready: tuple[Path, dict[str, str]], pve: tuple[sshd.Sshd, PveHost], start_up) -> None:  # type: ignore[no-untyped-def]
    """README's "Your first recovery": init, `up` (which reads only the
    settings file for the links), doctor green next to it, `status` pressed."""
    import urllib.request

    from tests.cli.proc import environ_of, wait_for
    from tests.cli.test_up import MODULES, ready as answers, services

    data, env = ready
    _, host = pve
    links = {k: v for k, v in env.items() if k.startswith(("ANTHROPIC_", "BREAKGLASS_CLAUDE_BIN"))}
    up = start_up(BREAKGLASS_DATA_DIR=str(data), BREAKGLASS_API_TOKEN="t", **links)
    wait_for(lambda: answers(up.base), 15, "GET /ready to answer 200")
    doctor_env = {k: v for k, v in env.items() if k != "BREAKGLASS_NATS_URL"}
    doctor_env["BREAKGLASS_NATS_PORT"] = up.env["BREAKGLASS_NATS_PORT"]
    rc, checks = doctor(doctor_env)
    assert rc == 0, checks
    assert checks["nats"]["status"] == "ok"

    gateway, runner, executor = (environ_of(pid) for pid in (services(up)[m] for m in MODULES))
    assert executor["BREAKGLASS_PVE_KEY_FILE"] == str(data / "keys" / "pve_ed25519")
    assert "BREAKGLASS_PVE_KEY_FILE" not in gateway and "BREAKGLASS_PVE_KEY_FILE" not in runner
    assert runner["BREAKGLASS_DEVVM_HOST"] and "BREAKGLASS_DEVVM_HOST" not in executor
    assert {e["BREAKGLASS_CONFIG"] for e in (gateway, runner, executor)} == {"none"}

    before = host.calls().count("status 102")
    press = urllib.request.Request(f"{up.base}/api/pve/status", data=b"{}", method="POST",
                                   headers={"Authorization": "Bearer t", "Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(press, timeout=60) as answer:
        body = json.loads(answer.read())
    assert body == {"verb": "status", "exit_code": 0, "stdout": "status: running\n", "stderr": "", "rejected": False, "lost": False}
    assert host.calls().count("status 102") == before + 1


def test_the_walkthrough_uses_only_commands_that_exist() -> None:
    """Every `breakglass ...` line of README's "Your first recovery" parses."""
    import shlex

    from breakglass.cli import build_parser

    text = (REPO / "README.md").read_text()
    section = text.split("### Your first recovery", 1)[1].split("\n### ", 1)[0]
    joined = section.replace("\\\n", " ")
    lines = [
        line.split("#", 1)[0].strip() for line in joined.splitlines() if line.strip().startswith(".venv/bin/breakglass")
    ]
    assert {shlex.split(line)[1] for line in lines} >= {"init", "doctor"}
    for line in lines:
        build_parser().parse_args(shlex.split(line)[1:])


def test_a_broken_settings_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("BREAKGLASS_PVE_HOST = \n")
    res = breakglass("doctor", env=clean_env(BREAKGLASS_DATA_DIR=str(tmp_path)))
    assert res.returncode == 1 and "FAIL settings" in res.stdout and "not valid TOML" in res.stdout
    res = breakglass("logs", env=clean_env(BREAKGLASS_DATA_DIR=str(tmp_path)))
    assert res.returncode == 2 and "Traceback" not in res.stderr and "not valid TOML" in res.stderr
    res = breakglass("doctor", env=clean_env(BREAKGLASS_CONFIG=str(tmp_path / "absent.toml")))
    assert "BREAKGLASS_CONFIG names" in res.stdout and res.returncode == 1


def test_a_refused_credential_and_a_wrong_clock_are_named(ready: tuple[Path, dict[str, str]], api: FakeAnthropic) -> None:
    from tests.fakeapi import error

    _, env = ready
    api.script(error(401, "invalid x-api-key", "authentication_error"))
    rc, checks = doctor(env)
    assert rc == 1 and checks["model-api"]["status"] == "fail"
    assert "refused the credential (HTTP 401)" in checks["model-api"]["summary"]
    assert "ANTHROPIC_API_KEY" in checks["model-api"]["fix"]

    api.script(error(529, "overloaded", "overloaded_error", Date="Mon, 01 Jan 2024 00:00:00 GMT"))
    rc, checks = doctor(env)
    assert checks["model-api"]["status"] == "ok"  # reached, credential not refused
    assert rc == 1 and checks["clock"]["status"] == "fail" and "off the API's" in checks["clock"]["summary"]


def test_init_with_two_vms_then_doctor_checks_each(tmp_path: Path, pve: tuple[sshd.Sshd, PveHost], devvm: sshd.Sshd,
                                                   nats_url: str, api: FakeAnthropic) -> None:  # fmt: skip
    """Two VMs on one node (both behind the real sshd and the fake qm): init
    lists them in the config, the installer's VMIDS and sudoers; doctor asks
    `status VMID` of each and logs in to each devvm; a VM the node's script
    does not list is named with its fix."""
    server, host = pve
    host.knob("vmid", "102 103")
    host.configure(VMIDS="102 103")
    try:
        _two_vms(tmp_path, pve, devvm, nats_url, api)
    finally:  # the node is shared by the module's tests
        host.knob("vmid", "102")
        host.configure()


def _two_vms(tmp_path: Path, pve: tuple[sshd.Sshd, PveHost], devvm: sshd.Sshd, nats_url: str,
             api: FakeAnthropic) -> None:  # fmt: skip
    server, host = pve
    data = tmp_path / "data"
    env = clean_env(BREAKGLASS_NATS_URL=nats_url, BREAKGLASS_CLAUDE_BIN=str(require_claude()),
                    ANTHROPIC_BASE_URL=api.url, ANTHROPIC_API_KEY="test", BREAKGLASS_DATA_DIR=str(data))  # fmt: skip
    shell = f"{devvm.user}@{devvm.host}:{devvm.port}"
    vouched = fingerprint(devvm.host_key.with_suffix(".pub"))
    res = breakglass(*init_args(data, pve, devvm, "--pve-fingerprint", fingerprint(server.host_key.with_suffix(".pub")),
                                "--vm", f"name=web,vmid=102,node=pve1,devvm={shell},fingerprint={vouched}",
                                "--vm", f"name=db,vmid=103,node=pve1,devvm={shell},fingerprint={vouched}"), env=env)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "VMs: web (102), db (103)" in res.stdout
    installer = (data / "pve-host-install.sh").read_text()
    assert "VMIDS=102 103\n" in installer and "/usr/sbin/qm start 103" in installer and "VMID=102\n" in installer
    settings = Env(layered_environ({"BREAKGLASS_CONFIG": str(data / "config.toml")}))
    from events import vms

    assert [(vm.name, vm.vmid, vm.node) for vm in vms.from_env(settings).vms] == [("web", 102, "pve1"), ("db", 103, "pve1")]
    assert (data / "known_hosts" / "devvm").read_text().count("\n") == 1  # one host: pinned once
    server.authorized_keys.write_text(sshd.authorized_keys_line(host.forced_command, data / "keys" / "pve_ed25519"))
    devvm.authorized_keys.write_text(f"restrict {(data / 'keys' / 'devvm_ed25519.pub').read_text().strip()}\n")
    assert breakglass("setup", env=env).returncode == 0

    rc, checks = doctor(env)
    for name in ("pve-status:web", "pve-status:db", "devvm-ssh:web", "devvm-ssh:db"):
        assert checks[name]["status"] == "ok", checks[name]
    assert checks["pve-status:db"]["summary"].startswith("VM 103: status: running")
    assert rc == 0

    host.configure(VMIDS="102")  # the node was installed for one VM only
    before = host.calls().count("status 103")
    rc, checks = doctor(env)
    assert rc == 1 and checks["pve-status:web"]["status"] == "ok"
    db = checks["pve-status:db"]
    assert db["status"] == "fail" and "not in its VMIDS" in db["summary"] and "installer" in db["fix"]
    assert host.calls().count("status 103") == before  # the refused request never reached qm
