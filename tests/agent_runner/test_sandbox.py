"""The agent's sandbox, run for real (bubblewrap): what a command inside can
see, read, write and signal. The whole-system attempts of an injected agent
are in tests/security/test_hostile_agent.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agent_runner import sandbox
from agent_runner.sandbox import Mounts, Sandbox, Unavailable
from tests.fakeapi.cli import NPM_CLI

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed (scripts/test-deps.sh)")


def session(data: Path) -> tuple[Path, list[Path]]:
    root = data / "sessions" / "s1"
    dirs = [root / "home", root / "work", root / "tmp"]
    for path in dirs:
        path.mkdir(parents=True, exist_ok=True)
    root.chmod(0o711)
    return root, dirs


def run_in(box: Sandbox, root: Path, dirs: list[Path], script: str, files: dict[Path, int] | None = None):
    box.hand_over(*dirs)
    args = box.argv(["sh", "-c", script], Mounts(root=root, writable=tuple(dirs), files=files or {}), dirs[1])
    return subprocess.run(args, capture_output=True, text=True, timeout=60, pass_fds=tuple((files or {}).values()),
                          env={"PATH": "/usr/bin:/bin", "HOME": str(dirs[0])})


@needs_bwrap
def test_inside_only_the_workspace_is_writable_and_the_rest_of_the_data_is_gone(tmp_path):
    data = tmp_path / "data"
    root, dirs = session(data)
    (data / "nats").mkdir()
    (data / "nats" / "credentials.json").write_text("PASSWORD")
    (data / "sessions" / "other").mkdir()
    (tmp_path / "beside").write_text("beside the data dir")
    box = sandbox.make(data, str(NPM_CLI), home=os.environ.get("HOME"))
    done = run_in(box, root, dirs, f"""
        id -u; ls /proc | grep -c '^[0-9]'
        cat {data}/nats/credentials.json 2>&1; ls {data}/sessions
        cat {tmp_path}/beside 2>&1
        echo hi > {dirs[1]}/w && echo wrote-work
        echo x > {root}/planted 2>&1 || echo no-write-root
        echo x > /usr/planted 2>&1 || echo no-write-usr
        test -x {NPM_CLI} && echo cli-visible""")
    out = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr
    assert (out[0] != "0") == (os.geteuid() == 0)  # root hands the box to breakglass-agent
    assert int(out[1]) <= 4, "processes of the machine are visible"
    assert "PASSWORD" not in done.stdout and "No such file" in out[2]
    assert out[3] == "s1"  # only the way to this session
    assert "No such file" in out[4]  # /tmp is covered
    assert out[5:] == ["wrote-work", "no-write-root", "no-write-usr", "cli-visible"], out


@needs_bwrap
def test_the_devvm_key_is_the_one_secret_inside_and_read_only(tmp_path):
    data = tmp_path / "data"
    root, dirs = session(data)
    key = tmp_path / "keys" / "devvm_key"
    key.parent.mkdir()
    key.write_text("KEY")
    key.chmod(0o600)
    box = sandbox.make(data, str(NPM_CLI))
    with open(key, "rb") as f:
        done = run_in(box, root, dirs, f"cat {key}; echo; echo x >> {key} 2>/dev/null || echo read-only; ls {key.parent}",
                      files={key: f.fileno()})
    assert done.stdout.split() == ["KEY", "read-only", "devvm_key"], done.stderr


@needs_bwrap
def test_sigint_to_the_group_reaches_the_command_and_spares_bwrap(tmp_path):
    """Stop sends SIGINT to the process group: the CLI inside must get it and
    end cleanly, so bwrap itself must not die of it first."""
    import signal

    data = tmp_path / "data"
    root, dirs = session(data)
    box = sandbox.make(data, str(NPM_CLI))
    box.hand_over(*dirs)
    # Like the CLI (node), the command sets its own handler; a shell could not trap what it was born ignoring.
    script = ("import signal, sys, time\n"
              "signal.signal(signal.SIGINT, lambda *_: (print('got-int', flush=True), sys.exit(7)))\n"
              "print('ready', flush=True)\n"
              "time.sleep(30)\n")
    args = box.argv(["/usr/bin/python3", "-c", script], Mounts(root=root, writable=tuple(dirs)), dirs[1])
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert proc.stdout.readline().strip() == "ready"
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(10) == 7
        assert proc.stdout.read().strip() == "got-int"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_no_bwrap_is_one_line_saying_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without bubblewrap
    with pytest.raises(Unavailable, match="bubblewrap .* is not installed") as caught:
        sandbox.make(tmp_path, "claude")
    assert "\n" not in str(caught.value)


def test_directories_made_inside_a_cover_can_be_entered_by_the_agent(tmp_path):
    box = Sandbox(bwrap="bwrap", hide=(Path("/srv/checkout"),), readable=(Path("/srv/checkout/.venv"),),
                  data_dir=Path("/srv/checkout/.data"), agent=(999, 999))
    mounts = Mounts(root=Path("/srv/checkout/.data/sessions/s"), writable=(Path("/srv/checkout/.data/sessions/s/work"),))
    args = box.argv(["true"], mounts, Path("/srv/checkout/.data/sessions/s/work"))
    text = " ".join(args)
    assert "--perms 0755 --tmpfs /srv/checkout" in text
    assert text.index("--ro-bind /srv/checkout/.venv") < text.index("--tmpfs /srv/checkout/.data")  # data hidden last
    assert "--perms 0755 --dir /srv/checkout/.data/sessions --ro-bind /srv/checkout/.data/sessions/s" in text
    assert args[args.index("--") + 1] == "setpriv" and "--reuid=999" in args and "--unshare-user" not in args
    unprivileged = Sandbox(bwrap="bwrap", hide=(), readable=(), data_dir=Path("/d"), agent=None)
    args = unprivileged.argv(["true"], Mounts(root=Path("/d/s"), writable=()), Path("/d/s"))
    assert "--unshare-user" in args and "setpriv" not in args


@needs_bwrap
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to become another user")
def test_an_unprivileged_operator_gets_the_same_box_through_a_user_namespace():
    """The runner as an ordinary user (here: nobody): no uid to drop to, so the
    box is a user namespace of that uid, and the covers keep its files away."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="breakglass-operator-") as top:  # pytest's tmp is root's only
        os.chmod(top, 0o755)
        _as_an_operator(Path(top) / "data")


def _as_an_operator(data: Path) -> None:
    root, dirs = session(data)
    (data / "nats").mkdir()
    (data / "nats" / "credentials.json").write_text("PASSWORD")
    for path in (data, *data.rglob("*")):
        os.chown(path, 65534, 65534)
    box = sandbox.make(data, str(NPM_CLI))
    operator = Sandbox(bwrap=box.bwrap, hide=box.hide, readable=(), data_dir=box.data_dir, agent=None)
    script = f"cat {data}/nats/credentials.json 2>&1; ls /proc | grep -c '^[0-9]'; echo hi > {dirs[1]}/w && echo wrote"
    args = operator.argv(["sh", "-c", script], Mounts(root=root, writable=tuple(dirs)), dirs[1])
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *args],
                          capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert "No such file" in out[0] and int(out[1]) <= 4 and out[2] == "wrote", out
    assert (data / "nats" / "credentials.json").stat().st_uid == 65534  # its own file, hidden all the same
