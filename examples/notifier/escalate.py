"""Escalation: an approval nobody answered within
BREAKGLASS_NOTIFY_ESCALATE_SECONDS also goes to a second channel
(BREAKGLASS_NOTIFY_ESCALATE_URL, ntfy or a webhook), and the gateway is told
where it went, so the session records it (`escalated`) and the page shows it.

The clock runs from the `approval` event's own time, so an approval the
notifier reads late (it was down) escalates at once if its time has passed.
A decision (`verb` approved/denied of the approval's request) or the end of
its turn cancels it. The timers live in this process: a notifier restarted
while an approval waits escalates it again only if its consumer redelivers
the event (it does for one that was not acked yet).

The notifier reads the bus and may not write to it, so the record goes
through the gateway's API (BREAKGLASS_NOTIFY_GATEWAY_URL and the bearer in
BREAKGLASS_NOTIFY_GATEWAY_TOKEN_FILE); the gateway refuses it (409) when the
approval was decided meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from events.kinds import ApprovalRequested, Envelope, TurnEnded, VerbPhase, VerbProgressed

from .deliver import Delivery, Sender, backoff
from .rules import Notification, session_link
from .settings import SERVICE

logger = logging.getLogger(SERVICE)

#: Tries of the second channel before giving up on one escalation.
MAX_TRIES = 6
SETTLED_KEPT = 10_000


def channel_name(fmt: str, url: str) -> str:
    """What the page shows: the format and the host, never the path (an
    ntfy topic is a password)."""
    return f"{fmt} at {urlsplit(url).hostname}"


class Escalator:
    def __init__(self, settings: Any, sender: Sender) -> None:
        self.settings = settings
        self.sender = sender
        self.channel = channel_name(settings.escalate_format, settings.escalate_url)
        headers = {"Authorization": f"Bearer {settings.gateway_token}"} if settings.gateway_token else {}
        self._gateway = httpx.AsyncClient(timeout=settings.timeout, headers=headers)
        self._waiting: dict[str, tuple[ApprovalRequested, asyncio.Task[None]]] = {}
        self._done: set[str] = set()
        #: Decided requests and ended turns seen, in case they are handled
        #: before their approval (the notifier handles messages concurrently).
        self._settled: dict[str, None] = {}
        #: (approval id, where it went) of every escalation sent: for tests and the log.
        self.sent: list[tuple[str, str]] = []

    def saw(self, event: Envelope) -> None:
        """Every decoded event passes here, trigger or not."""
        if isinstance(event, ApprovalRequested):
            if event.approval_id in self._waiting or event.approval_id in self._done:
                return  # a redelivery
            if f"r:{event.request_id}" in self._settled or f"t:{event.turn_id}" in self._settled:
                return  # decided (or its turn over) before we got to it
            task = asyncio.ensure_future(self._later(event))
            self._waiting[event.approval_id] = (event, task)
        elif isinstance(event, VerbProgressed) and event.phase in (VerbPhase.APPROVED, VerbPhase.DENIED):
            self._settle(f"r:{event.request_id}")
            self._cancel(lambda a: a.request_id == event.request_id and a.session_id == event.session_id)
        elif isinstance(event, TurnEnded):
            self._settle(f"t:{event.turn_id}")
            self._cancel(lambda a: a.turn_id == event.turn_id and a.session_id == event.session_id)

    def _settle(self, key: str) -> None:
        self._settled[key] = None
        while len(self._settled) > SETTLED_KEPT:
            del self._settled[next(iter(self._settled))]

    def _cancel(self, match) -> None:  # type: ignore[no-untyped-def]
        for approval_id, (asked, task) in list(self._waiting.items()):
            if match(asked):
                task.cancel()
                del self._waiting[approval_id]
                self._done.add(approval_id)

    async def _later(self, asked: ApprovalRequested) -> None:
        delay = asked.ts.timestamp() + self.settings.escalate_seconds - time.time()
        try:
            await asyncio.sleep(max(0.0, delay))
            await self._escalate(asked)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("escalating approval %s failed", asked.approval_id)
        finally:
            self._waiting.pop(asked.approval_id, None)
            self._done.add(asked.approval_id)

    async def _escalate(self, asked: ApprovalRequested) -> None:
        waited = max(0.0, time.time() - asked.ts.timestamp())
        note = Notification(
            kind="escalated", title=f"breakglass: approve {asked.verb.value}? (no answer for {waited:.0f} s)",
            message=f"The agent waits for Approve/Deny of {asked.verb.value}; nobody answered the first channel.",
            priority=5, tags=("rotating_light",), session_id=asked.session_id,
            link=session_link(self.settings.link_base, asked.session_id),
        )
        event = {"kind": "approval", "approval_id": asked.approval_id, "session_id": asked.session_id,
                 "verb": asked.verb.value}
        for attempt in range(1, MAX_TRIES + 1):
            sent = await self.sender.send(note, event)
            if sent.delivery is Delivery.DELIVERED:
                break
            if sent.delivery is Delivery.REJECTED or attempt == MAX_TRIES:
                logger.error("the second channel refused approval %s's escalation (%s)", asked.approval_id, sent.detail)
                return
            await asyncio.sleep(backoff(attempt, self.settings.retry_base, self.settings.retry_max))
        self.sent.append((asked.approval_id, self.channel))
        logger.info("approval %s escalated to %s after %.0f s", asked.approval_id, self.channel, waited)
        await self._record(asked, waited)

    async def _record(self, asked: ApprovalRequested, waited: float) -> None:
        if not self.settings.gateway_url:
            return
        url = (f"{self.settings.gateway_url.rstrip('/')}/api/session/{asked.session_id}"
               f"/approval/{asked.approval_id}/escalation")
        try:
            answer = await self._gateway.post(url, json={"channel": self.channel, "after_seconds": round(waited, 1)})
        except httpx.HTTPError as exc:
            logger.warning("could not tell the gateway about approval %s's escalation: %s", asked.approval_id, exc)
            return
        if answer.status_code != 201:
            logger.warning("the gateway did not record approval %s's escalation: HTTP %d %s",
                        asked.approval_id, answer.status_code, answer.text[:200])

    async def aclose(self) -> None:
        for _, task in list(self._waiting.values()):
            task.cancel()
        await asyncio.gather(*(t for _, t in self._waiting.values()), return_exceptions=True)
        await self._gateway.aclose()
