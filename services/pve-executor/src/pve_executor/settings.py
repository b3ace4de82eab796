"""pve-executor settings, read once from the environment (SPEC §10)."""

from __future__ import annotations

from dataclasses import dataclass

from events.config import Env, nats_url


@dataclass(frozen=True)
class Settings:
    nats_url: str
    pve_host: str | None = None
    pve_port: int = 22
    pve_user: str = "breakglass"
    pve_key_file: str | None = None
    pve_known_hosts: str | None = None
    pve_vmid: int = 102
    verb_timeout_seconds: float = 120.0
    output_cap_bytes: int = 64 * 1024

    @classmethod
    def from_env(cls, env: Env | None = None) -> "Settings":
        env = env or Env()
        return cls(
            nats_url=nats_url(env, "pve-executor"),
            pve_host=env.str("PVE_HOST"),
            pve_port=env.int("PVE_PORT", 22, minimum=1, maximum=65535),
            pve_user=env.str("PVE_USER", "breakglass") or "breakglass",
            pve_key_file=env.str("PVE_KEY_FILE"),
            pve_known_hosts=env.str("PVE_KNOWN_HOSTS"),
            pve_vmid=env.int("PVE_VMID", 102, minimum=100, maximum=999_999_999),
            verb_timeout_seconds=env.float("VERB_TIMEOUT_SECONDS", 120.0, minimum=1.0),
            output_cap_bytes=env.int("OUTPUT_CAP_BYTES", 64 * 1024, minimum=1024),
        )
