"""Key isolation with `breakglass up` running (SPEC §2): scan every process
of the system except pve-executor for the Proxmox key's material and path
(environment, command line, open files). None may hold either."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.cli.proc import children, wait_for
from tests.cli.test_up import ready, services

MARKER = "BREAKGLASS-TEST-PVE-KEY-MATERIAL"


def descendants(pid: int) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    frontier = [pid]
    while frontier:
        for child, argv in children(frontier.pop()).items():
            found[child] = argv
            frontier.append(child)
    return found


def exposure(pid: int, key: Path) -> list[str]:
    """Where this process holds the key's path or material, if anywhere."""
    hits = []
    proc = Path(f"/proc/{pid}")
    try:
        environ = (proc / "environ").read_bytes()
        cmdline = (proc / "cmdline").read_bytes()
        fds = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return hits
    for where, blob in (("environment", environ), ("command line", cmdline)):
        if str(key).encode() in blob or MARKER.encode() in blob or b"BREAKGLASS_PVE_KEY" in blob:
            hits.append(where)
    if any(str(key) == target for target in fds):
        hits.append("an open file")
    return hits


def test_only_pve_executor_holds_the_proxmox_key(start_up, tmp_path):
    key = tmp_path / "secrets" / "pve_key"
    key.parent.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", MARKER, "-f", str(key)], check=True)
    up = start_up(BREAKGLASS_PVE_KEY_FILE=str(key), BREAKGLASS_PVE_HOST="127.0.0.1",
                  BREAKGLASS_PVE_KNOWN_HOSTS=str(tmp_path / "known_hosts"))
    pids = services(up)
    wait_for(lambda: ready(f"http://127.0.0.1:{up.env['BREAKGLASS_PORT']}"), 15, "/ready")
    everyone = descendants(up.proc.pid)
    executors = [pid for pid, argv in everyone.items() if "pve_executor" in argv]  # a restarted one has a new pid
    others = [pid for pid in everyone if pid not in executors]
    assert len(others) >= 3  # nats-server, gateway, agent-runner (and their helpers)
    leaks = {pid: (everyone[pid][:3], exposure(pid, key)) for pid in others if exposure(pid, key)}
    assert leaks == {}
    assert any(exposure(pid, key) for pid in executors)  # the scan does see a key where there is one
    up.proc.terminate()
    up.wait()
