"""The notifier's settings: `BREAKGLASS_NOTIFY_*` (plus `BREAKGLASS_NATS_URL`),
read once at start-up through the contract's `Env`. A bad value raises
`ConfigError` naming the variable; `main` turns it into one line and exit 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from events.config import ConfigError, Env, nats_url
from eventbus.topology import Topology

from .deliver import FORMATS

SERVICE = "notifier"
DELIVER_POLICIES = ("new", "all")


def _http_url(name: str, value: str) -> str:
    if not re.match(r"^https?://[^/\s?#]+", value) or not value.isascii() or any(c.isspace() for c in value):
        raise ConfigError(f"BREAKGLASS_{name} must be an http:// or https:// URL, got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    nats_url: str
    #: Where notifications are POSTed (a webhook, or an ntfy topic URL).
    url: str
    format: str = "json"
    #: The PWA's address; links are `<link_base>#/session/<id>`.
    link_base: str | None = None
    #: Bearer token sent as `Authorization` (ntfy access tokens, webhooks).
    token: str | None = None
    #: `new`: only events stored after the first start; `all`: the whole
    #: history once. Only used when there is no state file yet.
    deliver: str = "new"
    #: Where the notifier keeps its place and its pending retries (position.py).
    state_file: str = "notifier-state.json"
    stream: str = Topology().events_stream
    timeout: float = 10.0
    retry_base: float = 1.0
    retry_max: float = 60.0
    min_priority: int = 1
    concurrency: int = 8
    #: The second channel (escalate.py): unanswered approvals go there too.
    escalate_url: str | None = None
    escalate_format: str = "json"
    escalate_token: str | None = None
    escalate_seconds: float = 120.0
    #: Where the gateway is, and its bearer, to record an escalation.
    gateway_url: str | None = None
    gateway_token: str | None = None

    @classmethod
    def from_env(cls, env: Env | None = None) -> "Settings":
        env = env or Env()
        url = _http_url("NOTIFY_URL", env.required("NOTIFY_URL", "the URL notifications are POSTed to"))
        fmt = env.choice("NOTIFY_FORMAT", "json", FORMATS)
        link_base = env.str("NOTIFY_LINK_BASE")
        if link_base is not None:
            _http_url("NOTIFY_LINK_BASE", link_base)
        retry_base = env.float("NOTIFY_RETRY_SECONDS", 1.0, minimum=0.01)
        retry_max = env.float("NOTIFY_RETRY_MAX_SECONDS", 60.0, minimum=retry_base)
        return cls(
            nats_url=nats_url(env, SERVICE),
            url=url,
            format=fmt,
            link_base=link_base,
            token=env.str("NOTIFY_TOKEN"),
            deliver=env.choice("NOTIFY_DELIVER", "new", DELIVER_POLICIES),
            state_file=env.str("NOTIFY_STATE_FILE", "notifier-state.json") or "notifier-state.json",
            timeout=env.float("NOTIFY_TIMEOUT_SECONDS", 10.0, minimum=0.1),
            retry_base=retry_base,
            retry_max=retry_max,
            min_priority=env.int("NOTIFY_MIN_PRIORITY", 1, minimum=1, maximum=5),
            concurrency=env.int("NOTIFY_CONCURRENCY", 8, minimum=1, maximum=256),
            **_escalation(env, fmt),
        )


def _escalation(env: Env, fmt: str) -> dict:
    url = env.str("NOTIFY_ESCALATE_URL")
    gateway_url = env.str("NOTIFY_GATEWAY_URL")
    if url is None:
        return {}
    token_file = env.str("NOTIFY_GATEWAY_TOKEN_FILE")
    token = None
    if token_file is not None:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"BREAKGLASS_NOTIFY_GATEWAY_TOKEN_FILE: cannot read {token_file}: {exc.strerror}") from None
    return {
        "escalate_url": _http_url("NOTIFY_ESCALATE_URL", url),
        "escalate_format": env.choice("NOTIFY_ESCALATE_FORMAT", fmt, FORMATS),
        "escalate_token": env.str("NOTIFY_ESCALATE_TOKEN"),
        "escalate_seconds": env.float("NOTIFY_ESCALATE_SECONDS", 120.0, minimum=0.0),
        "gateway_url": _http_url("NOTIFY_GATEWAY_URL", gateway_url) if gateway_url else None,
        "gateway_token": token,
    }
