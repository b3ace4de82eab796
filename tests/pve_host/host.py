"""A simulated Proxmox host for the forced command (deploy/pve-host).

A `PveHost` is one simulated host in a temporary directory: the script
installed as it would be (a copy, mode 0755), its config file, and a bin/
with the fake `qm` (tests/fake_qm/qm), a fake `sudo` and a fake `logger`
that record every call in bin/qm-state/. The directory is 0755 and the state
directory belongs to the account the script runs as, because over ssh that is
the sshd test account, not the test process.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "pve-host" / "breakglass-pve"
FAKE_QM = REPO / "tests" / "fake_qm" / "qm"
HERE = Path(__file__).resolve().parent

VMID = "102"
FORENSICS = [f"status {VMID}", f"config {VMID}", f"pending {VMID}", f"monitor {VMID}", f"guest cmd {VMID} ping"]
EX_REFUSED, EX_TEMPFAIL, EX_CONFIG = 64, 75, 78


@dataclass
class PveHost:
    dir: Path
    uid: int

    @property
    def script(self) -> Path:
        return self.dir / "breakglass-pve"

    @property
    def conf(self) -> Path:
        return self.dir / "breakglass-pve.conf"

    @property
    def bin(self) -> Path:
        return self.dir / "bin"

    @property
    def state(self) -> Path:
        return self.bin / "qm-state"

    @property
    def forced_command(self) -> str:
        return shlex.join([str(self.script), str(self.conf)])

    def configure(self, **settings: str | int | None) -> None:
        """Write the config file: test defaults, overridden (None drops a key)."""
        values: dict[str, str | int | None] = {
            "VMID": VMID,
            "QM": str(self.bin / "qm"),
            "SUDO": str(self.bin / "sudo"),
            "LOGGER": str(self.bin / "logger"),
            "STOP_WAIT": 3,
            "FORENSICS_TIMEOUT": 5,
        }
        values.update(settings)
        text = "# written by tests/pve_host/conftest.py\n\n"
        text += "".join(f"{k}={v}\n" for k, v in values.items() if v is not None)
        self.conf.write_text(text)
        self.conf.chmod(0o644)

    def knob(self, name: str, value: str | int) -> None:
        path = self.state / name
        path.write_text(f"{value}\n")
        os.chown(path, self.uid, -1)

    def _lines(self, name: str) -> list[str]:
        path = self.state / name
        return path.read_text().splitlines() if path.exists() else []

    def calls(self) -> list[str]:
        """Every `qm` call so far, arguments joined by spaces."""
        return self._lines("calls")

    def sudo_calls(self) -> list[str]:
        return self._lines("sudo-calls")

    def syslog(self) -> list[str]:
        return self._lines("syslog")

    def monitor_input(self) -> list[str]:
        return self._lines("monitor-input")

    def vm(self, vmid: str | int | None = None) -> str:
        """running | stopped of the first VM, or of `vmid` (fake qm's status.<vmid>)."""
        path = self.state / ("status" if vmid is None or str(vmid) == VMID else f"status.{vmid}")
        return path.read_text().strip() if path.exists() else "running"

    def run(
        self,
        command: str | bytes | None,
        *,
        args: list[str] | None = None,
        user: int | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run the script directly, as sshd would: SSH_ORIGINAL_COMMAND set
        (None: unset, as for a login without a command), little else."""
        environ: dict[str, str | bytes] = {"SSH_CLIENT": "192.0.2.7 50022 22", **(env or {})}
        if command is not None:
            environ["SSH_ORIGINAL_COMMAND"] = command
        argv = [str(self.script)] + ([str(self.conf)] if args is None else args)
        return subprocess.run(
            argv, env=environ, input=b"", capture_output=True, timeout=timeout, user=user, cwd="/"
        )  # type: ignore[call-overload]


def make_host(uid: int) -> PveHost:
    d = Path(tempfile.mkdtemp(prefix="breakglass-pve-host-"))
    d.chmod(0o755)
    host = PveHost(dir=d, uid=uid)
    host.bin.mkdir(mode=0o755)
    shutil.copyfile(SCRIPT, host.script)
    host.script.chmod(0o755)
    for src, name in ((FAKE_QM, "qm"), (HERE / "fake_sudo", "sudo"), (HERE / "fake_logger", "logger")):
        shutil.copyfile(src, host.bin / name)
        (host.bin / name).chmod(0o755)
    host.state.mkdir(mode=0o755)
    os.chown(host.state, uid, -1)
    host.configure()
    return host
