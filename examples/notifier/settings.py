"""The notifier's settings: `BREAKGLASS_NOTIFY_*` (plus `BREAKGLASS_NATS_URL`),
read once at start-up through the contract's `Env`. A bad value raises
`ConfigError` naming the variable; `main` turns it into one line and exit 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from events.config import ConfigError, Env, nats_url
from events.topology import Topology

from .deliver import FORMATS

SERVICE = "notifier"
DELIVER_POLICIES = ("new", "all")
_CONSUMER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


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
    #: `new`: only events stored after the consumer was first created;
    #: `all`: the whole history once. Only used when the consumer is created.
    deliver: str = "new"
    consumer: str = "notifier"
    stream: str = Topology().events_stream
    timeout: float = 10.0
    retry_base: float = 1.0
    retry_max: float = 60.0
    min_priority: int = 1
    concurrency: int = 8
    #: ack_wait = timeout + this: how long a message handed to a notifier that
    #: died mid-handling waits before the server gives it to another one.
    ack_slack: float = 30.0

    @classmethod
    def from_env(cls, env: Env | None = None) -> "Settings":
        env = env or Env()
        url = _http_url("NOTIFY_URL", env.required("NOTIFY_URL", "the URL notifications are POSTed to"))
        fmt = env.choice("NOTIFY_FORMAT", "json", FORMATS)
        link_base = env.str("NOTIFY_LINK_BASE")
        if link_base is not None:
            _http_url("NOTIFY_LINK_BASE", link_base)
        consumer = env.str("NOTIFY_CONSUMER", "notifier") or "notifier"
        if not _CONSUMER_NAME.match(consumer):
            raise ConfigError(f"BREAKGLASS_NOTIFY_CONSUMER must be letters, digits, - or _, got {consumer!r}")
        retry_base = env.float("NOTIFY_RETRY_SECONDS", 1.0, minimum=0.01)
        retry_max = env.float("NOTIFY_RETRY_MAX_SECONDS", 60.0, minimum=retry_base)
        return cls(
            nats_url=nats_url(env, SERVICE),
            url=url,
            format=fmt,
            link_base=link_base,
            token=env.str("NOTIFY_TOKEN"),
            deliver=env.choice("NOTIFY_DELIVER", "new", DELIVER_POLICIES),
            consumer=consumer,
            timeout=env.float("NOTIFY_TIMEOUT_SECONDS", 10.0, minimum=0.1),
            retry_base=retry_base,
            retry_max=retry_max,
            min_priority=env.int("NOTIFY_MIN_PRIORITY", 1, minimum=1, maximum=5),
            concurrency=env.int("NOTIFY_CONCURRENCY", 8, minimum=1, maximum=256),
        )
