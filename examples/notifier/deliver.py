"""How a notification becomes an HTTP POST, and what the reply means.

Two formats:

- `json`: `POST <url>` with `application/json`
  `{"title", "message", "priority", "session_id", "kind", "link", "event"}`,
  where `event` is the stored event as the attach stream shows it (its JSON
  plus `id`, the stream sequence: a receiver can de-duplicate on it), and,
  for a session's event, `anchor`: its session's hash-chain head at that
  event (`SEQ:LINK`). Kept by the receiver, outside breakglass, it is what
  `breakglass verify --anchor` holds an export to (a cut tail fails).
- `ntfy`: ntfy's publish API, `POST <topic url>` with the message as the
  plain-text body and the headers `Title`, `Priority` (1..5), `Tags` and
  `Click` (the session link). Non-ASCII header values are sent as RFC 2047
  encoded words, which ntfy decodes.

A reply is one of three things (`Delivery`): delivered (2xx), worth retrying
(no connection, a timeout, 408, 429, 5xx), or rejected for good (any other
status: a bad request will not get better by sending it again). Retrying is
the caller's business (it naks the message with a delay, see `backoff`), so
one failing receiver never holds up other work.
"""

from __future__ import annotations

import base64
import enum
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from . import __version__
from .rules import Notification

FORMATS = ("json", "ntfy")
USER_AGENT = f"breakglass-notifier/{__version__}"
RETRYABLE_STATUS = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class Request:
    headers: dict[str, str]
    content: bytes


def header_value(text: str) -> str:
    """A header-safe form of `text`: as is when printable ASCII, else one
    RFC 2047 encoded word (`=?UTF-8?B?...?=`). Never contains CR or LF."""
    flat = " ".join(text.split())
    if flat.isascii() and flat.isprintable():
        return flat
    return "=?UTF-8?B?" + base64.b64encode(flat.encode("utf-8")).decode("ascii") + "?="


def json_request(note: Notification, event: dict[str, Any], anchor: str | None = None) -> Request:
    body: dict[str, Any] = {
        "title": note.title,
        "message": note.message,
        "priority": note.priority,
        "session_id": note.session_id,
        "kind": note.kind,
        "link": note.link,
        "event": event,
    }
    if anchor:
        body["anchor"] = anchor
    return Request(
        headers={"Content-Type": "application/json"},
        content=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
    )


def ntfy_request(note: Notification) -> Request:
    headers = {
        "Content-Type": "text/plain; charset=utf-8",
        "Title": header_value(note.title),
        "Priority": str(note.priority),
    }
    if note.tags:
        headers["Tags"] = header_value(",".join(note.tags))
    if note.link:
        headers["Click"] = header_value(note.link)
    return Request(headers=headers, content=note.message.encode("utf-8"))


def build_request(fmt: str, note: Notification, event: dict[str, Any], anchor: str | None = None) -> Request:
    if fmt == "json":
        return json_request(note, event, anchor)
    if fmt == "ntfy":
        return ntfy_request(note)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


class Delivery(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Sent:
    delivery: Delivery
    #: For the log: the status line, or the transport error.
    detail: str
    #: Seconds the receiver asked us to wait (Retry-After), if it did.
    retry_after: float | None = None


def backoff(attempt: int, base: float, cap: float) -> float:
    """Delay before delivery attempt `attempt + 1`: base, 2*base, 4*base, ...
    capped at `cap`. `attempt` is the message's delivery count (1 = first)."""
    exponent = min(max(attempt, 1) - 1, 62)  # no float overflow however long it fails
    return min(cap, base * (2.0**exponent))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def classify(response: httpx.Response) -> Sent:
    status = response.status_code
    detail = f"HTTP {status}"
    if 200 <= status < 300:
        return Sent(Delivery.DELIVERED, detail)
    if status >= 500 or status in RETRYABLE_STATUS:
        return Sent(Delivery.RETRY, detail, parse_retry_after(response.headers.get("Retry-After")))
    text = " ".join(response.text.split())[:200]
    return Sent(Delivery.REJECTED, f"{detail}: {text}" if text else detail)


class Sender:
    """POSTs notifications to one URL in one format. One HTTP client (and its
    connection pool) for the life of the process."""

    def __init__(
        self,
        url: str,
        fmt: str,
        *,
        timeout: float = 10.0,
        token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}")
        self.url = url
        self.format = fmt
        headers = {"User-Agent": USER_AGENT}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.AsyncClient(
            timeout=timeout, headers=headers, follow_redirects=False, transport=transport
        )

    async def send(self, note: Notification, event: dict[str, Any], anchor: str | None = None) -> Sent:
        request = build_request(self.format, note, event, anchor)
        try:
            response = await self._client.post(self.url, headers=request.headers, content=request.content)
        except httpx.HTTPError as exc:  # refused, reset, DNS, timeouts: all worth another try
            return Sent(Delivery.RETRY, f"{type(exc).__name__}: {exc}".rstrip(": "))
        return classify(response)

    async def aclose(self) -> None:
        await self._client.aclose()
