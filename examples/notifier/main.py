"""The notifier process: a durable pull consumer on the events stream.

    events stream --(durable consumer `notifier`, filter breakglass.events.>)--> rules --> POST

The consumer is created (or updated) at start-up with explicit acks and no
limit on redeliveries. Each message is settled exactly one way:

- a payload that does not decode: terminated and logged (never redelivered);
- a kind this version does not know, or an event that is not a trigger: acked;
- a notification the receiver took (2xx): acked;
- a notification the receiver refused (4xx other than 408/429): logged, acked;
- a failed POST (refused, timeout, 408, 429, 5xx): nak'd with a delay of
  base * 2^(deliveries - 1), capped; the server redelivers it later, so a
  dead receiver blocks nothing else and a restart loses nothing.

The consumer is the notifier's memory: its position and the pending retries
live in JetStream, not in this process.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import urlsplit

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, NotFoundError

from events import bus, chain, export, service, subjects
from events.codec import ContractError, decode_event_lenient
from events.kinds import UserPrompted

from . import rules
from .deliver import Delivery, Sender, backoff
from .escalate import Escalator
from .settings import SERVICE, Settings

log = logging.getLogger(SERVICE)

#: A message whose *handling* keeps raising (a bug, the bus away; not a
#: failed POST, which is retried forever) is terminated after this many tries.
MAX_HANDLER_FAILURES = 20
#: How many earlier events of a session are looked at to decide whether a
#: prompt is its first one (sessions open with the prompt; this is slack).
FIRST_PROMPT_LOOKUPS = 32


def consumer_config(settings: Settings, existing: ConsumerConfig | None = None) -> ConsumerConfig:
    """The notifier's consumer. The start position only matters when the
    consumer is first created; an existing consumer keeps its own."""
    config = ConsumerConfig(
        durable_name=settings.consumer,
        description="breakglass notifier: operator notifications",
        filter_subject=subjects.EVENTS_ALL,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.NEW if settings.deliver == "new" else DeliverPolicy.ALL,
        # Longer than one handling (a lookup and a POST with its timeout).
        ack_wait=settings.timeout + settings.ack_slack,
        max_deliver=-1,
        max_ack_pending=1000,
    )
    if existing is not None:
        config.deliver_policy = existing.deliver_policy
        config.opt_start_seq = existing.opt_start_seq
        config.opt_start_time = existing.opt_start_time
    return config


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass


async def ensure_consumer(js: JetStreamContext, settings: Settings, stop: asyncio.Event) -> bool:
    """Create or update the durable consumer, waiting for the events stream
    to exist (the notifier never creates it). False if stopped meanwhile."""
    waiting = False
    while not stop.is_set():
        try:
            await js.stream_info(settings.stream)
            try:
                existing = (await js.consumer_info(settings.stream, settings.consumer)).config
            except NotFoundError:
                existing = None
            config = consumer_config(settings, existing)
            if existing is not None and existing.deliver_policy != consumer_config(settings).deliver_policy:
                log.info(
                    "consumer %s exists: it resumes where it stopped (BREAKGLASS_NOTIFY_DELIVER applies "
                    "only to a new consumer)", settings.consumer,
                )
            try:
                await js.add_consumer(settings.stream, config)
            except NotFoundError:
                raise
            except APIError as exc:  # a change the server refuses: say so in one line
                raise OSError(f"cannot create or update consumer {settings.consumer}: {exc.description}") from None
            return True
        except NotFoundError:
            if not waiting:
                log.warning("stream %s does not exist yet (is breakglass up?); waiting for it", settings.stream)
                waiting = True
        except (NatsTimeoutError, asyncio.TimeoutError) as exc:
            log.warning("could not set up consumer %s: %s; trying again", settings.consumer, exc or "timeout")
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


def anchor_of(msg: Msg, seq: int) -> str | None:
    """The session's chain head at this event, for the receiver to keep."""
    link = (msg.headers or {}).get(chain.HEADER)
    if not link or subjects.session_of(msg.subject) is None:
        return None
    return export.format_anchor(seq, link)


class Notifier:
    def __init__(self, js: JetStreamContext, settings: Settings, sender: Sender,
                 escalator: Escalator | None = None) -> None:
        self.js = js
        self.settings = settings
        self.sender = sender
        self.escalator = escalator

    def retry_delay(self, attempt: int, retry_after: float | None = None) -> float:
        delay = backoff(attempt, self.settings.retry_base, self.settings.retry_max)
        if retry_after is not None:
            delay = min(self.settings.retry_max, max(delay, retry_after))
        return delay

    async def handle(self, msg: Msg) -> None:
        meta = msg.metadata
        seq, attempt = meta.sequence.stream, meta.num_delivered
        try:
            event = decode_event_lenient(msg.data)
        except ContractError as exc:
            log.warning("terminated malformed event #%d on %s: %s", seq, msg.subject, exc)
            await msg.term()
            return
        if event is None:  # a kind newer than this reader: skipped
            await msg.ack()
            return
        if self.escalator is not None and subjects.session_of(msg.subject) is not None:
            self.escalator.saw(event)
        try:
            first = isinstance(event, UserPrompted) and await opens_session(
                self.js, self.settings.stream, msg.subject, seq
            )
            note = rules.notification_for(event, msg.subject, opens_session=first, link_base=self.settings.link_base)
            if note is None or note.priority < self.settings.min_priority:
                await msg.ack()
                return
            sent = await self.sender.send(note, event_json(msg.data, seq), anchor_of(msg, seq))
        except Exception:
            if attempt >= MAX_HANDLER_FAILURES:
                log.exception("event #%d failed %d times; terminated", seq, attempt)
                await msg.term()
            else:
                log.exception("event #%d could not be handled (attempt %d); retrying", seq, attempt)
                await msg.nak(delay=self.retry_delay(attempt))
            return

        if sent.delivery is Delivery.DELIVERED:
            await msg.ack()
            log.info("notified: %s (event #%d, %s)", note.title, seq, note.kind)
        elif sent.delivery is Delivery.REJECTED:
            await msg.ack()
            log.error("the receiver refused the notification for event #%d (%s); not retried", seq, sent.detail)
        else:
            delay = self.retry_delay(attempt, sent.retry_after)
            # One line on the first failure and every tenth, not one a minute per message.
            level = logging.WARNING if attempt == 1 or attempt % 10 == 0 else logging.DEBUG
            log.log(level, "notification for event #%d failed (%s), attempt %d; retrying in %.3g s",
                    seq, sent.detail, attempt, delay)
            await msg.nak(delay=delay)

    async def _handle_safely(self, msg: Msg) -> None:
        try:
            await self.handle(msg)
        except Exception:  # an ack or nak that could not be sent: the server redelivers after ack_wait
            log.exception("settling a message failed")

    async def run(self, stop: asyncio.Event, *, ready: asyncio.Event | None = None, poll_seconds: float = 1.0) -> None:
        """Pull and handle messages until `stop` is set; at most
        `concurrency` at once, so one slow receiver call holds up nothing."""
        sub = await self.js.pull_subscribe_bind(self.settings.consumer, stream=self.settings.stream)
        if ready is not None:
            ready.set()
        running: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                room = self.settings.concurrency - len(running)
                if room <= 0:
                    await asyncio.wait(running, timeout=poll_seconds, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    msgs = await sub.fetch(room, timeout=poll_seconds)
                except (NatsTimeoutError, asyncio.TimeoutError):
                    continue
                except Exception as exc:  # the connection is away; it reconnects by itself
                    log.warning("fetching from consumer %s failed: %s", self.settings.consumer, exc)
                    await _sleep(stop, poll_seconds)
                    continue
                for msg in msgs:
                    task = asyncio.create_task(self._handle_safely(msg))
                    running.add(task)
                    task.add_done_callback(running.discard)
        finally:
            if running:
                await asyncio.gather(*running, return_exceptions=True)
            try:
                await sub.unsubscribe()
            except Exception:  # the connection may be gone already
                pass


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    *,
    ready: asyncio.Event | None = None,
    poll_seconds: float = 1.0,
) -> None:
    """Connect, set up the consumer, notify until `stop` is set."""
    # `bus.connect` keeps trying while NATS is not there yet; a stop (Ctrl-C,
    # SIGTERM) during that wait ends the process instead of being ignored.
    connecting = asyncio.create_task(bus.connect(settings.nats_url, SERVICE, log=log))
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
        if not await ensure_consumer(js, settings, stop):
            return
        # The path of an ntfy URL is its topic, which works as a password: not logged.
        log.info("notifying %s (%s format) through consumer %s on %s",
                 urlsplit(settings.url).netloc, settings.format, settings.consumer, settings.stream)
        await Notifier(js, settings, sender, escalator).run(stop, ready=ready, poll_seconds=poll_seconds)
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

