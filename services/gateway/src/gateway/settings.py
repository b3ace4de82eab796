"""Gateway settings, read once from the environment (SPEC §10)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from events.config import ConfigError, Env, nats_url

from .alerts.vms import DEFAULT_VM, VmMap

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
    #: The alert receiver's own bearer (from BREAKGLASS_ALERT_TOKEN_FILE);
    #: None = the receiver refuses everything. It opens nothing else.
    alert_token: str | None = None
    alert_vms: VmMap = field(default_factory=VmMap)
    #: Per VM, at most one triage starts within this many seconds.
    alert_window_seconds: float = 900.0
    #: How long a triage waits for its agent turn to end before it writes
    #: its diagnosis anyway (the turn may wait for a human's approval).
    triage_timeout_seconds: float = 1800.0

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
            alert_token=_secret_file(env, "ALERT_TOKEN_FILE"),
            alert_vms=VmMap.parse(env.str("ALERT_VMS"), _default_vm(env)),
            alert_window_seconds=env.float("ALERT_WINDOW_SECONDS", 900.0, minimum=0.0),
            triage_timeout_seconds=env.float("TRIAGE_TIMEOUT_SECONDS", 1800.0, minimum=1.0),
        ).checked()

    def checked(self) -> "Settings":
        """The alert credential must open nothing else: refuse a deployment
        that reuses the API or metrics token for it."""
        if self.alert_token and self.alert_token in (self.api_token, self.metrics_token):
            raise ConfigError("BREAKGLASS_ALERT_TOKEN_FILE must hold a secret of its own, not the API or metrics token")
        return self

    @property
    def auth_configured(self) -> bool:
        return bool(self.api_token) or self.trust_edge_header


def _default_vm(env: Env) -> str | None:
    value = env.str("ALERT_DEFAULT_VM", DEFAULT_VM)
    return None if value == "none" else value


def _secret_file(env: Env, name: str) -> str | None:
    """A secret read from the file a setting names (never the setting's own
    value: environments leak into process listings and crash dumps)."""
    path = env.str(name)
    if path is None:
        return None
    try:
        secret = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"BREAKGLASS_{name}: cannot read {path}: {exc.strerror or exc}") from None
    if len(secret) < 16:
        raise ConfigError(f"BREAKGLASS_{name}: {path} must hold a secret of at least 16 characters")
    return secret
