"""How the agent reaches the VM: `ssh devvm` resolves through an ssh config
written into the session's HOME, so the agent never needs (or sees) a host
name, user or key path in its prompt, and the host key is pinned."""

from __future__ import annotations

from dataclasses import dataclass


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
