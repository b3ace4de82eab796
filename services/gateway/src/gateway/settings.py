"""Gateway settings, read once from the environment (SPEC §10)."""

from __future__ import annotations

from dataclasses import dataclass

from events.config import ConfigError, Env, nats_url

DEFAULT_MODELS = ("sonnet", "opus", "haiku")


@dataclass(frozen=True)
class Settings:
    nats_url: str
    host: str = "127.0.0.1"
    port: int = 8080
    #: Bearer token; None means bearer auth is off (not "any token").
    api_token: str | None = None
    trust_edge_header: bool = False
    edge_user_header: str = "X-authentik-username"
    model: str = "sonnet"
    models: tuple[str, ...] = DEFAULT_MODELS
    keepalive_seconds: float = 15.0
    #: How long a verb request waits for pve-executor's answer.
    verb_wait_seconds: float = 150.0
    #: A scrape-only bearer for GET /metrics (gateway.metrics); None = only the API's own auth.
    metrics_token: str | None = None
    #: The operator let the agent run without a sandbox (agent-runner's
    #: BREAKGLASS_ALLOW_UNSANDBOXED_AGENT): `/ready` says so in its body.
    agent_unsandboxed: bool = False

    @classmethod
    def from_env(cls, env: Env | None = None) -> "Settings":
        env = env or Env()
        models = env.list("MODELS", DEFAULT_MODELS)
        model = env.str("MODEL", models[0]) or models[0]
        if model not in models:
            raise ConfigError(f"BREAKGLASS_MODEL {model!r} is not in BREAKGLASS_MODELS ({', '.join(models)})")
        return cls(
            nats_url=nats_url(env, "the gateway"),
            host=env.str("HOST", "127.0.0.1") or "127.0.0.1",
            port=env.int("PORT", 8080, minimum=1, maximum=65535),
            api_token=env.secret("API_TOKEN"),
            trust_edge_header=env.bool("TRUST_EDGE_HEADER", False),
            edge_user_header=env.str("EDGE_USER_HEADER", "X-authentik-username") or "X-authentik-username",
            model=model,
            models=models,
            keepalive_seconds=env.float("KEEPALIVE_SECONDS", 15.0, minimum=0.1),
            verb_wait_seconds=env.float("VERB_WAIT_SECONDS", 150.0, minimum=1.0),
            metrics_token=env.secret("METRICS_TOKEN"),
            agent_unsandboxed=env.bool("ALLOW_UNSANDBOXED_AGENT", False),
        )

    @property
    def auth_configured(self) -> bool:
        return bool(self.api_token) or self.trust_edge_header
