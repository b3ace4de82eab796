"""Gateway settings, read once from the environment (SPEC §10).

Each setting is declared once, as a field: its variable (BREAKGLASS_ and
the field's name, or its `name=`), type, default, bounds and description;
events.config.load reads them all."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta
from msgspec.structs import replace

from events.config import ConfigError, Env, load, nats_url, read_secret
from events.verbs import Verb, two_person_verbs
from events.vms import Vm, VmList
from events.vms import from_env as vms_from_env

from .alerts.vms import DEFAULT_VM, VmMap

DEFAULT_MODELS = ("sonnet", "opus", "haiku")
#: Host names always served (the loopback a local browser or `make run` uses).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
Seconds = Annotated[float, Meta(ge=1.0)]
Names = Annotated[tuple[str, ...], Meta(min_length=1)]


class Settings(msgspec.Struct, frozen=True, kw_only=True, rename="upper"):
    nats_url: Annotated[str, Meta(description="the NATS server(s), with the gateway's user")]
    host: Annotated[str, Meta(description="listen address")] = "127.0.0.1"
    port: Annotated[int, Meta(ge=1, le=65535, description="listen port")] = 8080
    #: None means bearer auth is off (not "any token").
    api_token: Annotated[str | None, Meta(description="bearer token (from API_TOKEN_FILE)")] = None
    trust_edge_header: Annotated[bool, Meta(description="trust the auth proxy's user header")] = False
    edge_user_header: Annotated[str, Meta(description="the proxy's user header")] = "X-authentik-username"
    model: Annotated[str, Meta(description="default model; unset: the first of MODELS")] = DEFAULT_MODELS[0]
    models: Annotated[Names, Meta(description="models a prompt may ask for")] = DEFAULT_MODELS
    keepalive_seconds: Annotated[float, Meta(ge=0.1, description="SSE keepalive interval")] = 15.0
    verb_wait_seconds: Annotated[Seconds, Meta(description="how long a verb request waits for pve-executor")] = 150.0
    #: None = only the API's own auth opens /metrics (gateway.metrics).
    metrics_token: Annotated[str | None, Meta(description="scrape-only bearer for GET /metrics")] = None
    #: The edge proxy proves a request came through it with this secret in
    #: `edge_secret_header`; without it the user header is never honoured.
    edge_secret: Annotated[str | None, Meta(description="file holding the proxy's secret")] = msgspec.field(
        default=None, name="EDGE_SECRET_FILE")
    edge_secret_header: Annotated[str, Meta(description="the header carrying the proxy's secret")] = (
        "X-Breakglass-Edge-Secret")
    #: `*` = any. Loopback is always in (DNS rebinding).
    allowed_hosts: Annotated[Names, Meta(description="`Host` values served besides loopback")] = ()
    #: Off: /docs, /redoc and /openapi.json map the attack surface.
    api_docs: Annotated[bool, Meta(description="serve the API docs")] = False
    #: None = the receiver refuses everything. It opens nothing else.
    alert_token: Annotated[str | None, Meta(description="file holding the alert receiver's bearer")] = msgspec.field(
        default=None, name="ALERT_TOKEN_FILE")
    alert_vms: Annotated[VmMap, Meta(description="alert labels -> VM rules")] = msgspec.field(default_factory=VmMap)
    alert_window_seconds: Annotated[float, Meta(ge=0.0, description="per VM, at most one triage in this "
                                                                     "window")] = 900.0
    #: The turn may wait for a human's approval; the diagnosis is written anyway.
    triage_timeout_seconds: Annotated[Seconds, Meta(description="how long a triage waits for its turn")] = 1800.0
    #: agent-runner's own setting: `/ready` says so in its body.
    agent_unsandboxed: Annotated[bool, Meta(description="the agent runs without a sandbox")] = msgspec.field(
        default=False, name="ALLOW_UNSANDBOXED_AGENT")
    data_dir: Annotated[Path, Meta(description="the gateway's own files (the Web Push key)")] = Path(".breakglass")
    push_contact: Annotated[str, Meta(description="the VAPID `sub` contact (mailto: or https:)")] = (
        "mailto:breakglass@localhost")
    #: The page posts its subscription on every load.
    push_subscription_days: Annotated[float, Meta(ge=0.001, description="a push subscription not renewed "
                                                                         "within this long is dropped")] = 30.0
    push_allow_http: Annotated[bool, Meta(description="accept http:// and local push endpoints (tests)")] = False
    #: The same variable as agent-runner's: a notification's decision grant dies with its approval.
    approval_timeout_seconds: Annotated[Seconds, Meta(description="an approval's life")] = 300.0
    silence_warning_seconds: Annotated[Seconds, Meta(description="a silent turn pushes a warning after this")] = 180.0
    #: A mutating verb, pressed or approved, needs a fresh passkey assertion
    #: bound to that request (gateway.stepup).
    step_up: Annotated[bool, Meta(description="mutating verbs need a passkey step-up")] = False
    step_up_seconds: Annotated[float, Meta(ge=5.0, description="a step-up challenge's life (single use)")] = 120.0
    #: The WebAuthn relying party: the host name the PWA is served under,
    #: and the exact origins (scheme://host[:port]) assertions may come from.
    webauthn_rp_id: Annotated[str, Meta(description="the passkeys' relying party")] = "localhost"
    webauthn_origins: Annotated[Names, Meta(description="origins passkey assertions may come from; unset: "
                                                         "this port on localhost, or https://<rp id>")] = (
        "http://localhost:8080",)
    #: Verbs that need a second operator's Approve (gateway.presses); pve-executor enforces it again.
    two_person: Annotated[frozenset[Verb], Meta(description="verbs under the two-person rule")] = msgspec.field(
        default=frozenset(), name="TWO_PERSON_VERBS")
    two_person_wait_seconds: Annotated[float, Meta(ge=10.0, description="how long a two-person press waits "
                                                                         "for the second operator")] = 600.0
    observer_max_seconds: Annotated[float, Meta(ge=60.0, description="the longest an observer link lives")] = (
        7 * 24 * 3600.0)
    #: The gateway's allow-list; the first is the one the single-VM routes address.
    vms: Annotated[VmList, Meta(description="the VMs the console may act on (events.vms)")] = VmList(
        (Vm(name=DEFAULT_VM, vmid=102),))

    @classmethod
    def from_env(cls, env: Env | None = None) -> "Settings":
        env = env or Env()
        s = load(
            cls, env,
            nats_url=nats_url(env, "the gateway"),
            api_token=env.secret("API_TOKEN"),
            metrics_token=env.secret("METRICS_TOKEN"),
            edge_secret=_secret_file(env, "EDGE_SECRET_FILE"),
            alert_token=_secret_file(env, "ALERT_TOKEN_FILE"),
            alert_vms=VmMap.parse(env.str("ALERT_VMS"), _default_vm(env)),
            two_person=two_person_verbs(env),
            vms=vms_from_env(env),
        )
        # Two defaults follow other settings: the model (the first allowed)
        # and the passkey origins (where the PWA is served).
        return replace(
            s,
            model=s.model if env.raw("MODEL") else s.models[0],
            webauthn_origins=s.webauthn_origins if env.raw("WEBAUTHN_ORIGINS") else (_default_origin(s),),
            data_dir=s.data_dir.resolve(),
        ).checked()

    def checked(self) -> "Settings":
        """What no single field can say: the model is one of the models;
        trusting the edge header needs the secret the proxy sends with it
        (otherwise any local process, the agent's shell included, could
        name itself anyone); the push contact is a URI push services take;
        the alert credential opens nothing else."""
        if self.model not in self.models:
            raise ConfigError(f"BREAKGLASS_MODEL {self.model!r} is not in BREAKGLASS_MODELS ({', '.join(self.models)})")
        if self.trust_edge_header and not self.edge_secret:
            raise ConfigError(
                "BREAKGLASS_TRUST_EDGE_HEADER=1 needs BREAKGLASS_EDGE_SECRET_FILE: a file holding the secret the auth "
                f"proxy sends in {self.edge_secret_header}, so nothing else can set the user header"
            )
        contact = self.push_contact
        if not contact.startswith(("mailto:", "https://")) or any(c.isspace() for c in contact):
            # RFC 8292 §2.1.
            raise ConfigError(f"BREAKGLASS_PUSH_CONTACT must be a mailto: or https:// URI, got {self.push_contact!r}")
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


def _default_origin(s: Settings) -> str:
    """Where the PWA is served when BREAKGLASS_WEBAUTHN_ORIGINS is not set:
    this port on localhost, else the relying party's own https origin."""
    return f"http://localhost:{s.port}" if s.webauthn_rp_id == "localhost" else f"https://{s.webauthn_rp_id}"


def _default_vm(env: Env) -> str | None:
    value = env.str("ALERT_DEFAULT_VM", DEFAULT_VM)
    return None if value == "none" else value


def _secret_file(env: Env, name: str) -> str | None:
    """A secret read from the file a setting names (never the setting's own
    value: environments leak into process listings and crash dumps)."""
    path = env.str(name)
    return None if path is None else read_secret(path, f"BREAKGLASS_{name}", min_length=16, private=False)
