"""Gateway settings, read once from the environment (SPEC §10)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from events.config import ConfigError, Env, nats_url
from events.vms import Vm, VmList
from events.vms import from_env as vms_from_env

from events.verbs import Verb, two_person_verbs

from .alerts.vms import DEFAULT_VM, VmMap

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
    #: The alert receiver's own bearer (from BREAKGLASS_ALERT_TOKEN_FILE);
    #: None = the receiver refuses everything. It opens nothing else.
    alert_token: str | None = None
    alert_vms: VmMap = field(default_factory=VmMap)
    #: Per VM, at most one triage starts within this many seconds.
    alert_window_seconds: float = 900.0
    #: How long a triage waits for its agent turn to end before it writes
    #: its diagnosis anyway (the turn may wait for a human's approval).
    triage_timeout_seconds: float = 1800.0
    #: The operator let the agent run without a sandbox (agent-runner's
    #: BREAKGLASS_ALLOW_UNSANDBOXED_AGENT): `/ready` says so in its body.
    agent_unsandboxed: bool = False
    #: Where the gateway keeps its own files (the Web Push key).
    data_dir: Path = Path(".breakglass")
    #: The VAPID `sub` contact push services may write to about our pushes.
    push_contact: str = "mailto:breakglass@localhost"
    #: A subscription not renewed (the page posts it on every load) within this long is dropped.
    push_subscription_days: float = 30.0
    #: Accept http:// push endpoints (tests and a local push service only).
    push_allow_http: bool = False
    #: agent-runner's approval timeout (the same variable): a notification's
    #: decision grant dies with its approval.
    approval_timeout_seconds: float = 300.0
    #: A running turn without output this long pushes a warning (the PWA's default).
    silence_warning_seconds: float = 180.0
    #: BREAKGLASS_STEP_UP=1: a mutating verb, pressed or approved, needs a
    #: fresh passkey assertion bound to that request (gateway.stepup).
    step_up: bool = False
    #: How long a step-up challenge may be answered (single use).
    step_up_seconds: float = 120.0
    #: The WebAuthn relying party: the host name the PWA is served under,
    #: and the exact origins (scheme://host[:port]) assertions may come from.
    webauthn_rp_id: str = "localhost"
    webauthn_origins: tuple[str, ...] = ("http://localhost:8080",)
    #: BREAKGLASS_TWO_PERSON_VERBS: verbs that need a second operator's
    #: Approve (gateway.presses); pve-executor enforces it again.
    two_person: frozenset[Verb] = frozenset()
    #: How long an operator's two-person press waits for the second operator.
    two_person_wait_seconds: float = 600.0
    #: The longest an observer link may live (gateway.observers).
    observer_max_seconds: float = 7 * 24 * 3600.0
    #: The VMs the console may act on (events.vms): the gateway's allow-list;
    #: the first is the one the single-VM routes address.
    vms: VmList = VmList((Vm(name=DEFAULT_VM, vmid=102),))

    @classmethod
    def from_env(cls, env: Env | None = None) -> "Settings":
        env = env or Env()
        models = env.list("MODELS", DEFAULT_MODELS)
        model = env.str("MODEL", models[0]) or models[0]
        if model not in models:
            raise ConfigError(f"BREAKGLASS_MODEL {model!r} is not in BREAKGLASS_MODELS ({', '.join(models)})")
        port = env.int("PORT", 8080, minimum=1, maximum=65535)
        rp_id = env.str("WEBAUTHN_RP_ID", "localhost") or "localhost"
        return cls(
            nats_url=nats_url(env, "the gateway"),
            host=env.str("HOST", "127.0.0.1") or "127.0.0.1",
            port=port,
            api_token=env.secret("API_TOKEN"),
            trust_edge_header=env.bool("TRUST_EDGE_HEADER", False),
            edge_user_header=env.str("EDGE_USER_HEADER", "X-authentik-username") or "X-authentik-username",
            model=model,
            models=models,
            keepalive_seconds=env.float("KEEPALIVE_SECONDS", 15.0, minimum=0.1),
            verb_wait_seconds=env.float("VERB_WAIT_SECONDS", 150.0, minimum=1.0),
            metrics_token=env.secret("METRICS_TOKEN"),
            agent_unsandboxed=env.bool("ALLOW_UNSANDBOXED_AGENT", False),
            edge_secret=_edge_secret(env),
            edge_secret_header=env.str("EDGE_SECRET_HEADER", DEFAULT_EDGE_SECRET_HEADER) or DEFAULT_EDGE_SECRET_HEADER,
            allowed_hosts=env.list("ALLOWED_HOSTS", ()),
            api_docs=env.bool("API_DOCS", False),
            alert_token=_secret_file(env, "ALERT_TOKEN_FILE"),
            alert_vms=VmMap.parse(env.str("ALERT_VMS"), _default_vm(env)),
            alert_window_seconds=env.float("ALERT_WINDOW_SECONDS", 900.0, minimum=0.0),
            triage_timeout_seconds=env.float("TRIAGE_TIMEOUT_SECONDS", 1800.0, minimum=1.0),
            data_dir=Path(env.str("DATA_DIR", ".breakglass") or ".breakglass").resolve(),
            push_contact=_contact(env.str("PUSH_CONTACT", "mailto:breakglass@localhost") or ""),
            push_subscription_days=env.float("PUSH_SUBSCRIPTION_DAYS", 30.0, minimum=0.001),
            push_allow_http=env.bool("PUSH_ALLOW_HTTP", False),
            approval_timeout_seconds=env.float("APPROVAL_TIMEOUT_SECONDS", 300.0, minimum=1.0),
            silence_warning_seconds=env.float("SILENCE_WARNING_SECONDS", 180.0, minimum=1.0),
            step_up=env.bool("STEP_UP", False),
            step_up_seconds=env.float("STEP_UP_SECONDS", 120.0, minimum=5.0),
            webauthn_rp_id=rp_id,
            webauthn_origins=env.list("WEBAUTHN_ORIGINS", (_default_origin(rp_id, port),)),
            two_person=two_person_verbs(env),
            two_person_wait_seconds=env.float("TWO_PERSON_WAIT_SECONDS", 600.0, minimum=10.0),
            observer_max_seconds=env.float("OBSERVER_MAX_SECONDS", 7 * 24 * 3600.0, minimum=60.0),
            vms=vms_from_env(env),
        ).checked()

    def checked(self) -> "Settings":
        """The alert credential must open nothing else: refuse a deployment
        that reuses the API or metrics token for it."""
        if self.alert_token and self.alert_token in (self.api_token, self.metrics_token):
            raise ConfigError("BREAKGLASS_ALERT_TOKEN_FILE must hold a secret of its own, not the API or metrics token")
        return self

    @property
    def auth_configured(self) -> bool:
        return bool(self.api_token) or (self.trust_edge_header and bool(self.edge_secret))

    def hosts(self) -> list[str]:
        """The `Host` values served: loopback, the listen address when it is
        a specific one, and BREAKGLASS_ALLOWED_HOSTS."""
        listen = () if self.host in ("0.0.0.0", "::", "") else (self.host,)
        return list(dict.fromkeys((*LOOPBACK_HOSTS, *listen, *self.allowed_hosts)))


def _edge_secret(env: Env) -> str | None:
    """Trusting the edge header needs the secret the proxy sends with it
    (read from BREAKGLASS_EDGE_SECRET_FILE): otherwise any local process,
    the agent's shell included, could name itself anyone. Fail closed at
    start, in one line."""
    secret = _secret_file(env, "EDGE_SECRET_FILE")
    if env.bool("TRUST_EDGE_HEADER", False) and not secret:
        raise ConfigError(
            "BREAKGLASS_TRUST_EDGE_HEADER=1 needs BREAKGLASS_EDGE_SECRET_FILE: a file holding the secret the auth "
            f"proxy sends in {env.str('EDGE_SECRET_HEADER', DEFAULT_EDGE_SECRET_HEADER)}, so nothing else can set "
            "the user header"
        )
    return secret


def _contact(value: str) -> str:
    """RFC 8292 §2.1: a `mailto:` or `https:` URI push services may use."""
    if not (value.startswith("mailto:") or value.startswith("https://")) or any(c.isspace() for c in value):
        raise ConfigError(f"BREAKGLASS_PUSH_CONTACT must be a mailto: or https:// URI, got {value!r}")
    return value


def _default_origin(rp_id: str, port: int) -> str:
    """Where the PWA is served when BREAKGLASS_WEBAUTHN_ORIGINS is not set:
    this port on localhost, else the relying party's own https origin."""
    return f"http://localhost:{port}" if rp_id == "localhost" else f"https://{rp_id}"


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
