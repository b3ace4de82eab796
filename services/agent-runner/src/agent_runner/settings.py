"""agent-runner settings, read once from the environment (SPEC §10)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from events.config import Env, nats_url


@dataclass(frozen=True)
class Settings:
    nats_url: str
    data_dir: Path
    claude_bin: str = "claude"
    model: str = "sonnet"
    turn_timeout_seconds: float = 1800.0
    max_turns: int = 4
    verb_policy: str = "approve-mutating"
    devvm_host: str | None = None

    @classmethod
    def from_env(cls, env: Env | None = None) -> "Settings":
        env = env or Env()
        return cls(
            nats_url=nats_url(env, "agent-runner"),
            data_dir=Path(env.str("DATA_DIR", ".breakglass") or ".breakglass").resolve(),
            claude_bin=env.str("CLAUDE_BIN", "claude") or "claude",
            model=env.str("MODEL", "sonnet") or "sonnet",
            turn_timeout_seconds=env.float("TURN_TIMEOUT_SECONDS", 1800.0, minimum=1.0),
            max_turns=env.int("MAX_TURNS", 4, minimum=1, maximum=64),
            verb_policy=env.choice("VERB_POLICY", "approve-mutating", ("autonomous", "approve-mutating")),
            devvm_host=env.str("DEVVM_HOST"),
        )
