"""The notifier process: follows the events stream and POSTs notifications.

    events stream --(direct gets, then the republished events: eventbus.follow)--> rules --> POST

It connects as the read-only `reader` user, which may create no consumer on
the server (eventbus.access: a consumer is server state a reader could pile
up until the gateway finds no room), so it keeps its own place in a small
state file (position.Position). Each event is settled exactly one way:

- a payload that does not decode: skipped and logged;
- a kind this version does not know, or an event that is not a trigger: done;
- a notification the receiver took (2xx): done;
- a notification the receiver refused (4xx other than 408/429): logged, done;
- a failed POST (refused, timeout, 408, 429, 5xx): retried after
  base * 2^(attempts - 1), capped, while the events after it go on; it is
  kept in the state file meanwhile, so a restart loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from eventbus import access, bus, direct, export, service
from events import chain, subjects
from events.codec import ContractError, decode_event_lenient
from eventbus.follow import follow
from events.kinds import UserPrompted

from . import rules
from .deliver import Delivery, Sender, backoff
from .escalate import Escalator
from .position import Position
from .settings import SERVICE, Settings

logger = logging.getLogger(SERVICE)

#: A notification whose *handling* keeps raising (a bug, the bus away; not a
#: failed POST, which is retried forever) is given up after this many tries.
MAX_HANDLER_FAILURES = 20
#: How many earlier events of a session are looked at to decide whether a
#: prompt is its first one (sessions open with the prompt; this is slack).
FIRST_PROMPT_LOOKUPS = 32


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass


async def wait_for_stream(js: JetStreamContext, settings: Settings, stop: asyncio.Event) -> bool:
    """Wait for the events stream to exist (the notifier never creates it).
    False if stopped meanwhile."""
    waiting = False
    while not stop.is_set():
        try:
            await js.stream_info(settings.stream)
            return True
        except NotFoundError:
            if not waiting:
                logger.warning("stream %s does not exist yet (is breakglass up?); waiting for it", settings.stream)
                waiting = True
        except (NatsTimeoutError, asyncio.TimeoutError) as exc:
            logger.warning("could not read stream %s: %s; trying again", settings.stream, exc or "timeout")
        await _sleep(stop, 2.0)
    return False


def _kind(data: bytes | None) -> str | None:
    try:
        value = json.loads(data or b"")
    except ValueError:
        return None
    return value.get("kind") if isinstance(value, dict) else None


async def opens_session(js: JetStreamContext, stream: str, subject: str, seq: int) -> bool:
    """Whether the `user` event at `seq` on `subject` is its session's first
    prompt. Asks the stream for the subject's events from the start
    (`next_by_subj`), so the answer is the same on a redelivery, after a
    restart, and for a consumer that started in the middle of a session."""
    if subjects.session_of(subject) is None:
        return False
    cursor = 1
    for _ in range(FIRST_PROMPT_LOOKUPS):
        try:
            raw = await js.get_msg(stream, seq=cursor, subject=subject, next=True)
        except NotFoundError:
            return False
        if raw.seq is None or raw.seq >= seq:
            return raw.seq == seq
        if _kind(raw.data) == "user":
            return False
        cursor = raw.seq + 1
    return False


def event_json(data: bytes, seq: int) -> dict[str, Any]:
    """The stored event as the attach stream shows it: `{kind, id, ...}`."""
    stored = json.loads(data)
    return {"kind": stored.pop("kind", None), "id": seq, **stored}


def anchor_of(subject: str, headers: dict[str, str], seq: int) -> str | None:
    """The session's chain head at this event, for the receiver to keep."""
    link = headers.get(chain.HEADER)
    if not link or subjects.session_of(subject) is None:
        return None
    return export.format_anchor(seq, link)


class Notifier:
    def __init__(self, nc: Client, settings: Settings, sender: Sender, state: Position,
                 escalator: Escalator | None = None) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.settings = settings
        self.sender = sender
        self.state = state
        self._room = asyncio.Semaphore(settings.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self.escalator = escalator

    def retry_delay(self, attempt: int, retry_after: float | None = None) -> float:
        delay = backoff(attempt, self.settings.retry_base, self.settings.retry_max)
        if retry_after is not None:
            delay = min(self.settings.retry_max, max(delay, retry_after))
        return delay

    async def handle(self, got: direct.Got, attempt: int) -> float | None:
        """Handle one event: None when it is settled, else the delay before
        it is tried again."""
        seq, subject = got.seq, got.subject
        try:
            event = decode_event_lenient(got.data)
        except ContractError as exc:
            logger.warning("skipped malformed event #%d on %s: %s", seq, subject, exc)
            return None
        if event is None:  # a kind newer than this reader: skipped
            return None
        if self.escalator is not None and subjects.session_of(subject) is not None:
            self.escalator.saw(event)
        try:
            first = isinstance(event, UserPrompted) and await opens_session(self.js, self.settings.stream, subject, seq)
            note = rules.notification_for(event, subject, opens_session=first, link_base=self.settings.link_base)
            if note is None or note.priority < self.settings.min_priority:
                return None
            sent = await self.sender.send(note, event_json(got.data, seq), anchor_of(subject, got.headers, seq))
        except Exception:
            if attempt >= MAX_HANDLER_FAILURES:
                logger.exception("event #%d failed %d times; given up", seq, attempt)
                return None
            logger.exception("event #%d could not be handled (attempt %d); retrying", seq, attempt)
            return self.retry_delay(attempt)

        if sent.delivery is Delivery.DELIVERED:
            logger.info("notified: %s (event #%d, %s)", note.title, seq, note.kind)
            return None
        if sent.delivery is Delivery.REJECTED:
            logger.error("the receiver refused the notification for event #%d (%s); not retried", seq, sent.detail)
            return None
        delay = self.retry_delay(attempt, sent.retry_after)
        # One line on the first failure and every tenth, not one a minute per message.
        level = logging.WARNING if attempt == 1 or attempt % 10 == 0 else logging.DEBUG
        logger.log(level, "notification for event #%d failed (%s), attempt %d; retrying in %.3g s",
                seq, sent.detail, attempt, delay)
        return delay

    async def _settle(self, got: direct.Got, attempt: int) -> None:
        """Handle `got` until it is settled, retrying after each delay; its
        slot of `concurrency` is held while it is handled, not while it waits."""
        while True:
            try:
                delay = await self.handle(got, attempt)
            finally:
                self._room.release()
            if delay is None:
                self.state.pending.pop(got.seq, None)
                self.state.save()
                return
            self.state.pending[got.seq] = attempt
            self.state.save()
            await _sleep(self._stop, delay)
            if self._stop.is_set():
                return
            await self._room.acquire()
            attempt += 1

    def _start(self, got: direct.Got, attempt: int) -> None:
        task = asyncio.create_task(self._settle(got, attempt))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def on_event(self, got: direct.Got) -> None:
        """From eventbus.follow, in stream order: taken into the state (so a
        crash from here on retries it), then handled alongside the others."""
        await self._room.acquire()
        self.state.position = got.seq
        self.state.pending.setdefault(got.seq, 0)
        self.state.save()
        self._start(got, self.state.pending[got.seq] + 1)

    async def _resume_pending(self) -> None:
        """What an earlier run left unsettled: read back by sequence, retried."""
        for seq, attempts in sorted(self.state.pending.items()):
            try:
                msg = await self.js.get_msg(self.settings.stream, seq, direct=True)
            except NotFoundError:  # aged out of the stream meanwhile
                logger.warning("pending event #%d is no longer in %s; dropped", seq, self.settings.stream)
                self.state.pending.pop(seq, None)
                self.state.save()
                continue
            await self._room.acquire()
            self._start(direct.Got(seq, msg.subject or "", msg.data or b"", dict(msg.headers or {}), 0), attempts + 1)

    async def run(self, stop: asyncio.Event, *, ready: asyncio.Event | None = None, poll_seconds: float = 1.0) -> None:
        """Follow the stream and handle events until `stop` is set."""
        await self._resume_pending()
        following = await follow(self.nc, (subjects.EVENTS_ALL,), self.state.position, self.on_event,
                                 stream=self.settings.stream, check_seconds=poll_seconds)
        if ready is not None:
            ready.set()
        try:
            done = asyncio.create_task(stop.wait())
            failed = asyncio.create_task(following.wait())
            await asyncio.wait({done, failed}, return_when=asyncio.FIRST_COMPLETED)
            for task in (done, failed):
                task.cancel()
            if failed.done() and not failed.cancelled() and failed.exception() is not None:
                raise failed.exception()  # type: ignore[misc]
        finally:
            self._stop.set()
            await following.stop()
            if self._tasks:  # what is mid-POST finishes; what waits for a retry stays pending in the state
                await asyncio.gather(*self._tasks, return_exceptions=True)


def _inbox(url: str) -> dict[str, str]:
    """A breakglass NATS user (the `reader` of `breakglass nats-url`) may
    read replies only under its own inbox prefix (eventbus.access)."""
    role = bus.role_of(url)
    return {"inbox_prefix": access.inbox_prefix(role)} if role else {}


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    *,
    ready: asyncio.Event | None = None,
    poll_seconds: float = 1.0,
) -> None:
    """Connect, load (or start) the state, notify until `stop` is set."""
    # `bus.connect` keeps trying while NATS is not there yet; a stop (Ctrl-C,
    # SIGTERM) during that wait ends the process instead of being ignored.
    connecting = asyncio.create_task(bus.connect(settings.nats_url, SERVICE, logger=logger, **_inbox(settings.nats_url)))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not connecting.done():
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)
        return
    try:
        nc = connecting.result()
    except Exception as exc:
        raise OSError(f"cannot connect to NATS at {settings.nats_url}: {exc or type(exc).__name__}") from None
    sender = Sender(settings.url, settings.format, timeout=settings.timeout, token=settings.token)
    escalator = None
    if settings.escalate_url:
        escalator = Escalator(settings, Sender(settings.escalate_url, settings.escalate_format,
                                               timeout=settings.timeout, token=settings.escalate_token))
    try:
        js = nc.jetstream()
        if not await wait_for_stream(js, settings, stop):
            return
        path = Path(settings.state_file)
        state = Position.load(path, settings.stream)
        if state is None:  # first start: from now on, or the whole history once
            start = 0 if settings.deliver == "all" else await direct.stream_last_seq(nc, settings.stream)
            state = Position(path, settings.stream, start)
            state.save()
        elif settings.deliver == "all" and state.position:
            logger.info("%s exists: resuming after #%d (BREAKGLASS_NOTIFY_DELIVER applies only to a first start)",
                     path, state.position)
        # The path of an ntfy URL is its topic, which works as a password: not logged.
        logger.info("notifying %s (%s format) from %s after #%d, state in %s",
                 urlsplit(settings.url).netloc, settings.format, settings.stream, state.position, path)
        await Notifier(nc, settings, sender, state, escalator).run(stop, ready=ready, poll_seconds=poll_seconds)
    finally:
        if escalator is not None:
            await escalator.aclose()
            await escalator.sender.aclose()
        await sender.aclose()
        await nc.close()


def cli() -> None:
    """The process entry point: settings from the environment (one line and
    exit 2 when one is bad), then `serve` until SIGINT/SIGTERM."""

    async def main(stop: asyncio.Event) -> None:
        settings = Settings.from_env()
        logging.getLogger("httpx").setLevel(logging.WARNING)  # we log each delivery ourselves
        await serve(settings, stop)

    service.run(SERVICE, main)

