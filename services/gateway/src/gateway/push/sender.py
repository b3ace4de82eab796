"""The push loop of one gateway: events off the firehose, heartbeats off
the live subject, each claimed once across gateways, sent to every live
subscription, and dead endpoints dropped.

Silence and a lost runner are not stored events: they come from the turns'
heartbeats (`status`, live only). A turn whose heartbeat says no output for
BREAKGLASS_SILENCE_WARNING_SECONDS (the PWA's own warning; not while an
approval waits) pushes once; one whose heartbeats stop for longer than the
PWA's "lost" limit (lease + max(2 s, 10 %)) pushes once. Both are claimed
per turn, like an event.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import httpx
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from events import subjects
from events.codec import ContractError, decode_event_lenient
from events.kinds import ApprovalRequested, TurnEnded, TurnStatus, VerbPhase, VerbProgressed
from eventbus.retry import Backoff, retrying
from eventbus.topology import PUSH_CLAIM_KEYS, PUSH_GRANT_KEYS, kv_keys, push_claim_key

from .. import approvals
from ..hub import hubs_of
from . import ece, grants, messages, vapid
from .store import BadSubscription, Subscription, Subscriptions, check_endpoint

if TYPE_CHECKING:
    from ..bus import Bus
    from ..settings import Settings

log = logging.getLogger("gateway.push")

#: How long a push service keeps an undelivered message (RFC 8030 §5.2).
TTL_SECONDS = 3600
SEND_TIMEOUT = 10.0
GONE = (404, 410)
#: How long a claim is kept: far longer than any gateway lags behind the
#: stream, so a late gateway still finds it and does not push again.
CLAIM_KEEP_SECONDS = 3600.0
#: How often each gateway sweeps spent claims and dead grants from the bucket.
SWEEP_SECONDS = 600.0


#: The stored kinds the sender reads; anything else is not decoded at all.
PUSHED_KINDS = tuple(b'"kind":"%s"' % k for k in (b"approval", b"turn_end", b"verb"))


def lost_after(lease_seconds: float) -> float:
    """The PWA's limit (frontend/src/lib/liveness.js `lostAfterSeconds`)."""
    return lease_seconds + max(2.0, lease_seconds * 0.1)


class Pusher:
    def __init__(self, bus: "Bus", settings: "Settings") -> None:
        self._bus = bus
        self._settings = settings
        self.subs: Subscriptions | None = None
        #: Why pushes are off (the key could not be read or made), else "".
        #: The gateway serves everything else all the same.
        self.off = ""
        try:
            self.key = vapid.load_or_create(settings.data_dir)
            self.public_key = vapid.public_key(self.key)
        except (OSError, ValueError) as exc:
            self.off = f"the Web Push key in {settings.data_dir} cannot be read or made ({exc}); set BREAKGLASS_DATA_DIR"
            log.error("Web Push is off: %s", self.off)
        self._http = httpx.AsyncClient(timeout=SEND_TIMEOUT, follow_redirects=False)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._main: asyncio.Task[None] | None = None
        #: (session, turn) -> (monotonic time of the last heartbeat, lease seconds).
        self._beats: dict[tuple[str, str], tuple[float, float]] = {}
        #: turn -> approvals of that turn waiting for a decision (no silence push meanwhile).
        self._waiting: dict[str, set[str]] = {}
        self._silenced: set[str] = set()
        self._ready = asyncio.Event()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if not self.off:
            self._main = asyncio.ensure_future(self._run())

    async def ready(self) -> None:
        await self._ready.wait()

    async def _run(self) -> None:
        while self._bus.nc is None or not self._bus.nc.is_connected:
            await asyncio.sleep(0.1)

        async def start():  # type: ignore[no-untyped-def]
            if self.subs is None:
                subs = Subscriptions(await self._bus.kv())
                try:
                    await subs.start()
                except BaseException:
                    await subs.stop()
                    raise
                self.subs = subs
            await hubs_of(self._bus).follow(self._on_record)
            return await self._bus.nc.subscribe(subjects.LIVE_ALL, cb=self._on_live)

        live = await retrying(start, Backoff(None, 1.0),  # every error: JetStream not there yet
                              on_retry=lambda exc: log.info("push sender not started yet: %s", exc))
        self._ready.set()
        log.info("push sender started (%d subscriptions)", len(self.subs.live))
        nc = self._bus.nc
        reconnects, swept = nc.stats["reconnects"], time.monotonic()
        try:
            while True:
                await asyncio.sleep(1.0)
                if not nc.is_connected or nc.stats["reconnects"] != reconnects:
                    # Heartbeats missed while we were away say nothing about the runners.
                    reconnects = nc.stats["reconnects"]
                    self._beats = {turn: (time.monotonic(), lease) for turn, (_, lease) in self._beats.items()}
                    continue
                self._check_lost()
                if time.monotonic() - swept >= SWEEP_SECONDS:
                    swept = time.monotonic()
                    self._spawn_sweep()
        finally:
            await live.unsubscribe()

    async def close(self) -> None:
        if self._main is not None:
            self._main.cancel()
            await asyncio.gather(self._main, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.subs is not None:
            await self.subs.stop()
        await self._http.aclose()

    def _spawn_sweep(self) -> None:
        task = asyncio.ensure_future(self.sweep())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def sweep(self, now: float | None = None) -> int:
        """Delete claims older than CLAIM_KEEP_SECONDS and grants past their
        expiry; how many went. Every gateway sweeps; deletes are idempotent."""
        now = time.time() if now is None else now
        kv = await self._bus.kv()
        gone = 0
        for key in await kv_keys(kv, f"{PUSH_CLAIM_KEYS}.*") + await kv_keys(kv, f"{PUSH_GRANT_KEYS}.*"):
            try:
                entry = await kv.get(key)
                if key.startswith(PUSH_CLAIM_KEYS):
                    expired = now - float((entry.value or b"0").split(b" ", 1)[0]) > CLAIM_KEEP_SECONDS
                else:
                    expired = grants.expired(entry.value or b"", now)
                if expired:
                    await kv.delete(key, last=entry.revision)
                    gone += 1
            except (KeyNotFoundError, KeyWrongLastSequenceError, ValueError):
                continue
        if gone:
            log.info("push sweep removed %d spent claims and grants", gone)
        return gone

    def _spawn(self, push: messages.Push, event: Any = None) -> None:
        task = asyncio.ensure_future(self.deliver(push, event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ sources

    def _on_record(self, session_id: str, seq: int, data: bytes) -> None:
        if not any(kind in data for kind in PUSHED_KINDS):  # most events (text, tools) skip the decode
            return
        try:
            event = decode_event_lenient(data)
        except ContractError:
            return
        if event is None or event.session_id != session_id:
            return
        self._track(event)
        push = messages.for_event(event, seq)
        if push is not None:
            self._spawn(push, event)

    def _track(self, event: Any) -> None:
        turn = event.turn_id or ""
        if isinstance(event, ApprovalRequested) and event.request_id:
            self._waiting.setdefault(turn, set()).add(event.request_id)
        elif isinstance(event, VerbProgressed) and event.phase in (VerbPhase.APPROVED, VerbPhase.DENIED):
            self._waiting.get(turn, set()).discard(event.request_id or "")
        elif isinstance(event, TurnEnded):
            self._waiting.pop(turn, None)
            self._silenced.discard(turn)
            self._beats.pop((event.session_id or "", turn), None)

    async def _on_live(self, msg) -> None:  # type: ignore[no-untyped-def]
        if msg.reply:
            return
        try:
            event = decode_event_lenient(msg.data)
        except ContractError:
            return
        if not isinstance(event, TurnStatus) or not event.session_id or not event.turn_id:
            return
        if msg.subject != subjects.live(event.session_id):
            return
        self._beats[(event.session_id, event.turn_id)] = (time.monotonic(), event.lease_seconds)
        threshold = self._settings.silence_warning_seconds
        if (event.since_output_seconds >= threshold and not self._waiting.get(event.turn_id)
                and event.turn_id not in self._silenced):
            self._silenced.add(event.turn_id)
            self._spawn(messages.silent(event.session_id, event.turn_id, event.since_output_seconds))

    def _check_lost(self) -> None:
        now = time.monotonic()
        for (sid, turn), (at, lease) in list(self._beats.items()):
            if now - at > lost_after(lease):
                del self._beats[(sid, turn)]
                self._spawn(messages.lost(sid, turn))

    # ------------------------------------------------------------ delivery

    async def claim(self, push: messages.Push) -> bool:
        """True for the one gateway that may send this push."""
        digest = hashlib.sha256(push.claim.encode()).hexdigest()[:40]
        try:
            await (await self._bus.kv()).create(push_claim_key(digest), f"{time.time():.3f} {push.session_id}".encode())
            return True
        except KeyWrongLastSequenceError:
            return False

    async def deliver(self, push: messages.Push, event: Any = None) -> None:
        try:
            if not await self.claim(push):
                return
            assert self.subs is not None
            live, expired = self.subs.current()
            for sub in expired:
                await self.subs.remove(sub.key, "expired")
            await asyncio.gather(*(self.send(sub, push, event) for sub in live))
        except Exception:
            log.exception("push %s of session %s failed", push.kind, push.session_id)

    async def _payload(self, sub: Subscription, push: messages.Push, event: Any) -> dict[str, Any]:
        if not isinstance(event, ApprovalRequested) or not event.request_id:
            return push.payload()
        # The approval's own end, never later than a whole timeout from now
        # (its time is the runner's word).
        timeout = self._settings.approval_timeout_seconds
        expires_at = min(event.ts.timestamp(), time.time()) + timeout
        if approvals.decided_in_page_only(self._settings, event.verb):
            return push.payload(expires_at=expires_at)  # no grant: the action opens the page
        token = await grants.issue(
            await self._bus.kv(), identity=sub.identity, session_id=push.session_id, approval_id=event.approval_id,
            request_id=event.request_id, verb=event.verb.value, expires_at=expires_at)
        return push.payload(grant=token, expires_at=expires_at)

    async def send(self, sub: Subscription, push: messages.Push, event: Any = None) -> int | None:
        """POST one encrypted push; the push service's status (None: unreachable)."""
        try:  # a subscription stored before the endpoint check tightened is judged again here
            check_endpoint(sub.endpoint, allow_http=self._settings.push_allow_http)
        except BadSubscription as exc:
            await self.subs.remove(sub.key, f"refused endpoint: {exc}")  # type: ignore[union-attr]
            return None
        try:
            body = json.dumps(await self._payload(sub, push, event), separators=(",", ":")).encode()
            encrypted = ece.encrypt(body, vapid.b64url_decode(sub.p256dh), vapid.b64url_decode(sub.auth))
        except (ValueError, ece.BadSubscriptionKey) as exc:
            await self.subs.remove(sub.key, f"unusable: {exc}")  # type: ignore[union-attr]
            return None
        headers = {
            "Authorization": vapid.authorization(self.key, sub.endpoint, self._settings.push_contact),
            "Content-Encoding": "aes128gcm", "Content-Type": "application/octet-stream",
            "TTL": str(TTL_SECONDS), "Urgency": push.urgency,
        }
        try:
            response = await self._http.post(sub.endpoint, content=encrypted, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("push to %s failed: %s", vapid.audience(sub.endpoint), type(exc).__name__)
            return None
        if response.status_code in GONE:
            await self.subs.remove(sub.key, f"the push service answered {response.status_code}")  # type: ignore[union-attr]
        elif response.status_code >= 300:
            log.warning("push to %s answered %d", vapid.audience(sub.endpoint), response.status_code)
        return response.status_code
