"""How the agent reaches the VM: `ssh devvm` resolves through an ssh config
written into the session's HOME, so the agent never needs (or sees) a host
name, user or key path in its prompt, and the host key is pinned."""

from __future__ import annotations

from dataclasses import dataclass

from events.vms import Vm


@dataclass(frozen=True)
class DevvmTarget:
    host: str
    port: int = 22
    user: str = "root"
    key_file: str | None = None
    known_hosts: str | None = None

    def ssh_config(self) -> str:
        lines = [
            "Host devvm",
            f"  HostName {self.host}",
            f"  Port {self.port}",
            f"  User {self.user}",
            "  BatchMode yes",
            "  ConnectTimeout 10",
            "  ServerAliveInterval 10",
            "  ServerAliveCountMax 3",
        ]
        if self.key_file:
            lines += [f"  IdentityFile {self.key_file}", "  IdentitiesOnly yes"]
        if self.known_hosts:
            lines += [f"  UserKnownHostsFile {self.known_hosts}", "  StrictHostKeyChecking yes"]
        return "\n".join(lines) + "\n"


def with_vm(system_prompt: str, vm: Vm, devvm: DevvmTarget | None) -> str:
    """The system prompt with the VM this session is repairing: its name,
    VMID and node, and whether `ssh devvm` reaches it (and as whom). The
    console knows many VMs; the agent must not guess which one it is on,
    and its verb tool acts on this one only."""
    where = f"VM {vm.name!r} (Proxmox VMID {vm.vmid} on node {vm.node})"
    if devvm is not None:
        shell = f"`ssh devvm` logs in to it as {devvm.user}@{devvm.host}" + (f":{devvm.port}" if devvm.port != 22 else "")
    else:
        shell = "no shell on it is configured (`ssh devvm` does not work); use the power verbs"
    note = (f"This session is about {where}. {shell}. The power-verb tool acts on this VM only; "
            "any other VM is out of reach in this session.")
    return f"{system_prompt}\n\n{note}" if system_prompt else note
