"""Alertmanager's webhook body (version 4), validated at the boundary.

Decoded once, with a typed decoder, into Structs: anything else (wrong
version, a missing field, an oversized label) is refused before the
receiver touches the bus. Field names are Alertmanager's own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from events.kinds import Labels

MAX_BODY_BYTES = 1024 * 1024
MAX_ALERTS = 1000

Status = Literal["firing", "resolved"]
Fingerprint = Annotated[str, msgspec.Meta(pattern=r"^[0-9A-Za-z]{1,64}$")]
Text = Annotated[str, msgspec.Meta(max_length=4096)]
#: With its offset: Alertmanager always sends one, and events store aware times.
When = Annotated[datetime, msgspec.Meta(tz=True)]


class WebhookAlert(msgspec.Struct, kw_only=True):
    status: Status
    labels: Labels
    annotations: Labels = {}
    starts_at: When | None = msgspec.field(default=None, name="startsAt")
    ends_at: When | None = msgspec.field(default=None, name="endsAt")
    generator_url: Text = msgspec.field(default="", name="generatorURL")
    fingerprint: Fingerprint

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "") or "alert"


class Webhook(msgspec.Struct, kw_only=True):
    version: Literal["4"]
    group_key: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)] = msgspec.field(name="groupKey")
    status: Status
    receiver: Text = ""
    group_labels: Labels = msgspec.field(default_factory=dict, name="groupLabels")
    common_labels: Labels = msgspec.field(default_factory=dict, name="commonLabels")
    common_annotations: Labels = msgspec.field(default_factory=dict, name="commonAnnotations")
    external_url: Text = msgspec.field(default="", name="externalURL")
    truncated_alerts: int = msgspec.field(default=0, name="truncatedAlerts")
    alerts: Annotated[list[WebhookAlert], msgspec.Meta(min_length=1, max_length=MAX_ALERTS)]


_decoder = msgspec.json.Decoder(Webhook)


class BadPayload(ValueError):
    """The body is not an Alertmanager version 4 webhook; says why."""


def parse(body: bytes) -> Webhook:
    if len(body) > MAX_BODY_BYTES:
        raise BadPayload(f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        return _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise BadPayload(f"not an Alertmanager version 4 webhook: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadPayload(f"the body is not JSON: {exc}") from None
