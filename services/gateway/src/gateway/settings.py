"""Gateway settings, read once from the environment (SPEC §10)."""

from __future__ import annotations

from dataclasses import dataclass

from events.config import ConfigError, Env, nats_url

DEFAULT_MODELS = ("sonnet", "opus", "haiku")
DEFAULT_EDGE_SECRET_HEADER = "X-Breakglass-Edge-Secret"
#: Host names always served (the loopback a local browser or `make run` uses).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


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
    #: The edge proxy proves a request came through it with this secret in
    #: `edge_secret_header`; without it the user header is never honoured.
    edge_secret: str | None = None
    edge_secret_header: str = DEFAULT_EDGE_SECRET_HEADER
    #: `Host` values served (DNS rebinding); `*` = any. Loopback is always in.
    allowed_hosts: tuple[str, ...] = ()
    #: Serve /docs, /redoc and /openapi.json (off: they map the attack surface).
    api_docs: bool = False

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
            api_token=env.str("API_TOKEN"),
            trust_edge_header=env.bool("TRUST_EDGE_HEADER", False),
            edge_user_header=env.str("EDGE_USER_HEADER", "X-authentik-username") or "X-authentik-username",
            model=model,
            models=models,
            keepalive_seconds=env.float("KEEPALIVE_SECONDS", 15.0, minimum=0.1),
            verb_wait_seconds=env.float("VERB_WAIT_SECONDS", 150.0, minimum=1.0),
            metrics_token=env.str("METRICS_TOKEN"),
            edge_secret=_edge_secret(env),
            edge_secret_header=env.str("EDGE_SECRET_HEADER", DEFAULT_EDGE_SECRET_HEADER) or DEFAULT_EDGE_SECRET_HEADER,
            allowed_hosts=env.list("ALLOWED_HOSTS", ()),
            api_docs=env.bool("API_DOCS", False),
        )

    @property
    def auth_configured(self) -> bool:
        return bool(self.api_token) or (self.trust_edge_header and bool(self.edge_secret))

    def hosts(self) -> list[str]:
        """The `Host` values served: loopback, the listen address when it is
        a specific one, and BREAKGLASS_ALLOWED_HOSTS."""
        listen = () if self.host in ("0.0.0.0", "::", "") else (self.host,)
        return list(dict.fromkeys((*LOOPBACK_HOSTS, *listen, *self.allowed_hosts)))


def _edge_secret(env: Env) -> str | None:
    """Trusting the edge header needs the secret the proxy sends with it:
    otherwise any local process (the agent's shell included) could name
    itself anyone. Fail closed at start, in one line."""
    secret = env.str("EDGE_SECRET")
    if env.bool("TRUST_EDGE_HEADER", False) and not secret:
        raise ConfigError(
            "BREAKGLASS_TRUST_EDGE_HEADER=1 needs BREAKGLASS_EDGE_SECRET: the secret the auth proxy sends in "
            f"{env.str('EDGE_SECRET_HEADER', DEFAULT_EDGE_SECRET_HEADER)}, so nothing else can set the user header"
        )
    return secret
