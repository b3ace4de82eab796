"""A real OpenSSH sshd for tests: loopback, a free port, its own keys.

Why a real one: the forced-command contract (`command="...",restrict` in
authorized_keys, the client's command arriving verbatim in
SSH_ORIGINAL_COMMAND, the exit code coming back) is OpenSSH's behaviour, and
an in-process double does not reproduce it (asyncssh's server replaces the
command and sets no SSH_ORIGINAL_COMMAND). Plain Python, no pytest: any test
or tool can use it.

    from tests import sshd

    server = sshd.start('/path/to/script /path/to/conf')
    try:
        result = server.run("status")          # the `ssh` client, key and host key pinned
        server.set_forced_command("other")      # takes effect on the next connection
        asyncssh.connect(server.host, server.port, username=server.user,
                         client_keys=[str(server.client_key)],
                         known_hosts=asyncssh.import_known_hosts(server.known_hosts))
    finally:
        server.stop()

Needs /usr/sbin/sshd (Debian openssh-server, see scripts/test-deps.sh) and,
to log in an account other than the caller's, root. The login account:
`breakglass-test` when running as root and it exists (its shell is /bin/sh, so
no rc file slows each command down), otherwise the caller's own account
(root is allowed with `PermitRootLogin forced-commands-only`). Files the
account must read (authorized_keys, the forced command) live in a 0755
temporary directory; `stop()` removes it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SSH = shutil.which("ssh") or "/usr/bin/ssh"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
TEST_USER = "breakglass-test"
HOST = "127.0.0.1"


def unavailable() -> str | None:
    """Why a real sshd cannot run here, or None when it can."""
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is missing: run scripts/test-deps.sh (installs openssh-server)"
    for tool in (SSH, SSH_KEYGEN):
        if not os.access(tool, os.X_OK):
            return f"{tool} is missing (openssh-client)"
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        try:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        except OSError as exc:
            return f"/run/sshd is missing and cannot be created: {exc}"
    return None


def default_user() -> str:
    me = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(TEST_USER)
            return TEST_USER
        except KeyError:
            pass
    return me


def keypair(path: Path, comment: str = "breakglass-test") -> Path:
    """An ed25519 key pair at `path` and `path`.pub (no passphrase)."""
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path


def public_key(path: Path) -> str:
    """'TYPE BASE64' of a key pair (path to the private key or the .pub)."""
    pub = path if path.suffix == ".pub" else path.with_name(path.name + ".pub")
    kind, blob = pub.read_text().split()[:2]
    return f"{kind} {blob}"


def known_hosts_line(host: str, port: int, host_key: Path) -> str:
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {public_key(host_key)}\n"


def free_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


_penalties_supported: bool | None = None


def _supports_per_source_penalties(workdir: Path, host_key: Path) -> bool:
    # OpenSSH >= 9.8 penalises sources whose connections fail or never
    # authenticate (a client refusing a changed host key does exactly that),
    # which would make later connections in a test run fail; older versions
    # reject the keyword. Ask sshd itself, once.
    global _penalties_supported
    if _penalties_supported is None:
        probe = workdir / "probe_config"
        probe.write_text(f"HostKey {host_key}\nPerSourcePenalties no\n")
        res = subprocess.run([SSHD, "-t", "-f", str(probe)], capture_output=True)
        probe.unlink()
        _penalties_supported = res.returncode == 0
    return _penalties_supported


def authorized_keys_line(forced_command: str, client_key: Path, options: str = "restrict") -> str:
    if '"' in forced_command or "\n" in forced_command:
        raise ValueError("a forced command may not contain double quotes or newlines")
    return f'command="{forced_command}",{options} {public_key(client_key)} breakglass-test\n'


@dataclass
class Sshd:
    dir: Path
    port: int
    user: str
    host_key: Path
    client_key: Path
    config_file: Path
    log_file: Path
    authorized_keys: Path
    known_hosts_file: Path
    host: str = HOST
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    owns_dir: bool = field(default=False, repr=False)

    @property
    def known_hosts(self) -> str:
        """The pinned host key, in known_hosts format (`[127.0.0.1]:PORT TYPE KEY`)."""
        return known_hosts_line(self.host, self.port, self.host_key)

    def set_forced_command(self, forced_command: str, options: str = "restrict") -> None:
        """Replace the authorized_keys line; sshd reads it on each connection."""
        tmp = self.authorized_keys.with_name("authorized_keys.new")
        tmp.write_text(authorized_keys_line(forced_command, self.client_key, options))
        tmp.chmod(0o644)
        tmp.replace(self.authorized_keys)

    def ssh_argv(self, command: str | bytes | None = None, *options: str) -> list[str | bytes]:
        """argv for the OpenSSH client: our key only, the host key pinned, no tty.

        `command` travels as ONE argument, so the server receives it verbatim;
        None sends no command at all (a shell request).
        """
        argv: list[str | bytes] = [
            SSH, "-F", "/dev/null", "-T", "-p", str(self.port), "-l", self.user,
            "-i", str(self.client_key),
            "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.known_hosts_file}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "UpdateHostKeys=no", "-o", "CheckHostIP=no",
            "-o", "ConnectTimeout=10", "-o", "ControlMaster=no", "-o", "ControlPath=none",
            "-o", "LogLevel=ERROR",
            *options, self.host,
        ]  # fmt: skip
        if command is not None:
            argv += ["--", command]
        return argv

    def run(self, command: str | bytes | None, *, timeout: float = 60, input: bytes | None = None
            ) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
        """Run `command` over ssh; bytes out, never raises on a non-zero exit."""
        return subprocess.run(
            self.ssh_argv(command),
            input=input if input is not None else b"",
            capture_output=True,
            timeout=timeout,
        )

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Sshd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _config(s: Sshd, penalties: bool) -> str:
    lines = [
        f"Port {s.port}",
        f"ListenAddress {s.host}",
        f"HostKey {s.host_key}",
        f"PidFile {s.dir / 'sshd.pid'}",
        f"AuthorizedKeysFile {s.authorized_keys}",
        f"AllowUsers {s.user}",
        "StrictModes no",  # the key files live under a temp directory
        "UsePAM no",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin forced-commands-only",
        "PermitUserEnvironment no",
        "AllowTcpForwarding no",
        "AllowAgentForwarding no",
        "X11Forwarding no",
        "PermitTunnel no",
        "PrintMotd no",
        "UseDNS no",
        "LoginGraceTime 15",
        "MaxStartups 100:30:200",
        "LogLevel VERBOSE",
        # Tests only: skip the post-quantum hybrid key exchange (sntrup761),
        # which costs ~0.13 s of CPU per connection and proves nothing here.
        "KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256",
    ]
    if penalties:
        lines.append("PerSourcePenalties no")
    return "\n".join(lines) + "\n"


def start(
    forced_command: str,
    *,
    user: str | None = None,
    workdir: Path | None = None,
    host_key: Path | None = None,
    client_key: Path | None = None,
    options: str = "restrict",
    timeout: float = 10.0,
) -> Sshd:
    """Start sshd and wait until it listens. Raises RuntimeError with its log.

    host_key/client_key reuse existing key pairs (e.g. to restart with the
    same identity, or to present a different host key to a pinned client);
    by default both are generated. `workdir` defaults to a fresh 0755
    temporary directory that `stop()` removes.
    """
    reason = unavailable()
    if reason:
        raise RuntimeError(reason)
    owns = workdir is None
    d = Path(tempfile.mkdtemp(prefix="breakglass-sshd-")) if workdir is None else Path(workdir)
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o755)
    try:
        host_key = host_key or keypair(d / "ssh_host_ed25519_key", "breakglass-test-host")
        client_key = client_key or keypair(d / "client_ed25519", "breakglass-test-client")
        s = Sshd(
            dir=d,
            port=0,
            user=user or default_user(),
            host_key=Path(host_key),
            client_key=Path(client_key),
            config_file=d / "sshd_config",
            log_file=d / "sshd.log",
            authorized_keys=d / "authorized_keys",
            known_hosts_file=d / "known_hosts",
            owns_dir=owns,
        )
        s.set_forced_command(forced_command, options)
        penalties = _supports_per_source_penalties(d, s.host_key)
        for _attempt in range(5):
            s.port = free_port(s.host)
            s.config_file.write_text(_config(s, penalties))
            s.known_hosts_file.write_text(s.known_hosts)
            _launch(s, timeout)
            if s.alive():
                return s
            if "Address already in use" not in s.log():
                break
        raise RuntimeError(f"sshd did not start:\n{s.log()}")
    except BaseException:
        if owns:
            shutil.rmtree(d, ignore_errors=True)
        raise


def _launch(s: Sshd, timeout: float) -> None:
    with open(s.log_file, "wb") as log:
        s.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(s.config_file)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if s.proc.poll() is not None:
            return
        if "Server listening on" in s.log():  # printed after listen()
            return
        time.sleep(0.01)
    s.stop()
    raise RuntimeError(f"sshd did not listen within {timeout}s:\n{s.log()}")
